"""Serving benchmark: our production entrypoint against the seeds' way, in one run, on this machine.

    python bench/serve_load.py                      # c = 1, 16, 64 for 20 s each, both servers
    python bench/serve_load.py --duration 30 --concurrency 1,16,64 --out bench/results
    python bench/serve_load.py --model celeba-hq-128 --concurrency 16      # another model of models/

Starts, one after the other (each timed from process start to ready while the other is not yet loading):
  (a) ours: ``gunicorn -c gunicorn.conf.py`` (gthread workers, TLS with a trustme certificate), serving the
      default model in models/ when there is one, else a model with the production 64 px architecture
      (training.config defaults, random weights) exported by the real export path into a temporary folder;
  (b) the baseline: bench/baseline_artiface.py (the seeds' ArtiFace generator, ``predict()`` per request) under
      gunicorn with 2 sync workers, over TLS with the same certificate.

Once both are ready, and while both idle, measures "generator alone": the model ours serves, loaded in a
subprocess by the same Python as the servers (``--venv``) the way a worker loads it (``app.models.load_model``,
``warm_up``), then called in-process through ``Model.generate`` -- the one call the micro-batcher makes -- at the
largest batch the batcher makes (``FACEGEN_MAX_BATCH``, default 16, resolved by app.batcher's own code), with no
HTTP, TLS, seed parsing, PNG encoding or cache: after a warm-up, the best of 3 timed windows (``--ceiling-window``
seconds each), in faces/s. That is the ceiling the service could reach on this machine if serving cost nothing;
each of ours' levels is also reported as a fraction of it ("served / generator alone"). ``--no-ceiling`` skips it.

Then, for each concurrency level, loads ours and then the baseline while the other one idles (idle gunicorn
workers use no CPU), so background load that drifts during the run weighs on both sides of each ratio alike.

Load: a closed loop of C client threads, each with its own keep-alive HTTPS connection (http.client, the leanest
client at hand: it shares the server's cores), each request naming a seed never asked before (cache misses; the PNG
cache is measured separately as the "hot" figure: every request the same seed). Reports faces/s, p50, p99, errors,
cold start (process start -> every worker ready and /readyz 200) and worker RSS, writes JSON and a markdown table
(serve_load.{json,md} in ``--out``; with ``--only``, the one server's columns), the CPU time per face spent by each
server's processes and by the load generator, and prints the ours/baseline ratio and served / generator alone at
c=16.

The load generator runs on the same cores as the server (loopback only), which costs both servers some CPU; the
generator-alone figure has no load generator beside it (one process, TensorFlow's default thread pools), so "served
/ generator alone" is what all of serving costs, the load generator's share included. On a machine shared with other
jobs it reads high: the servers' many threads win a larger share of the contended cores than the one generator
process does (compare the load averages recorded with each figure).
"""

import argparse
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests
import trustme

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from facegen import model_folder  # noqa: E402  (NumPy only: the benchmark process stays free of TensorFlow)

PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(directory: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = directory / "tls.crt", directory / "tls.key", directory / "ca.pem"
    server.private_key_pem.write_to_path(str(key))
    server.cert_chain_pems[0].write_to_path(str(cert))
    with open(cert, "ab") as handle:
        for pem in server.cert_chain_pems[1:]:
            handle.write(pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert), str(key), str(ca_file)


def prepare_models(work: Path) -> tuple[Path, str]:
    """models/ if it holds a default model; else a production-shaped 64 px model with random weights."""
    repo_models = ROOT / "models"
    name = model_folder.read_default(repo_models)
    if name is not None:
        if (repo_models / name / "manifest.json").is_file():
            return repo_models, f"models/{name} (the repository's default model)"
    script = (
        "import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL']='2'; os.environ['KERAS_BACKEND']='tensorflow'\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path\nimport keras\n"
        "from training.config import TrainConfig\nfrom training.networks import build_generator\n"
        "from training.export import write_saved_model\n"
        "keras.utils.set_random_seed(0)\nconfig = TrainConfig(resolution=64).validate()\n"
        "out = Path(sys.argv[1])\n"
        "write_saved_model(build_generator(config), config, out / 'facegen-64', {'name': 'facegen-64', "
        "'attribute_frequencies': [0.5] * config.num_attributes, 'training': {'note': 'random weights (bench)'}})\n"
        "from facegen.model_folder import write_default\nwrite_default(out, 'facegen-64')\n")
    models = work / "models"
    subprocess.run([PYTHON, "-c", script, str(models)], check=True, cwd=ROOT)
    manifest = json.loads((models / "facegen-64" / "manifest.json").read_text())
    return models, (f"facegen-64: production architecture (training.config defaults, 64 px, "
                    f"{manifest['parameters']:,} parameters), random weights, exported by training.export")


# Run by the servers' Python (``--venv``) in a subprocess, so TensorFlow never loads into the benchmark process and
# the generator is the one the workers get: same load, same warm-up, same call, same batch-size setting.
GENERATOR_ALONE_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from app.batcher import DEFAULT_MAX_BATCH, _env_number
from app.models import load_model, warm_up

model_dir, windows, window_s, warmup_s = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
started = time.perf_counter()
model = load_model(model_dir)
warm_up(model)
load_s = time.perf_counter() - started
batch = _env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int)  # what FaceRenderer.from_environment reads
stream = np.random.RandomState(0)
noise = stream.standard_normal((batch, model.latent_size)).astype(np.float32)
attrs = (stream.random_sample((batch, len(model.attributes))) < model.attribute_frequencies).astype(np.float32)
warm_until, calls = time.perf_counter() + warmup_s, 0
while calls < 3 or time.perf_counter() < warm_until:  # first calls at this shape pay oneDNN's set-up
    images = model.generate(noise, attrs)
    calls += 1
assert images.shape == (batch, model.resolution, model.resolution, 3) and images.dtype == np.uint8, images.shape
rates = []
for _ in range(windows):
    calls, begin = 0, time.perf_counter()
    while True:
        model.generate(noise, attrs)
        calls += 1
        elapsed = time.perf_counter() - begin
        if elapsed >= window_s:
            break
    rates.append(calls * batch / elapsed)
print(json.dumps({"model": model.name, "batch": batch, "faces_per_s": round(max(rates), 1),
                  "windows_faces_per_s": [round(r, 1) for r in rates], "window_s": window_s,
                  "ms_per_call_best": round(1000 * batch / max(rates), 2), "load_and_warm_up_s": round(load_s, 2)}))
"""


def generator_alone(python: str, model_dir: Path, env: dict, windows: int = 3, window_s: float = 3.0,
                    warmup_s: float = 1.0) -> dict:
    """The served model's generator called in-process at the batcher's largest batch: best faces/s of ``windows``
    timed windows after a warm-up, measured in a subprocess run by ``python`` (the servers' interpreter)."""
    env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}  # app.metrics would write files there
    started = time.perf_counter()
    done = subprocess.run([python, "-c", GENERATOR_ALONE_SCRIPT, str(ROOT), str(model_dir), str(windows),
                           str(window_s), str(warmup_s)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300 + windows * window_s)
    if done.returncode != 0:
        raise RuntimeError(f"generator-alone measurement failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update({"python": python, "model_dir": str(model_dir), "warmup_s": warmup_s,
                   "wall_s": round(time.perf_counter() - started, 1), "load_avg": os.getloadavg()[0],
                   "how": "app.models.load_model + warm_up, then Model.generate on one batch of FACEGEN_MAX_BATCH "
                          "faces in a loop, in one process with no HTTP; best of the timed windows"})
    return result


def default_model_dir(models_dir: Path, env: dict) -> Path:
    """The folder ours serves by default: FACEGEN_MODEL, else the first line of models_dir/DEFAULT (app.models)."""
    name = env.get("FACEGEN_MODEL") or model_folder.read_default(models_dir)
    return models_dir / name


class Server:
    def __init__(self, name, command, env, port, ca_file, log_path, ready_marker, workers):
        self.name, self.command, self.env, self.port = name, command, env, port
        self.ca_file, self.log_path, self.ready_marker, self.workers = ca_file, log_path, ready_marker, workers
        self.base = f"https://localhost:{port}"
        self.process = None
        self.cold_start_s = None

    def start(self, timeout=120.0) -> float:
        log = open(self.log_path, "wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            ready_workers = Path(self.log_path).read_text(errors="replace").count(self.ready_marker)
            if ready_workers >= self.workers:
                try:
                    if requests.get(self.base + "/readyz", verify=self.ca_file, timeout=5).status_code == 200:
                        self.cold_start_s = time.perf_counter() - started
                        return self.cold_start_s
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {timeout} s; see {self.log_path}")

    def worker_processes(self) -> list:
        """The gunicorn master's child processes (psutil)."""
        return psutil.Process(self.process.pid).children(recursive=True)

    def processes(self) -> list:
        """The gunicorn master and its workers, for CPU accounting."""
        return [psutil.Process(self.process.pid)] + self.worker_processes()

    def worker_rss_mb(self) -> list[float]:
        return [round(child.memory_info().rss / 2**20, 1) for child in self.worker_processes()]

    def worker_memory_mb(self) -> list[dict]:
        """RSS counts the shared TensorFlow libraries (~400 MB) in every worker; USS is what a worker alone holds,
        PSS shares the common pages out among the processes mapping them."""
        out = []
        for child in self.worker_processes():
            info = child.memory_full_info()
            out.append({"rss": round(info.rss / 2**20, 1), "uss": round(info.uss / 2**20, 1),
                        "pss": round(info.pss / 2**20, 1)})
        return out

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


_seeds = itertools.count(1_000_000)
_seed_lock = threading.Lock()


def next_seed() -> int:
    with _seed_lock:
        return next(_seeds)


def keep_alive_connection(base: str, ca_file: str) -> http.client.HTTPSConnection:
    """One client's keep-alive HTTPS connection. http.client rather than requests: the load generator shares the
    server's cores, and requests spent about 1 ms of CPU per request here against 0.3 ms for http.client."""
    url = urlsplit(base)
    return http.client.HTTPSConnection(url.hostname, url.port, timeout=120,
                                       context=ssl.create_default_context(cafile=ca_file))


def closed_loop(base: str, ca_file: str, concurrency: int, duration: float, warmup: float, hot: bool,
                server_processes: list | None = None) -> dict:
    """C threads, each sending its next request as soon as the last is answered, for warmup + duration seconds;
    the requests that finish after the warm-up and before the end are counted. With ``server_processes``, also the
    CPU time per counted face of those processes and of this one (the load generator) over the same window."""
    latencies, errors, statuses = [], [0], {}
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration
    cpu_marks = {}

    def cpu_mark(name):
        cpu_marks[name] = (cpu_seconds(server_processes or []), cpu_seconds([psutil.Process()]))

    timers = [threading.Timer(warmup, cpu_mark, ("from",)), threading.Timer(warmup + duration, cpu_mark, ("to",))]

    def client():
        connection = keep_alive_connection(base, ca_file)
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                connection.close()
                return
            seed = 424242 if hot else next_seed()
            ok, status = False, "exception"
            try:
                connection.request("GET", f"/api/face?seed={seed}")
                response = connection.getresponse()
                body = response.read()
                status = response.status
                ok = status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = keep_alive_connection(base, ca_file)
            done = time.perf_counter()
            # Counted if it finished inside the window (throughput = completions per second; a request that
            # began in the warm-up still counts, so slow servers with latencies near the window are measured).
            if measure_from <= done <= stop_at:
                with lock:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    if ok:
                        latencies.append(done - now)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in timers + threads:
        thread.start()
    for thread in threads + timers:
        thread.join(duration + warmup + 180)
    latencies.sort()
    result = {"concurrency": concurrency, "hot": hot, "duration_s": duration, "ok": len(latencies),
              "errors": errors[0], "statuses": statuses,
              "faces_per_s": round(len(latencies) / duration, 2),
              "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
              "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None}
    if server_processes and latencies and len(cpu_marks) == 2:
        (server_from, client_from), (server_to, client_to) = cpu_marks["from"], cpu_marks["to"]
        result["server_cpu_ms_per_face"] = round(1000 * (server_to - server_from) / len(latencies), 2)
        result["client_cpu_ms_per_face"] = round(1000 * (client_to - client_from) / len(latencies), 2)
    return result


def cpu_seconds(processes: list) -> float:
    """User + system CPU seconds used so far by these processes (psutil), each counted once."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_servers(servers: list, levels, duration, warmup, hot_level, ceiling=None) -> dict:
    """Start each server alone (its cold start is timed on an otherwise idle service), then, while all idle,
    ``ceiling()`` (the generator-alone measurement, if given), then, level by level, load one server after the other
    while the idle one waits: background load that drifts during the run then weighs on both sides of each ratio
    alike."""
    results = {}
    try:
        for server in servers:
            print(f"--- {server.name}: starting", flush=True)
            result = {"name": server.name, "command": " ".join(server.command), "runs": []}
            result["cold_start_s"] = round(server.start(), 2)
            result["rss_after_start_mb"] = server.worker_rss_mb()
            print(f"{server.name}: ready in {result['cold_start_s']} s, worker RSS {result['rss_after_start_mb']} MB",
                  flush=True)
            results[server.name] = result
        if ceiling is not None:
            print("--- generator alone (in-process, no HTTP; both servers idle)", flush=True)
            alone = ceiling()
            print(f"generator alone: {alone['faces_per_s']} faces/s at batch {alone['batch']} "
                  f"(windows {alone['windows_faces_per_s']}, load average {alone['load_avg']:.1f})", flush=True)
            results["generator_alone"] = alone
        for level in levels:
            for server in servers:
                run = closed_loop(server.base, server.ca_file, level, duration, warmup, hot=False,
                                  server_processes=server.processes())
                run["worker_rss_mb"] = server.worker_rss_mb()
                run["load_avg"] = os.getloadavg()[0]
                if server.name == "ours" and "generator_alone" in results:
                    run["served_over_generator_alone"] = round(
                        run["faces_per_s"] / results["generator_alone"]["faces_per_s"], 3)
                print(f"{server.name}: {run}", flush=True)
                results[server.name]["runs"].append(run)
        for server in servers:
            result = results[server.name]
            if hot_level and server.name == "ours":
                run = closed_loop(server.base, server.ca_file, hot_level, duration, warmup, hot=True,
                                  server_processes=server.processes())
                print(f"{server.name} (hot, one seed): {run}", flush=True)
                result["hot"] = run
            result["worker_rss_max_mb"] = max(max(r["worker_rss_mb"]) for r in result["runs"])
            result["worker_memory_end_mb"] = server.worker_memory_mb()
            if server.name == "ours":
                metrics = requests.get(server.base + "/metrics", verify=server.ca_file, timeout=10).text
                result["batch_size_metric"] = [line for line in metrics.splitlines() if
                                               line.startswith(("facegen_batch_size_sum", "facegen_batch_size_count"))]
    finally:
        for server in servers:
            server.stop()
    return results


def fraction(value) -> str:
    return f"{value:.0%}" if value is not None else "n/a"


def markdown(report: dict) -> str:
    """The table: per level, each server's figures, ours as a fraction of its generator alone, ours / baseline."""
    names = [name for name in ("ours", "baseline") if name in report]
    ours, base, alone = report.get("ours"), report.get("baseline"), report.get("generator_alone")
    header = ["concurrency"]
    for name in names:
        header += [f"{name} faces/s", f"{name} p50 ms", f"{name} p99 ms", f"{name} errors"]
    if ours and alone:
        header.append("ours served / generator alone")
    if ours and base:
        header.append("ratio faces/s")
    lines = ["| " + " | ".join(header) + " |", "|" + " ---: |" * len(header)]
    for index, level in enumerate(report["concurrency"]):
        row = [str(level)]
        for name in names:
            r = report[name]["runs"][index]
            row += [str(r["faces_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]), str(r["errors"])]
        if ours and alone:
            row.append(fraction(ours["runs"][index].get("served_over_generator_alone")))
        if ours and base:
            o, b = ours["runs"][index], base["runs"][index]
            row.append(f"{o['faces_per_s'] / b['faces_per_s']:.1f}x" if b["faces_per_s"] else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if alone:
        lines.append(f"Generator alone (the served model's SavedModel called in-process through Model.generate at "
                     f"batch {alone['batch']} = FACEGEN_MAX_BATCH, no HTTP, TLS or PNG; best of "
                     f"{len(alone['windows_faces_per_s'])} windows of {alone['window_s']:g} s after a warm-up, "
                     f"both servers idle, load average {alone['load_avg']:.1f}): {alone['faces_per_s']} faces/s "
                     f"(windows: {', '.join(str(w) for w in alone['windows_faces_per_s'])}; "
                     f"{alone['ms_per_call_best']} ms per call).")
    if "variant" in report:
        settings = " ".join(f"{k}={v}" for k, v in report["variant_env"].items())
        lines.append(f"Variant, ours with {settings}, loaded level by level beside the others: " + "; ".join(
            f"c={v['concurrency']} {v['faces_per_s']} faces/s (p99 {v['p99_ms']} ms, server CPU "
            f"{v.get('server_cpu_ms_per_face')} ms per face)" for v in report["variant"]["runs"]) + ".")
    for name in names:
        spent = [r for r in report[name]["runs"] if "server_cpu_ms_per_face" in r]
        if spent:
            lines.append(f"CPU time per face served, {name}: " + "; ".join(
                f"c={r['concurrency']} server {r['server_cpu_ms_per_face']} ms, load generator "
                f"{r['client_cpu_ms_per_face']} ms" for r in spent) + ".")
    if ours and "hot" in ours:
        h = ours["hot"]
        lines.append(f"Hot query (one seed, PNG cache hits), ours at c={h['concurrency']}: {h['faces_per_s']} faces/s, "
                     f"p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, {h['errors']} errors.")
    lines.append("Cold start (process start -> all workers ready, /readyz 200): "
                 + ", ".join(f"{name} {report[name]['cold_start_s']} s" for name in names) + ".")
    lines.append("Worker RSS, max over the runs: "
                 + ", ".join(f"{name} {report[name]['worker_rss_max_mb']} MB" for name in names)
                 + " (RSS includes ~400 MB of shared TensorFlow libraries).")
    for name in names:
        memory = ", ".join(f"RSS {m['rss']} / USS {m['uss']} / PSS {m['pss']}"
                           for m in report[name]["worker_memory_end_mb"])
        lines.append(f"Worker memory at the end, {name} (MB): {memory}.")
    if ours:
        lines.append(f"Model served by ours: {report['model']}.")
    return "\n".join(lines) + "\n"


def environment_setting(text: str) -> tuple[str, str]:
    """--variant-env KEY=VALUE -> (KEY, VALUE); a malformed one is a usage error naming the flag."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    parser.add_argument("--hot", type=int, default=16, help="concurrency of the hot-query run (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for both servers")
    parser.add_argument("--threads", type=int, default=None,
                        help="GUNICORN_THREADS for ours (default: gunicorn.conf.py's own default)")
    parser.add_argument("--only", choices=["ours", "baseline"], help="run one server only")
    parser.add_argument("--model", metavar="NAME",
                        help="serve this model of models/ (FACEGEN_MODEL) instead of the default, e.g. celeba-hq-128")
    parser.add_argument("--variant-env", action="append", default=[], metavar="KEY=VALUE", type=environment_setting,
                        help="also load a third server, ours with these environment settings (repeatable), level by "
                             "level beside the others, e.g. to compare a thread setting within one run")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the generator-alone figure (the served model called in-process, no HTTP)")
    parser.add_argument("--ceiling-window", type=float, default=3.0,
                        help="seconds per timed window of the generator-alone figure (best of 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--venv", type=Path,
                        help="run both servers from this virtual environment (e.g. one holding only "
                             "requirements.txt, as the image does; tests/test_deploy.py builds one)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="facegen-bench-"))
    try:
        cert, key, ca_file = make_certificates(work)
        models_dir, model_note = prepare_models(work)
        if args.model:
            if not (models_dir / args.model / model_folder.MANIFEST).is_file():
                parser.error(f"--model: no model {args.model!r} in {models_dir}")
            model_note = f"models/{args.model} (--model; not the default)"
        print(f"model: {model_note}", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        ours_port, base_port = free_port(), free_port()
        ours_env = dict(env, PORT=str(ours_port), BIND_HOST="127.0.0.1", TLS_CERT_FILE=cert, TLS_KEY_FILE=key,
                        FACEGEN_MODELS_DIR=str(models_dir), WEB_CONCURRENCY=str(args.workers),
                        PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"), LOG_LEVEL="info")
        # The steady state: the pti methods' background warm-up (app/edits.py, about 16 s of one core per worker
        # after it is ready) would land in the first measured level. An operator's explicit setting is kept.
        ours_env.setdefault("FACEGEN_WARM_INVERSION", "0")
        if args.threads:
            ours_env["GUNICORN_THREADS"] = str(args.threads)
        if args.model:
            ours_env["FACEGEN_MODEL"] = args.model
        gunicorn = str(args.venv / "bin" / "gunicorn") if args.venv else GUNICORN
        ours = Server("ours", [gunicorn, "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null"], ours_env,
                      ours_port, ca_file, work / "ours.log", "facegen: worker", args.workers)
        baseline = Server("baseline", [gunicorn, "-c", "bench/baseline_gunicorn.conf.py", "-w", str(args.workers),
                                       "-k", "sync", "--timeout", "300",
                                       "--certfile", cert, "--keyfile", key, "-b", f"127.0.0.1:{base_port}",
                                       "bench.baseline_artiface:app"], env, base_port, ca_file,
                          work / "baseline.log", "baseline worker", args.workers)
        report = {"machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                              "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                              "load_before": os.getloadavg(), "python": platform.python_version()},
                  "model": model_note, "concurrency": levels, "duration_s": args.duration,
                  "warmup_s": args.warmup, "workers": args.workers, "threads": args.threads,
                  "server_python": str(args.venv) if args.venv else sys.executable,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        servers = [server for server in (ours, baseline) if not args.only or server.name == args.only]
        if args.variant_env:
            variant_settings = dict(args.variant_env)
            variant_port = free_port()
            servers.append(Server("variant", ours.command, dict(ours_env, PORT=str(variant_port), **variant_settings,
                                                                PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus-v")),
                                  variant_port, ca_file, work / "variant.log", "facegen: worker", args.workers))
            report["variant_env"] = variant_settings
        ceiling = None
        if not args.no_ceiling and ours in servers:
            python = str(args.venv / "bin" / "python") if args.venv else PYTHON
            model_dir = default_model_dir(models_dir, ours_env)
            ceiling = lambda: generator_alone(python, model_dir, ours_env, window_s=args.ceiling_window)  # noqa: E731
        report.update(run_servers(servers, levels, args.duration, args.warmup, args.hot, ceiling))
        report["machine"]["load_after"] = os.getloadavg()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
        table = markdown(report)
        (args.out / "serve_load.md").write_text(table)
        print(table)
        o16 = next((r for r in report.get("ours", {}).get("runs", []) if r["concurrency"] == 16), None)
        b16 = next((r for r in report.get("baseline", {}).get("runs", []) if r["concurrency"] == 16), None)
        if o16 and b16 and b16["faces_per_s"]:
            print(f"ratio ours/baseline at c=16: {o16['faces_per_s'] / b16['faces_per_s']:.1f}x")
        if "generator_alone" in report:
            alone = report["generator_alone"]
            served = ", ".join(f"c={r['concurrency']} {r['faces_per_s']} faces/s = "
                               f"{fraction(r['served_over_generator_alone'])}" for r in report["ours"]["runs"])
            print(f"served / generator alone ({alone['faces_per_s']} faces/s at batch {alone['batch']}): {served}")
            if o16:
                print(f"served / generator alone at c=16: {fraction(o16['served_over_generator_alone'])}")
        print(f"wrote {args.out / 'serve_load.json'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
