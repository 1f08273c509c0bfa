"""Time per photo edit, in-process: POST /api/edit?attrs=Smiling&size=256 on CelebA-HQ portraits, one at a time.

    python bench/edit_time.py --photos ../shared/data/celeba-hq-128/CelebA-HQ-img [--models models] [--count 30]

The photos are read in place (never copied). Each request is decode + face detection + framing + encoder + two
generated faces (rebuilt and edited) + PNG, through create_app() without HTTP; the first one (warm-up) is not timed.
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of N.jpg portraits (CelebA-HQ-img)")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="models directory (default: models/)")
    parser.add_argument("--count", type=int, default=30, help="photos to edit (the first is the warm-up)")
    args = parser.parse_args()
    paths = [args.photos / f"{i}.jpg" for i in range(args.count)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"--photos: no {missing[0]}")

    from app import create_app

    client = create_app({"FACEGEN_MODELS_DIR": str(args.models), "TESTING": True}).test_client()
    times, statuses = [], []
    for index, path in enumerate(paths):
        body = {"image": (io.BytesIO(path.read_bytes()), path.name)}
        started = time.perf_counter()
        response = client.post("/api/edit?attrs=Smiling&size=256", data=body, content_type="multipart/form-data")
        if index:
            times.append(time.perf_counter() - started)
            statuses.append(response.status_code)
    ordered = sorted(times)
    print(f"{len(times)} edits ({statuses.count(200)} faces found, {statuses.count(422)} without a face): "
          f"median {statistics.median(times) * 1000:.0f} ms, p90 {ordered[int(0.9 * len(ordered))] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
