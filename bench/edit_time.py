"""Time per photo edit, and served faces/s while edits run, in-process (create_app() without HTTP).

    python bench/edit_time.py --photos ../shared/data/celeba-hq-128/CelebA-HQ-img [--models models] [--count 30]
        [--method photo,generator,pti,pti-photo] [--view edited|photo] [--load-seconds 15]

Time per edit: POST /api/edit?attrs=Smiling&size=256 (plus method/view) on CelebA-HQ portraits, one at a time: decode
+ face detection + framing + encoder + the generated faces + the edit + PNG; the first one (warm-up) is not timed.
The photos are read in place (never copied). Several methods (--method photo,generator) take turns on each photo,
so a machine shared with other work slows them alike and their ratio holds. Each edit's process CPU seconds are
reported beside its wall time: on a machine shared with training, wall time says more about the neighbours than
about the edit, and CPU time over the cores an idle machine would lend bounds what the edit costs there.

With --load-seconds S: /api/face for S seconds from two threads (new seeds each time, so the PNG cache never
answers), alone and then while two more threads edit photos in a loop; faces/s of the second run over the first
is the share of face serving left while edits run, measured in the same run.
"""

import argparse
import io
import itertools
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def post_edit(client, path: Path, query: str):
    body = {"image": (io.BytesIO(path.read_bytes()), path.name)}
    return client.post(f"/api/edit?{query}", data=body, content_type="multipart/form-data")


def faces_per_second(app, seconds: float, seeds, editing: list | None = None, photos=None, query: str = "") -> tuple:
    """(faces/s from two /api/face threads over ``seconds``, edits done meanwhile by two edit threads if asked)."""
    stop = threading.Event()
    counts = {"faces": 0, "edits": 0}
    lock = threading.Lock()

    def faces():
        client = app.test_client()
        while not stop.is_set():
            with lock:
                seed = next(seeds)
            assert client.get(f"/api/face?seed={seed}").status_code == 200
            with lock:
                counts["faces"] += 1

    def edits():
        client = app.test_client()
        for path in itertools.cycle(photos):
            if stop.is_set():
                return
            if post_edit(client, path, query).status_code == 200:
                with lock:
                    counts["edits"] += 1

    threads = [threading.Thread(target=faces) for _ in range(2)]
    if editing:
        threads += [threading.Thread(target=edits) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return counts["faces"] / seconds, counts["edits"] / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of N.jpg portraits (CelebA-HQ-img)")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="models directory (default: models/)")
    parser.add_argument("--count", type=int, default=30, help="photos to edit (the first is the warm-up)")
    parser.add_argument("--method", default="",
                        help="/api/edit's method, or several comma-separated, timed in turn (default: the server's)")
    parser.add_argument("--view", default="edited", choices=("edited", "photo"), help="/api/edit's view (edited)")
    parser.add_argument("--load-seconds", type=float, default=0.0,
                        help="also measure /api/face faces/s alone and while edits run, this long each (0: no)")
    args = parser.parse_args()
    if args.count < 2:
        parser.error("--count: at least 2 (the first is the warm-up)")
    paths = [args.photos / f"{i}.jpg" for i in range(args.count)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"--photos: no {missing[0]}")

    from app import create_app

    app = create_app({"FACEGEN_MODELS_DIR": str(args.models), "TESTING": True})
    client = app.test_client()
    methods = [m.strip() for m in args.method.split(",") if m.strip()] or [""]
    from app.edits import METHODS

    unknown = [m for m in methods if m and m not in METHODS]
    if unknown:
        parser.error(f"--method: {unknown[0]!r} is not one of {', '.join(METHODS)}")
    queries = [f"attrs=Smiling&size=256&view={args.view}" + (f"&method={m}" if m else "") for m in methods]
    query = queries[0]
    times = {q: [] for q in queries}
    cpu = {q: [] for q in queries}
    statuses = {q: [] for q in queries}
    for index, path in enumerate(paths):
        for q in queries:
            started, cpu_started = time.perf_counter(), time.process_time()
            response = post_edit(client, path, q)
            if index:
                times[q].append(time.perf_counter() - started)
                cpu[q].append(time.process_time() - cpu_started)
                statuses[q].append(response.status_code)
    for q in queries:
        ordered = sorted(times[q])
        print(f"{q}: {len(ordered)} edits ({statuses[q].count(200)} faces found, {statuses[q].count(422)} without a "
              f"face): median {statistics.median(ordered) * 1000:.0f} ms, p90 "
              f"{ordered[int(0.9 * len(ordered))] * 1000:.0f} ms, median CPU {statistics.median(cpu[q]) * 1000:.0f} ms"
              + (f", {statistics.median(ordered) / statistics.median(times[queries[-1]]):.2f}x the last"
                 if len(queries) > 1 else ""))
    if args.load_seconds > 0:
        seeds = itertools.count(10_000_000)
        alone, _ = faces_per_second(app, args.load_seconds, seeds)
        loaded, edits = faces_per_second(app, args.load_seconds, seeds, editing=True, photos=paths, query=query)
        print(f"/api/face from 2 threads: {alone:.1f} faces/s alone, {loaded:.1f} faces/s while 2 threads edit "
              f"({edits:.2f} edits/s): {loaded / alone:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
