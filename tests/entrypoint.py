"""The production entrypoint from the repository, ``gunicorn -c gunicorn.conf.py``, over TLS on loopback: shared by
tests/test_resilience.py and tests/test_hardening.py.

- ``tls`` (fixture): a trustme CA and a certificate for localhost / 127.0.0.1: (cert path, key path, CA path);
- :class:`Gunicorn`: the server started in its own session (so a stop reaches every worker), its log, readiness,
  worker pids and a SIGTERM stop. ``env`` adds or (with None) removes environment variables.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
import trustme

from tests.image_server import free_port

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
WORKERS = 2
READY_MARKER = "facegen: worker"  # gunicorn.conf.py's post_worker_init line


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = directory / "tls.crt", directory / "tls.key", directory / "ca.pem"
    server.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as handle:
        for pem in server.cert_chain_pems:
            handle.write(pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert), str(key), str(ca_file)


class Gunicorn:
    def __init__(self, models_dir, tls, log_path: Path, workers=WORKERS, threads=16, env: dict | None = None):
        cert, key, self.ca_file = tls  # ca_file False: a self-signed server, not verified
        self.port = free_port()
        self.base = f"https://localhost:{self.port}"
        self.log_path = log_path
        self.workers = workers
        environment = dict(os.environ, PORT=str(self.port), BIND_HOST="127.0.0.1", TLS_CERT_FILE=cert,
                           TLS_KEY_FILE=key, FACEGEN_MODELS_DIR=str(models_dir), WEB_CONCURRENCY=str(workers),
                           GUNICORN_THREADS=str(threads),
                           PROMETHEUS_MULTIPROC_DIR=str(log_path.parent / f"prometheus-{self.port}"),
                           TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
                                        cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def readyz(self) -> int | None:
        try:
            return requests.get(self.base + "/readyz", verify=self.ca_file, timeout=5).status_code
        except requests.RequestException:
            return None

    def wait_ready(self, timeout=90.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.process.poll() is None, f"gunicorn exited early:\n{self.log()[-3000:]}"
            if self.log().count(READY_MARKER) >= self.workers and self.readyz() == 200:
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"not ready within {timeout} s:\n{self.log()[-3000:]}")

    def worker_pids(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.process.pid).children()}

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
