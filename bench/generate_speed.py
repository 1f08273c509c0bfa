"""``python -m facegen generate``'s faces/s against the generator alone, measured in the same process and run.

    .venv/bin/python bench/generate_speed.py [--count 10000] [--model NAME|DIR] [--format png]

The generator alone is what serving's figures are measured against (bench/serve_load.py): ``Model.generate`` on
batches of FACEGEN_MAX_BATCH (16) faces in a loop, nothing else. generate is the command's own code (app/generate.py:
resolving every seed, the micro-batcher, encoding and writing each file, the progress bar off) into a fresh
temporary folder. They alternate, generator / generate / generator, so load from other processes on a shared CPU
falls on both; generate's faces/s is reported as a ratio to the mean of the two generator runs.
"""

import argparse
import os
import shutil
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


def generate_command(model, count: int, fmt: str, work: Path) -> tuple[float, float, float]:
    """(faces/s of the writing loop, faces/s of the whole command after loading: seeds resolved, folder written,
    CPU ms per face of the whole command after loading)."""
    from app import generate

    args = generate.parser().parse_args(["--count", str(count), "--out", str(work / "faces"), "--format", fmt,
                                         "--no-progress"])
    shutil.rmtree(work / "faces", ignore_errors=True)
    started, cpu = time.perf_counter(), time.process_time()
    requests = generate.face_requests(model, args)
    generate.open_folder(args.out, generate.record(model, requests, args))
    written, seconds = generate.write_faces(model, requests, args.out, fmt, show_progress=False)
    (args.out / generate.ANNOTATION).write_text(generate.annotation(model, requests, fmt))
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert written == count
    return written / seconds, count / total, cpu * 1000 / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="faces per measurement (default 10,000)")
    parser.add_argument("--model", help="NAME or DIR, as generate's --model (default: the default model)")
    parser.add_argument("--format", default="png", choices=["png", "jpg"])
    args = parser.parse_args()

    from app import generate
    from app.batcher import DEFAULT_MAX_BATCH, _env_number

    model = generate.load(args.model)
    batch = _env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int)
    generator_alone(model, 10 * batch, batch)  # warm
    with tempfile.TemporaryDirectory() as work:
        (before, cpu_before) = generator_alone(model, args.count, batch)
        loop, whole, cpu_generate = generate_command(model, args.count, args.format, Path(work))
        (after, cpu_after) = generator_alone(model, args.count, batch)
    alone = (before + after) / 2
    print(f"{model.name} ({model.resolution} px), {args.count:,} faces, --format {args.format}, batch {batch}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"  generator alone     {before:8.1f} / {after:8.1f} faces/s (before / after), "
          f"{cpu_before:.2f} / {cpu_after:.2f} CPU ms per face")
    print(f"  generate            {loop:8.1f} faces/s writing ({loop / alone:.2f}x the generator alone); "
          f"{whole:.1f} faces/s with the seeds resolved and the folder written ({whole / alone:.2f}x), "
          f"{cpu_generate:.2f} CPU ms per face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
