"""gunicorn settings for facegen: ``gunicorn -c gunicorn.conf.py`` starts the service exactly as the image does.

HTTPS only (TLS 1.2 or newer), no clear-text listener. Environment:

  PORT (8443), BIND_HOST (0.0.0.0)             where to listen
  TLS_CERT_FILE, TLS_KEY_FILE                  PEM certificate chain and key; when both are unset a self-signed
                                               certificate is made at start (local use only: a WARNING says so)
  TLS_SELF_SIGNED_DIR                          where that certificate goes (default: a new folder under /tmp);
                                               its key and certificate are deleted when the server stops
  WEB_CONCURRENCY                              worker processes (default: CPU count, at least 1, at most 4)
  GUNICORN_THREADS                             request threads per worker (default 16; app/admission.py keeps two
                                               of them free of heavy work)
  FACEGEN_HEADER_TIMEOUT_S, FACEGEN_IO_TIMEOUT_S
                                               deadline for a connection's TLS handshake and request head (10 s),
                                               and for each read and write while serving it (30 s): gunicorn_worker.py
  FACEGEN_ADMIT_*                              bounds on concurrent heavy requests per worker: app/admission.py
  TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS
                                               TensorFlow's thread pools in each worker (default: the CPU count
                                               shared out among the workers, at least 1)
  LOG_LEVEL                                    gunicorn's log level (default info)
  PROMETHEUS_MULTIPROC_DIR                     per-worker metric files (default: a new folder under /tmp, removed
                                               when the server stops)
  FACEGEN_MODELS_DIR, FACEGEN_MODEL            read by app.create_app()
  FACEGEN_WARM_INVERSION                       1 (the default here): each worker warms the pti edit methods up
                                               in the background after it starts (app/edits.py); 0: on first use
  FACEGEN_SKIP_AVX_CHECK=1, FACEGEN_CPUINFO    see facegen/hardware.py

Each worker imports the app itself (no preload): TensorFlow is never forked half-initialised, and each worker loads
and warms up its models in create_app() before it takes a request.
"""

import datetime
import ipaddress
import os
import socket
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from facegen.hardware import require_avx  # noqa: E402  (cheap: imports no TensorFlow)

# A CPU without AVX would kill every worker with 'Illegal instruction' when TensorFlow loads: refuse to start with a
# clear message instead (exit code 3), before any socket is opened or worker forked.
require_avx()

_notes = []  # logged by on_starting, once gunicorn's logger exists
_made_at_start = []  # files and folders this start created, removed by on_exit: a private key is not left in /tmp


def _env_int(name, default, low=1, high=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        sys.exit(f"facegen: {name} must be an integer, got {raw!r}")
    if value < low or (high is not None and value > high):
        sys.exit(f"facegen: {name} must be between {low} and {high or 'any'}, got {value}")
    return value


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _self_signed(directory):
    """Write a fresh self-signed certificate for localhost and this host's name; return (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname()
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegen self-signed (local use only)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _tls_files():
    cert, key = os.environ.get("TLS_CERT_FILE", "").strip(), os.environ.get("TLS_KEY_FILE", "").strip()
    if cert or key:
        if not (cert and key):
            sys.exit("facegen: set both TLS_CERT_FILE and TLS_KEY_FILE, or neither (for a self-signed certificate)")
        for name, path in (("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)):
            if not os.path.isfile(path):
                sys.exit(f"facegen: {name}={path} is not a readable file")
        return cert, key
    directory = os.environ.get("TLS_SELF_SIGNED_DIR", "").strip()
    if not directory:
        directory = tempfile.mkdtemp(prefix="facegen-tls-")
        _made_at_start.append(directory)
    cert, key = _self_signed(directory)
    _made_at_start.extend([key, cert])
    _notes.append(f"TLS_CERT_FILE/TLS_KEY_FILE are not set: serving a SELF-SIGNED certificate made at start "
                  f"({cert}). For local use only: clients cannot verify it. Mount a real certificate for "
                  f"anything else (docs/DEPLOY.md).")
    return cert, key


# --- where and how to listen: HTTPS only --------------------------------------------------------------------------
bind = [f"{os.environ.get('BIND_HOST', '').strip() or '0.0.0.0'}:{_env_int('PORT', 8443, 1, 65535)}"]
certfile, keyfile = _tls_files()


def _tls_context(cert, key):
    # What gunicorn's default context holds (its verify_mode and ciphers are left at their defaults here), TLS 1.0
    # and 1.1 refused.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (ssl.SSLError, OSError) as error:
        sys.exit(f"facegen: cannot load the TLS certificate {cert} with the key {key}: {error}")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# Made once, here in the master: every worker forked from it serves this context, so the key and certificate are
# read from disk once per start (gunicorn's own factory read both files again for every connection). A renewed
# certificate takes a restart, or SIGHUP, which reads this file again and replaces the workers.
_TLS_CONTEXT = _tls_context(certfile, keyfile)


def ssl_context(config, default_ssl_context_factory):
    return _TLS_CONTEXT


# --- workers: the generator is CPU-bound, so one process per core, a few threads to overlap I/O and batching -----
workers = _env_int("WEB_CONCURRENCY", max(1, min(_cpu_count(), 4)))
# gthread, with the TLS handshake and the request head read in its event loop on deadlines (gunicorn_worker.py):
# stalled connections hold no thread. Threads serve complete requests only; heavy ones are bounded by
# app/admission.py (at most 14 of 16 threads), so health probes and single faces always find one.
worker_class = "gunicorn_worker.DeadlineThreadWorker"
threads = _env_int("GUNICORN_THREADS", 16)
# Each worker's TensorFlow would otherwise size its pools to every core, so W workers run W x cores compute threads
# that spin against each other: with 2 workers on 2 cores, one thread each served 1.08x the faces/s at 16 clients
# for 3.55 instead of 3.95 ms of server CPU per face (BENCHMARKS.md, measured in one run). Set here, in the master,
# so the workers inherit them; an operator's own values are kept.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, _cpu_count() // workers)))
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")  # the generator is one chain of layers: nothing to overlap
# The first pti edit in a worker would otherwise pay 15-18 s for loading and tracing the tuning copy of its model.
os.environ.setdefault("FACEGEN_WARM_INVERSION", "1")
preload_app = False  # each worker loads + warms up its models in create_app() before it takes traffic
wsgi_app = "app:create_app()"
timeout = 60
graceful_timeout = 30
keepalive = 5
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"  # heartbeat files off the (possibly read-only) disk
control_socket_disable = True  # it would be written under $HOME, which is read-only in the container

# --- request limits (bytes / counts), checked by gunicorn before the app sees the request ----------------------------
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# Request bodies (uploaded photos, /api/encode and /api/edit): gunicorn has no body limit of its own, so the app sets
# them (app/uploads.py, docs/SERVICE.md "Limits"): 10 MiB, refused from Content-Length before a byte is read (Flask's
# MAX_CONTENT_LENGTH bounds chunked bodies); the body must arrive within FACEGEN_UPLOAD_TIMEOUT_S (30 s), set as the
# read timeout of the client socket gunicorn hands over, so a stalled upload frees its thread. After a refusal gunicorn
# reads at most 64 KiB more for at most 5 s, then closes the connection. The access log below records the request
# line (path and query) only, never a body: uploaded photos are not logged.

# --- logs: both to the container's output ----------------------------------------------------------------------------
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# --- Prometheus: each worker writes its metrics to files in one folder, which /metrics merges ----------------------
# Set here, in the master, before any worker imports prometheus_client (it picks its storage at import).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="facegen-prometheus-")
    _made_at_start.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    # Metric files left by an earlier run in the same folder would be counted again: start from none.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))
    for note in _notes:
        server.log.warning(note)


def when_ready(server):
    server.log.info("facegen: listening on https://%s (TLS 1.2+ only, no clear-text listener); %d worker(s) x %d "
                    "thread(s), each loads and warms up its models before taking requests",
                    ", https://".join(bind), server.cfg.workers, server.cfg.threads)


def post_worker_init(worker):
    worker.log.info("facegen: worker %s ready (models loaded and warmed up)", worker.pid)


def worker_exit(server, worker):
    # Called as the worker's process ends. After a normal stop (exit code 0: its requests are answered) skip the
    # interpreter's teardown, a garbage collection over TensorFlow's objects that took past the 30 s graceful timeout
    # on a busy 2-CPU machine, so the master killed the worker and a stop took the pod's whole grace period. Any
    # other exit code (a failed boot) goes on as usual: the master reads it to stop restarting workers.
    leaving = sys.exc_info()[1]
    if isinstance(leaving, SystemExit) and leaving.code in (0, None):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    import shutil

    for path in reversed(_made_at_start):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    server.log.info("facegen: shut down")
