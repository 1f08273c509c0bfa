"""A grid's faces through the micro-batcher (what /api/faces and /api/interpolate do) against one direct generator
call with the whole grid (what they did before): the time to the pixels, on the bundled default model.

    .venv/bin/python bench/grid_path.py [--faces 64] [--repeats 15]

Both ways alternate in the same process, after warm-up, and the medians are compared as a ratio. The batcher splits
the grid into calls of at most FACEGEN_MAX_BATCH (16) faces in its warmed shapes; the direct call takes them all.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=64, help="faces per grid (default 64, the API's most)")
    parser.add_argument("--repeats", type=int, default=15, help="timed grids per way (default 15)")
    args = parser.parse_args()

    from app.batcher import FaceRenderer
    from app.faces import FaceRequest, render_faces
    from app.models import load_models

    registry = load_models(ROOT / "models")
    model = registry.get(registry.default)
    renderer = FaceRenderer(registry)
    renderer.warm_up()
    ways = {"direct (one call)": render_faces, "micro-batcher": renderer.faces}
    times = {name: [] for name in ways}
    for repeat in range(args.repeats + 1):
        requests = [FaceRequest.resolving(model, 1000 * repeat + i) for i in range(args.faces)]
        for name, way in ways.items():
            started = time.perf_counter()
            way(requests)
            if repeat:  # the first round warms the direct call's new shape
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["direct (one call)"]
    print(f"{model.name}, {args.faces} faces per grid, median of {args.repeats}, load {os.getloadavg()[0]:.1f}:")
    for name, median in medians.items():
        print(f"  {name:20s} {median * 1000:7.1f} ms  {args.faces / median:7.1f} faces/s  {median / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
