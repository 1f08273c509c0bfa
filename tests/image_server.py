"""The Docker image's server outside Docker, shared by tests/test_deploy.py's smoke test and tests/test_edit.py's
gunicorn tests: the files the Dockerfile COPYs (image_root), a clean virtual environment holding only
requirements.txt (smoke_venv), a trustme CA (tls_ca, verified_context), and the Dockerfile's CMD started over HTTPS
on loopback (Server, serving_image).

The fixtures are imported by the test modules that use them (``from tests.image_server import smoke_venv, ...``).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 180  # seconds for a worker to import TensorFlow and warm up the model on a busy CI machine


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each Dockerfile instruction, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def dockerfile_cmd() -> list[str]:
    cmds = [args for name, args in dockerfile_instructions() if name == "CMD"]
    assert len(cmds) == 1, "one CMD"
    return json.loads(cmds[0])  # exec form, or json fails


def _requirements_hash() -> str:
    path = ROOT / "requirements.txt"
    if not path.exists():
        pytest.fail("requirements.txt is missing: the image installs it")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _image_python() -> str:
    """The interpreter for the clean venv: the image's Python version (FROM python:3.X) where this machine has it."""
    version = re.search(r"^FROM python:(\d+\.\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    if os.environ.get("FACEGEN_SMOKE_PYTHON"):
        return os.environ["FACEGEN_SMOKE_PYTHON"]
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    for candidate in [shutil.which(f"python{version}"), *map(str, pyenv)]:
        # A pyenv shim is on PATH even where that version is not selected: only one that runs counts.
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="session")
def smoke_venv() -> Path:
    """A virtual environment holding only requirements.txt, as the image has: built once per requirements content.

    $FACEGEN_SMOKE_VENV names it (created and filled if it lacks the stamp for this requirements.txt);
    default ~/.cache/facegen/smoke-venv-<hash of requirements.txt>. A lock keeps parallel runs from building twice.
    """
    digest = f"{_requirements_hash()}-{Path(_image_python()).name}"
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegen" / f"smoke-venv-{digest}"
    venv = Path(os.environ.get("FACEGEN_SMOKE_VENV") or default)
    stamp = venv / ".facegen-requirements"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text().strip() == digest):
            if not (venv / "bin" / "python").exists():
                subprocess.run([_image_python(), "-m", "venv", str(venv)], check=True, timeout=300)
            install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                      "--disable-pip-version-check", "-r", str(ROOT / "requirements.txt")],
                                     cwd=ROOT, capture_output=True, text=True, timeout=1800)
            assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stderr[-4000:]}"
            stamp.write_text(digest + "\n")
    return venv


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """The image's /app: exactly what the Dockerfile COPYs, so a module the image lacks fails here too."""
    root = tmp_path_factory.mktemp("image") / "app"
    root.mkdir()
    workdir = next(args for name, args in dockerfile_instructions() if name == "WORKDIR").rstrip("/")
    for name, args in dockerfile_instructions():
        if name != "COPY":
            continue
        *sources, dest = args.split()
        target = root / os.path.relpath(dest if dest.startswith("/") else f"{workdir}/{dest}", workdir)
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.exists():
                target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else target.parent.mkdir(
                    parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name if dest.endswith("/") else target)
    assert (root / "gunicorn.conf.py").exists() and (root / "app" / "__init__.py").exists()
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, venv: Path, cwd: Path, log: Path, env: dict):
        self.port = free_port()
        self.log_path = log
        argv = dockerfile_cmd()
        argv[0] = str(venv / "bin" / argv[0])  # the image's PATH puts the installed gunicorn first, as here
        self.env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(log.parent), "LANG": "C.UTF-8",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                    "PORT": str(self.port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": "1",
                    "GUNICORN_THREADS": "2", "PROMETHEUS_MULTIPROC_DIR": str(log.parent / "prometheus"), **env}
        self._log = open(log, "wb")
        self.process = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, context: ssl.SSLContext) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode} before it was ready:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url("/readyz"), context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.5)
        pytest.fail(f"not ready after {READY_TIMEOUT} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def tls_ca():
    import trustme

    return trustme.CA()


@pytest.fixture(scope="module")
def verified_context(tls_ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


@contextlib.contextmanager
def serving_image(smoke_venv, image_root, tls_ca, verified_context, work: Path, env: dict):
    """The image's CMD over HTTPS with a fresh trustme certificate for 127.0.0.1 in ``work``, ready; stopped after."""
    leaf = tls_ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(work / "tls.crt")
    leaf.private_key_pem.write_to_path(work / "tls.key")
    server = Server(smoke_venv, image_root, work / "gunicorn.log",
                    {"TLS_CERT_FILE": str(work / "tls.crt"), "TLS_KEY_FILE": str(work / "tls.key"), **env})
    try:
        server.wait_ready(verified_context)
        yield server
    finally:
        server.stop()
