"""``python -m facegen generate``'s faces/s against the generator alone, measured in the same run.

    .venv/bin/python bench/generate_speed.py [--count 10000] [--model NAME|DIR] [--format png] [--workers N]

The generator alone is what serving's figures are measured against (bench/serve_load.py): ``Model.generate`` on
batches of FACEGEN_MAX_BATCH (16) faces in a loop, nothing else, in this process with TensorFlow's default threads
(every core: its best figure here). generate is the real command, ``python -m facegen generate --no-progress``, in a
subprocess with its own worker processes (app/generate.py; ``--workers`` passed on when given), into a fresh
temporary folder: its faces/s is the one it prints (writing the faces, from the moment its workers have loaded the
model); the whole command's wall time, start-up included, is given too. They alternate, generator / generate / generator, so load from other processes on a shared
CPU falls on both; generate's faces/s is reported as a ratio to the mean of the two generator runs.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generator_alone(model, count: int, batch: int) -> tuple[float, float]:
    """(faces/s, CPU ms per face) of Model.generate on ``count`` faces in batches of ``batch`` (random inputs,
    drawn beforehand)."""
    import numpy as np

    stream = np.random.RandomState(0)
    noise = stream.standard_normal((batch, model.latent_size)).astype(np.float32)
    attrs = (stream.random_sample((batch, len(model.attributes))) < 0.5).astype(np.float32)
    calls = -(-count // batch)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        model.generate(noise, attrs)
    return calls * batch / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / (calls * batch)


def generate_command(model_arg: str | None, count: int, fmt: str, work: Path,
                     workers: int | None = None) -> tuple[float, float, float]:
    """(faces/s the command prints for writing the faces, seconds of the whole command, its CPU seconds)."""
    out = work / "faces"
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "facegen", "generate", "--count", str(count), "--out", str(out), "--format", fmt,
            "--no-progress"] + (["--model", model_arg] if model_arg else []) + (
                ["--workers", str(workers)] if workers else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rate = re.search(r"wrote (\d+) faces .*?([\d.]+) faces/s", done.stdout)
    assert rate and int(rate.group(1)) == count, done.stdout + done.stderr
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(rate.group(2)), seconds, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="faces per measurement (default 10,000)")
    parser.add_argument("--model", help="NAME or DIR, as generate's --model (default: the default model)")
    parser.add_argument("--format", default="png", choices=["png", "jpg"])
    parser.add_argument("--workers", type=int, default=None, help="generate's --workers (default: its own)")
    args = parser.parse_args()

    from app import generate
    from app.batcher import DEFAULT_MAX_BATCH, _env_number

    model = generate.load(args.model)
    batch = _env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int)
    generator_alone(model, 10 * batch, batch)  # warm
    with tempfile.TemporaryDirectory() as work:
        (before, cpu_before) = generator_alone(model, args.count, batch)
        loop, whole, cpu_generate = generate_command(args.model, args.count, args.format, Path(work), args.workers)
        (after, cpu_after) = generator_alone(model, args.count, batch)
    alone = (before + after) / 2
    print(f"{model.name} ({model.resolution} px), {args.count:,} faces, --format {args.format}, batch {batch}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"  generator alone     {before:8.1f} / {after:8.1f} faces/s (before / after), "
          f"{cpu_before:.2f} / {cpu_after:.2f} CPU ms per face")
    print(f"  generate (--workers {args.workers or generate.DEFAULT_WORKERS})")
    print(f"  generate            {loop:8.1f} faces/s writing ({loop / alone:.2f}x the generator alone); "
          f"the whole command {whole:.1f} s ({args.count / whole:.1f} faces/s with start-up), "
          f"{cpu_generate * 1000 / args.count:.2f} CPU ms per face with start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
