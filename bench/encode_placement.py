"""Where to encode PNGs: in the request threads or in the batch thread after generate
(what app/batcher.py's FaceRenderer does, because this measured faster)?

    python bench/encode_placement.py [--models-dir DIR] [--threads 16] [--seconds 8]

In-process, no HTTP: T threads each render distinct faces through a MicroBatcher as fast as they can, once with
the encoding (resize + PNG) done by each request thread, once done by the batch thread for the whole batch, at the
model's own size and at 256 px. Prints faces/s for each. Without --models-dir a production-shaped 64 px model
with random weights is exported to a temporary folder (as bench/serve_load.py does).
"""

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    models_dir = args.models_dir
    if models_dir is None:
        sys.path.insert(0, str(ROOT / "bench"))
        from serve_load import prepare_models
        models_dir, note = prepare_models(Path(tempfile.mkdtemp(prefix="facegen-encode-")))
        print(f"model: {note}")
    from app.batcher import MicroBatcher
    from app.faces import encode_face
    from app.faces import FaceRequest
    from app.models import load_models

    registry = load_models(models_dir)
    model = registry.get(registry.default)
    seeds = itertools.count(1)
    # Alternated, so a change in background load during the run does not favour one placement.
    ORDER = ("batch thread", "request thread", "batch thread", "request thread")
    lock = threading.Lock()

    encode = encode_face
    for size in (None, 256):
        for placement in ORDER:
            batcher = MicroBatcher(model, finish=encode if placement == "batch thread" else None)
            batcher.warm_up()
            done = [0]
            stop = time.perf_counter() + args.seconds

            def client():
                while time.perf_counter() < stop:
                    with lock:
                        seed = next(seeds)
                    request = FaceRequest(model, seed, None, 1.0, size)
                    result = batcher.pixels(request)
                    if placement == "request thread":
                        result = encode(request, result)
                    with lock:
                        done[0] += 1

            threads = [threading.Thread(target=client) for _ in range(args.threads)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = done[0] / (time.perf_counter() - started)
            print(f"size {size or model.resolution}px, encode in the {placement}: {rate:.1f} faces/s "
                  f"({args.threads} threads)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
