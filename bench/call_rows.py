"""Why every call into a SavedModel runs on a fixed number of rows (facegen/model_folder.py's CALL_ROWS).

    .venv/bin/python bench/call_rows.py [--models models/celeba-hq-64,models/celeba-hq-128] [--faces 120]

For each model: ``--faces`` random faces generated in calls of N rows (the last call padded), counted against calls
of CALL_ROWS rows: how many faces are not byte-identical (CPU kernels take other paths for other row counts); then
faces/s per call size with TensorFlow on one thread (what each service worker and each generate worker runs), each
size timed for 1.5 s after a warm-up call.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (1, 2, 3, 5, 6, 7, 8, 12, 15, 24, 40, 120)
TIMED = (1, 2, 4, 8, 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models/celeba-hq-64,models/celeba-hq-128")
    parser.add_argument("--faces", type=int, default=120)
    args = parser.parse_args()

    import numpy as np

    from facegen import model_folder

    for folder in args.models.split(","):
        manifest = model_folder.read_manifest(ROOT / folder)
        loaded = model_folder.load_saved_model(ROOT / folder)
        stream = np.random.RandomState(2)
        noise = stream.standard_normal((args.faces, manifest["latent_size"])).astype(np.float32)
        attrs = (stream.random_sample((args.faces, len(manifest["attributes"]))) < 0.5).astype(np.float32)
        reference = model_folder.generate_function(loaded)(noise, attrs)
        differing = {}
        for rows in SIZES:
            faces = model_folder.generate_function(loaded, rows=rows)(noise, attrs)
            differing[rows] = int((faces != reference).any(axis=(1, 2, 3)).sum())
        print(f"{manifest['name']}: faces of {args.faces} not byte-identical to calls of {model_folder.CALL_ROWS} "
              "rows, by rows per call: " + ", ".join(f"{rows}: {count}" for rows, count in differing.items()))
        rates = {}
        for rows in TIMED:
            generate = model_folder.generate_function(loaded, rows=rows)
            generate(noise[:rows], attrs[:rows])
            started, calls = time.perf_counter(), 0
            while time.perf_counter() - started < 1.5:
                generate(noise[:rows], attrs[:rows])
                calls += 1
            rates[rows] = calls * rows / (time.perf_counter() - started)
        print(f"{manifest['name']}: faces/s by rows per call (one TensorFlow thread): "
              + ", ".join(f"{rows}: {rate:.0f}" for rows, rate in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
