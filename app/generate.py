"""``python -m facegen generate``: a labelled synthetic face data set, the service's faces written to a folder.

Face i is exactly what ``/api/face?seed=S+i`` serves with the same ``attrs``, ``psi`` and ``size`` (``--format
png``: byte for byte), because every step is the service's own: the model is loaded and warmed up by app/models.py,
each seed resolved by app/faces.py (facegen/attributes.py's seed and attribute rules), the faces generated through
the micro-batcher /api/face uses (app/batcher.py) and encoded by app/faces.py's ``encode_face``.

Output, in the CelebAMask-HQ layout that ``python -m training prepare`` reads (square images, resized whole):

  OUT/CelebA-HQ-img/{i}.png|jpg           face i, i = 0 .. count-1
  OUT/CelebAMask-HQ-attribute-anno.txt    count; the model's attribute names; "{i}.png 1 -1 ..." per face
  OUT/generation.json                     model and manifest digest, arguments, seeds, version, the data's terms

Every file appears whole (written beside, then renamed), the annotation file last: a folder holding it is
complete. Ctrl-C stops between files; the same command again finds generation.json, keeps the faces already
written and makes the rest. A non-empty folder made otherwise is refused. It lives beside serving: it needs a
SavedModel and the service's rules, never the training code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import deque
from pathlib import Path

from facegen.attributes import ON_THRESHOLD

FORMAT = "facegen-generation/1"
IMAGES = "CelebA-HQ-img"  # the CelebAMask-HQ layout's names (training/data.py reads them back)
ANNOTATION = "CelebAMask-HQ-attribute-anno.txt"
RECORD = "generation.json"
FORMATS = ("png", "jpg")
WRITERS = 2  # threads encoding and writing files beside the generator's (bench/generate_speed.py)
PARTIAL = ".partial"  # suffix of a file being written; renamed when whole, removed after an interruption

EXAMPLE = """example:
  python -m facegen generate --count 1000 --out faces/ --attrs Male,-Eyeglasses --seed 5000
      1,000 faces, files CelebA-HQ-img/0.png .. 999.png; file i is /api/face?seed=5000+i&attrs=Male,-Eyeglasses
  python -m training prepare --data faces/ --out data/faces-64.npz --size 64     # reads the folder back
"""


class UsageError(Exception):
    """Bad input: printed as one line naming the flag, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line naming it, exit status 2: no usage block before it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    described = OneLineParser(
        prog="python -m facegen generate", description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    described.add_argument("--count", required=True, type=_positive_count, metavar="N", help="faces to write")
    described.add_argument("--out", required=True, type=Path, metavar="DIR",
                           help="folder to write (new or empty; or one this command filled with the same arguments, "
                                "which it completes)")
    described.add_argument("--model", metavar="NAME|DIR",
                           help="a model served from FACEGEN_MODELS_DIR (default: the repository's models/) or a "
                                "model folder (default: the service's default model)")
    described.add_argument("--seed", default="0", metavar="S", help="the first seed: face i is seed S+i (default 0)")
    described.add_argument("--attrs", default=None, metavar="CONSTRAINTS",
                           help="as /api/face's attrs: Male,-Eyeglasses turns Male on and Eyeglasses off; the "
                                "attributes not named are drawn from each seed (whole training rows)")
    described.add_argument("--psi", default=None, metavar="PSI", help="truncation, 0 < psi <= 1 (default: the API's)")
    described.add_argument("--size", default=None, metavar="PX",
                           help="output side in pixels, one the API allows (default: the model's resolution)")
    described.add_argument("--format", default="png", choices=FORMATS,
                           help="png (byte-identical to /api/face, the default) or jpg")
    described.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return described


def _positive_count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of faces, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _flag_error(flag: str, error) -> UsageError:
    """The API's parameter errors (app/params.py: 'psi must be ...'), said about the flag."""
    return UsageError(f"{flag}: {getattr(error, 'message', None) or error}")


# -- arguments -> what to make ---------------------------------------------------------------------------------
def model_path(value: str | None) -> Path:
    """--model: a folder holding a manifest, else a model name in the models directory the service would serve."""
    from app import REPO_MODELS_DIR
    from app.models import ModelError, default_model, model_folders

    models_dir = Path(os.environ.get("FACEGEN_MODELS_DIR") or REPO_MODELS_DIR)
    try:
        if value is None:
            return models_dir / default_model(models_dir, os.environ.get("FACEGEN_MODEL") or None)
        folder = Path(value)
        if folder.is_dir() and (folder / "manifest.json").is_file():
            return folder
        names = model_folders(models_dir) if models_dir.is_dir() else []
        if value in names:
            return models_dir / value
    except ModelError as error:
        raise UsageError(f"--model: {error}") from None
    raise UsageError(f"--model: {value!r} is neither a model folder nor a model in {models_dir} "
                     f"(models there: {', '.join(names) or 'none'})")


def load(value: str | None):
    """The loaded, warmed-up model (app/models.py), or UsageError naming --model."""
    from app.models import ModelError, load_model, warm_up

    path = model_path(value)
    try:
        model = load_model(path, name=path.resolve().name)
        warm_up(model)
    except ModelError as error:
        raise UsageError(f"--model: {error}") from None
    return model


def face_requests(model, args) -> list:
    """One FaceRequest per face, resolved (noise and attributes) exactly as /api/face resolves its query."""
    from app import limits, params
    from app.errors import ApiError
    from app.faces import FaceRequest
    from app.params import parse_attrs

    try:
        first = params.parse_seed(args.seed, "seed")
    except ApiError as error:
        raise _flag_error("--seed", error) from None
    last = first + args.count - 1
    if last > limits.SEED_MAX:
        raise UsageError(f"--count: seeds {first} .. {last} pass the largest seed, {limits.SEED_MAX}; lower --seed "
                         f"or --count")
    try:
        constraints = parse_attrs(args.attrs, model)
    except ApiError as error:
        raise _flag_error("--attrs", error) from None
    try:
        psi = params.parse_psi(args.psi) if args.psi is not None else limits.DEFAULT_PSI
    except ApiError as error:
        raise _flag_error("--psi", error) from None
    try:
        size = params.parse_size(args.size, model.resolution)
    except ApiError as error:
        raise _flag_error("--size", error) from None
    size = None if size == model.resolution else size  # as /api/face: the native size is no resize
    return [FaceRequest.resolving(model, first + i, constraints, psi, size) for i in range(args.count)]


def record(model, requests, args) -> dict:
    """generation.json: what made the folder, so a rerun can tell its own folder, and what the faces inherit.
    Deterministic (no times, no paths): the same arguments give the same bytes."""
    import facegen

    first = requests[0]
    dataset = model.manifest.get("dataset") or {}
    image = f"{IMAGES}/{{i}}.{args.format}"
    return {
        "format": FORMAT,
        "made_by": {"package": "facegen", "version": facegen.__version__, "command": "python -m facegen generate"},
        "model": {"name": model.name, "version": model.version,
                  "manifest_sha256": hashlib.sha256((model.path / "manifest.json").read_bytes()).hexdigest(),
                  "resolution": model.resolution, "attributes": list(model.attributes),
                  "attribute_sampling": model.attribute_sampling},
        "arguments": {"count": len(requests), "seed": first.seed, "attrs": ",".join(first.attrs or ()),
                      "psi": first.psi, "size": first.output_size, "format": args.format},
        "seeds": {"first": first.seed, "last": requests[-1].seed,
                  "rule": f"{image} is the service's face for seed first + i"
                          + (" (the same bytes, for --format png)" if args.format == "png" else ""),
                  "api": "/api/face?" + first.query().replace(f"seed={first.seed}", "seed={first + i}", 1)},
        "layout": {"name": "celebamask-hq", "images": image, "attributes": ANNOTATION,
                   "values": "1 on, -1 off: the attribute vector each face was generated with"},
        "synthetic": True,
        "data_terms": {
            "dataset": dataset.get("name"), "synthetic_training_data": dataset.get("synthetic"),
            "licence": dataset.get("licence"),
            "note": ("these faces come from a model trained on this data set, and carry its terms"
                     if dataset.get("licence") else "the model's manifest names no data terms")},
    }


def annotation(model, requests, suffix: str) -> str:
    """CelebA's attribute text format: the count, the names, one line per image with 1 / -1."""
    lines = [str(len(requests)), " ".join(model.attributes)]
    for i, request in enumerate(requests):
        values = request.resolved().attributes
        lines.append(" ".join([f"{i}.{suffix}"] + ["1" if v >= ON_THRESHOLD else "-1" for v in values]))
    return "\n".join(lines) + "\n"


# -- the folder --------------------------------------------------------------------------------------------------
def write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + PARTIAL)
    partial.write_bytes(data)
    os.replace(partial, path)


def open_folder(out: Path, wanted: dict) -> None:
    """Make OUT ready: new or empty -> record written; ours with the same record -> resumed; else UsageError."""
    text = json.dumps(wanted, indent=2, sort_keys=True) + "\n"
    try:
        out.mkdir(parents=True, exist_ok=True)
        entries = list(out.iterdir())
    except OSError as error:
        raise UsageError(f"--out: cannot write to {out} ({error.strerror or error})") from None
    if entries:
        try:
            found = json.loads((out / RECORD).read_text())
        except FileNotFoundError:
            raise UsageError(f"--out: {out} is not empty and holds no {RECORD}: give a new or empty folder") from None
        except (OSError, ValueError) as error:
            raise UsageError(f"--out: {out / RECORD} is unreadable ({error}): give a new or empty folder") from None
        if found != wanted:
            differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            detail = "; ".join(f"{k}: {_differences(found.get(k), wanted.get(k))}" for k in differ)
            raise UsageError(f"--out: {out} was made by generate with other arguments or another model ({detail}); "
                             "give a new or empty folder, or the same arguments to complete it")
        for stale in out.rglob(f"*{PARTIAL}"):
            stale.unlink()
    try:
        (out / IMAGES).mkdir(exist_ok=True)
        write_atomically(out / RECORD, text.encode())
    except OSError as error:
        raise UsageError(f"--out: cannot write to {out} ({error.strerror or error})") from None


def _differences(found, wanted) -> str:
    if isinstance(found, dict) and isinstance(wanted, dict):
        keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        return ", ".join(f"{k} {found.get(k)!r} there, {wanted.get(k)!r} now" for k in keys)
    return f"{found!r} there, {wanted!r} now"


def progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="face", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def write_faces(model, requests, out: Path, fmt: str, show_progress: bool, writers: int = WRITERS) -> tuple[int, float]:
    """Generate and write the faces not yet in OUT: (faces written now, seconds). The micro-batcher's thread runs
    the generator while ``writers`` threads encode and write the faces it made before (Pillow and zlib release the
    GIL), so generating and encoding overlap. Ctrl-C: the files being written are finished, no new one is begun."""
    from concurrent.futures import ThreadPoolExecutor

    from app.batcher import DEFAULT_MAX_BATCH, MicroBatcher, _env_number
    from app.faces import encode_face

    images = out / IMAGES
    todo = [i for i in range(len(requests)) if not (images / f"{i}.{fmt}").is_file()]
    batcher = MicroBatcher(model, max_batch=_env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int), wait_ms=0,
                           timeout_s=3600.0)
    batcher.warm_up()  # every batch shape the service uses, before the clock starts
    window = 4 * batcher.max_batch  # faces in flight: enough that the generator never waits for the writers

    def write(i: int, face) -> None:
        write_atomically(images / f"{i}.{fmt}", encode_face(requests[i], batcher.wait(face), fmt))

    pending: deque = deque()
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max(1, writers), thread_name_prefix="generate-writer")
    try:
        with progress_bar(len(requests), len(requests) - len(todo), show_progress) as bar:
            for i in todo:
                pending.append(pool.submit(write, i, batcher.submit(requests[i], finish=None)))
                if len(pending) >= window:
                    pending.popleft().result()
                    bar.update(1)
            while pending:
                pending.popleft().result()
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after Ctrl-C: the files begun are finished, whole
    return len(todo), time.perf_counter() - started


def generate(args) -> int:
    model = load(args.model)
    requests = face_requests(model, args)
    open_folder(args.out, record(model, requests, args))
    try:
        written, seconds = write_faces(model, requests, args.out, args.format, not args.no_progress)
    except KeyboardInterrupt:
        for partial in args.out.rglob(f"*{PARTIAL}"):
            partial.unlink()
        done = sum(1 for _ in (args.out / IMAGES).glob(f"*.{args.format}"))
        print(f"interrupted: {done} of {len(requests)} faces are in {args.out}; the same command completes it",
              file=sys.stderr)
        return 130
    except OSError as error:
        raise UsageError(f"--out: cannot write to {args.out} ({error.strerror or error})") from None
    write_atomically(args.out / ANNOTATION, annotation(model, requests, args.format).encode())
    rate = f", {written / seconds:.1f} faces/s" if written and seconds > 0 else ""
    print(f"wrote {written} faces ({len(requests) - written} already there) to {args.out}{rate}")
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter would bury the progress bar
    args = parser().parse_args(argv)
    try:
        return generate(args)
    except UsageError as error:
        print(f"python -m facegen generate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any face was written (loading the model): nothing to clean up
        print("interrupted", file=sys.stderr)
        return 130
