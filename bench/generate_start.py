"""What a large set costs ``python -m facegen generate`` before its first face: a small and a large --count, run
in turn in the same run.

    .venv/bin/python bench/generate_start.py [--small 1000] [--large 1000000] [--workers 2] [--model NAME|DIR]

Each is the real command in a subprocess (its own process group), into a fresh temporary folder. Measured: the
seconds from launch until the first face file is there, and the launching process's peak resident memory (VmHWM)
at that moment; then the whole group gets SIGINT (Ctrl-C) and the next one starts. The figures are given as the
large set's over the small one's: a set whose cost does not grow with its size reads 1.0x. Linux only (/proc).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = "CelebA-HQ-img"  # app/generate.py's IMAGES, not imported: this script stays free of the app's imports


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def until_first_face(count: int, workers: int, model: str | None, work: Path) -> tuple[float, float]:
    """(seconds to the first face file, the command's own peak RSS in MB then) for ``--count count``."""
    out = work / f"faces-{count}"
    argv = [sys.executable, "-m", "facegen", "generate", "--count", str(count), "--out", str(out), "--no-progress",
            "--workers", str(workers)] + (["--model", model] if model else [])
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    images = out / IMAGES
    try:
        while not (images.is_dir() and any(images.glob("*.png"))):
            if process.poll() is not None:
                raise RuntimeError(f"generate stopped before its first face: {process.stderr.read()}")
            time.sleep(0.02)
        return time.perf_counter() - started, peak_memory_mb(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="the small set's --count (1,000)")
    parser.add_argument("--large", type=int, default=1_000_000, help="the large set's --count (1,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="generate's --workers (2)")
    parser.add_argument("--model", help="NAME or DIR, as generate's --model (default: the default model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        small = until_first_face(args.small, args.workers, args.model, Path(work))
        large = until_first_face(args.large, args.workers, args.model, Path(work))
    print(f"--workers {args.workers}, {os.cpu_count()} CPUs; to the first face: seconds, the command's peak RSS MB")
    print(f"  --count {args.small:>9,}  {small[0]:7.1f} s  {small[1]:7.0f} MB")
    print(f"  --count {args.large:>9,}  {large[0]:7.1f} s  {large[1]:7.0f} MB")
    print(f"  large / small      {large[0] / small[0]:6.2f}x   {large[1] / small[1]:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
