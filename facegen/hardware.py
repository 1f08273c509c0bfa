"""TensorFlow's CPU builds need AVX: every entry point that imports it (the server, the training commands) checks
first and exits with advice instead of dying with 'Illegal instruction'. Imports no TensorFlow."""

import os
import platform
import sys

AVX_HELP = (
    "This CPU does not report the AVX instruction set, which TensorFlow's builds require "
    "(without it TensorFlow dies with 'Illegal instruction'). On a virtual machine, pass the host CPU through "
    "to the guest (libvirt/virt-manager: CPU model 'host-passthrough'; Proxmox: CPU type 'host'; "
    "QEMU: -cpu host), or run on a machine whose CPU has AVX."
)


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo, or None where that file does not exist (non-Linux)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def has_avx(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """True where the CPU reports AVX, or where we cannot tell (not Linux, not x86): only a sure 'no' fails."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return True
    flags = cpu_flags(cpuinfo_path)
    return flags is None or "avx" in flags


def require_avx(cpuinfo_path: str | None = None) -> None:
    """Exit with a clear message on an x86 CPU without AVX, before TensorFlow is imported.

    FACEGEN_SKIP_AVX_CHECK=1 skips the check (for TensorFlow builds made without AVX).
    """
    if os.environ.get("FACEGEN_SKIP_AVX_CHECK") == "1":
        return
    if not has_avx(cpuinfo_path or os.environ.get("FACEGEN_CPUINFO", "/proc/cpuinfo")):
        sys.stderr.write(f"facegen: {AVX_HELP}\n")
        raise SystemExit(3)
