"""``prepare``: read a CelebA-layout folder into one compact ``.npz`` cache, and the cache's only reader.

Layouts (detected automatically):
  official    DIR/img_align_celeba/*.jpg, DIR/list_attr_celeba.txt, DIR/list_eval_partition.txt (optional)
  kaggle-csv  DIR/list_attr_celeba.csv, DIR/list_eval_partition.csv (optional), images in
              DIR/img_align_celeba/img_align_celeba/*.jpg (as Kaggle ships it) or DIR/img_align_celeba/*.jpg

Each aligned 178x218 image is cropped to the fixed face box CROP (scaled proportionally for other image sizes) and
resized to SIZE x SIZE. Missing or undecodable images are skipped and counted, never fatal. The cache format is the
contract in docs/ARCHITECTURE.md ("The data cache"). numpy + Pillow + tqdm only: no TensorFlow here.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.errors import UsageError

CROP = (15, 40, 163, 188)  # left, top, right, bottom on the 178x218 aligned image
ALIGNED_SIZE = (178, 218)  # width, height
SIZES = (32, 64, 128)  # 32 for smoke tests only
CACHE_KEYS = ("images", "attributes", "attribute_names", "partition", "filenames", "meta")
SYNTH_MARK = "facegen synth"
SHOW_SKIPPED = 5  # how many skipped file names the report lists per reason


# -- the cache -----------------------------------------------------------------------------------------------
@dataclass
class Cache:
    """A prepared data set: what ``load_cache``/``open_dataset`` return (the arrays of the .npz, meta decoded)."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    attributes: np.ndarray  # uint8 [N, A] of 0/1
    attribute_names: list  # A names, in file order
    partition: np.ndarray  # uint8 [N]: 0 train, 1 validation, 2 test
    filenames: np.ndarray  # str [N]
    meta: dict = field(default_factory=dict)
    path: Path | None = None  # the .npz it was read from

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(len(self.images))


def load_cache(path, mmap: bool = True) -> Cache:
    """Read a cache written by ``prepare``; UsageError for a missing file or one that is not such a cache.

    With ``mmap`` the images (nearly all of the file) are memory-mapped copy-on-write rather than read: a 128px
    CelebA is 10 GB, and train copies only the partition it uses. The other arrays are read into memory.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such cache file: {path} (write one with `python -m training prepare`)")
    if not path.is_file():
        raise UsageError(f"{path} is not a file: expected a .npz cache written by `python -m training prepare`")
    not_cache = f"{path} is not a data cache written by `python -m training prepare`"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in CACHE_KEYS if key not in npz.files]
            if missing:
                raise UsageError(f"{not_cache}: it lacks {', '.join(missing)}")
            arrays = {key: npz[key] for key in CACHE_KEYS if not (mmap and key == "images")}
            if mmap:
                arrays["images"] = _mapped_member(path, "images")
                if arrays["images"] is None:  # compressed, or otherwise not mappable: read it
                    arrays["images"] = npz["images"]
    except UsageError:
        raise
    except Exception as error:  # not a zip, not .npy members, object arrays, truncated file...
        raise UsageError(f"{not_cache} ({type(error).__name__}: {error})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except ValueError as error:
        raise UsageError(f"{not_cache}: its meta is not valid ({error})") from None
    images, attributes = arrays["images"], arrays["attributes"]
    n = len(images)
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3
            or attributes.ndim != 2 or len(attributes) != n or len(arrays["partition"]) != n
            or len(arrays["filenames"]) != n or attributes.shape[1] != len(arrays["attribute_names"])):
        raise UsageError(f"{not_cache}: its arrays do not fit together (images {images.shape} {images.dtype}, "
                         f"attributes {attributes.shape}, partition {arrays['partition'].shape})")
    return Cache(images=images, attributes=attributes.astype(np.uint8, copy=False),
                 attribute_names=[str(name) for name in arrays["attribute_names"]],
                 partition=arrays["partition"].astype(np.uint8, copy=False), filenames=arrays["filenames"],
                 meta=meta, path=path)


def _mapped_member(path: Path, key: str):
    """A copy-on-write np.memmap of an uncompressed .npz member (np.savez stores members uncompressed), or None."""
    import struct
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
            offset = handle.tell()
        if dtype.hasobject or 0 in shape or offset + dtype.itemsize * math.prod(shape) > path.stat().st_size:
            return None
        return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, struct.error):
        return None


def save_cache(path, images, attributes, attribute_names, partition, filenames, meta) -> Path:
    """Write a cache atomically: PATH.tmp.npz first, then os.replace, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + (path.suffix or ".npz"))
    arrays = {
        "images": np.asarray(images, dtype=np.uint8),
        "attributes": np.asarray(attributes, dtype=np.uint8),
        "attribute_names": _str_array(attribute_names),
        "partition": np.asarray(partition, dtype=np.uint8),
        "filenames": _str_array(filenames),
        "meta": np.array(json.dumps(meta)),
    }
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _str_array(values) -> np.ndarray:
    values = [str(v) for v in values]
    return np.array(values, dtype=f"<U{max([1] + [len(v) for v in values])}")


# -- the folder ----------------------------------------------------------------------------------------------
@dataclass
class Layout:
    """Where a CelebA-layout folder keeps its files."""

    root: Path
    name: str  # "official" | "kaggle-csv"
    attribute_file: Path
    partition_file: Path | None
    image_dir: Path

    def source_files(self) -> list:
        return [p for p in (self.attribute_file, self.partition_file) if p is not None]


def detect_layout(data) -> Layout:
    """The layout of a CelebA folder, or UsageError naming the files that are missing."""
    root = Path(data)
    if not root.exists():
        raise UsageError(f"--data: no such folder: {root}")
    if not root.is_dir():
        raise UsageError(f"--data: {root} is not a folder (expected a CelebA-layout folder)")
    official, kaggle = root / "list_attr_celeba.txt", root / "list_attr_celeba.csv"
    if official.is_file():
        name, attribute_file = "official", official
        partition_file = root / "list_eval_partition.txt"
    elif kaggle.is_file():
        name, attribute_file = "kaggle-csv", kaggle
        partition_file = root / "list_eval_partition.csv"
    else:
        raise UsageError(f"--data: {root} is not a CelebA-layout folder: it has neither {official} (official "
                         f"layout) nor {kaggle} (Kaggle CSV layout)")
    top, nested = root / "img_align_celeba", root / "img_align_celeba" / "img_align_celeba"
    if nested.is_dir() and (name == "kaggle-csv" or not any(top.glob("*.jpg"))):
        image_dir = nested
    elif top.is_dir():
        image_dir = top
    else:
        raise UsageError(f"--data: {root} has {attribute_file.name} but no image folder {top}")
    return Layout(root=root, name=name, attribute_file=attribute_file,
                  partition_file=partition_file if partition_file.is_file() else None, image_dir=image_dir)


def _attribute_value(text: str, path: Path, line_number: int) -> int:
    if text in ("1", "+1"):
        return 1
    if text in ("-1", "0"):
        return 0
    raise UsageError(f"{path}, line {line_number}: attribute value {text!r} is not 1 or -1")


def read_attributes(layout: Layout):
    """(filenames, uint8 [N, A] 0/1 attributes, attribute names), in file order."""
    path = layout.attribute_file
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    lines = text.splitlines()
    if layout.name == "official":
        if len(lines) < 2:
            raise UsageError(f"{path}: malformed attribute file: expected an image count on line 1 and the "
                             "attribute names on line 2")
        try:
            declared = int(lines[0].strip())
        except ValueError:
            raise UsageError(f"{path}, line 1: malformed attribute file: expected the image count, "
                             f"got {lines[0].strip()[:60]!r}") from None
        names = lines[1].split()
        rows = [(number, line.split()) for number, line in enumerate(lines[2:], start=3) if line.strip()]
    else:
        table = list(csv.reader(lines))
        if not table or not table[0] or table[0][0].strip().lower() not in ("image_id", "filename", "image"):
            raise UsageError(f"{path}, line 1: malformed attribute file: expected a header starting with image_id")
        declared = None
        names = [name.strip() for name in table[0][1:]]
        rows = [(number, [cell.strip() for cell in row]) for number, row in enumerate(table[1:], start=2)
                if any(cell.strip() for cell in row)]
    if not names:
        raise UsageError(f"{path}: malformed attribute file: no attribute names")
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: malformed attribute file: repeated attribute names")
    filenames, values = [], np.empty((len(rows), len(names)), dtype=np.uint8)
    for i, (number, fields) in enumerate(rows):
        if len(fields) != len(names) + 1:
            raise UsageError(f"{path}, line {number}: malformed attribute file: expected an image name and "
                             f"{len(names)} values, got {len(fields)} fields")
        filenames.append(fields[0])
        values[i] = [_attribute_value(v, path, number) for v in fields[1:]]
    if declared is not None and declared != len(rows):
        raise UsageError(f"{path}: malformed attribute file: line 1 says {declared} images but it lists {len(rows)}")
    return filenames, values, names


def read_partition(layout: Layout, filenames) -> np.ndarray:
    """uint8 [N]: 0 train, 1 validation, 2 test; all 0 without a partition file (or for names it lacks)."""
    partition = np.zeros(len(filenames), dtype=np.uint8)
    path = layout.partition_file
    if path is None:
        return partition
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if layout.name == "official":
        rows = [(number, line.split()) for number, line in enumerate(lines, start=1) if line.strip()]
    else:
        rows = [(number, [c.strip() for c in row]) for number, row in enumerate(csv.reader(lines), start=1)
                if any(c.strip() for c in row)]
        if rows and rows[0][1] and rows[0][1][0].lower() in ("image_id", "filename", "image"):
            rows = rows[1:]
    lookup = {}
    for number, fields in rows:
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise UsageError(f"{path}, line {number}: malformed partition file: expected an image name and "
                             "0, 1 or 2")
        lookup[fields[0]] = int(fields[1])
    for i, name in enumerate(filenames):
        partition[i] = lookup.get(name, 0)
    return partition


def parse_filter(text, attribute_names) -> dict:
    """``Male=1,Eyeglasses,Smiling=0`` -> {"Male": 1, "Eyeglasses": 1, "Smiling": 0} (names matched ignoring case)."""
    if not text:
        return {}
    canonical = {name.lower(): name for name in attribute_names}
    wanted = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if name.lower() not in canonical:
            raise UsageError(f"--filter: unknown attribute {name!r}; allowed: {', '.join(attribute_names)}")
        if value in ("", "1", "+1"):
            wanted[canonical[name.lower()]] = 1
        elif value in ("0", "-1"):
            wanted[canonical[name.lower()]] = 0
        else:
            raise UsageError(f"--filter: {part!r}: the value must be 1 or 0 (write Name=1, Name=0 or just Name)")
    return wanted


# -- decoding ------------------------------------------------------------------------------------------------
def crop_box(width: int, height: int) -> tuple:
    """CROP scaled from the 178x218 aligned image to an image of this size (float pixel coordinates)."""
    sx, sy = width / ALIGNED_SIZE[0], height / ALIGNED_SIZE[1]
    left, top, right, bottom = CROP
    return (left * sx, top * sy, right * sx, bottom * sy)


def load_face(path, size: int) -> np.ndarray:
    """One image file -> uint8 [size, size, 3], cropped to the face box. Raises OSError etc. on a bad file."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        left, top, right, bottom = crop_box(width, height)
        # JPEG draft mode: let the decoder scale down by 1/2, 1/4 or 1/8 while the crop box stays >= size.
        scale = size / min(right - left, bottom - top)
        if scale < 1:
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image = image.convert("RGB")  # decodes (the whole file: truncation shows up here)
        box = crop_box(*image.size) if image.size != (width, height) else (left, top, right, bottom)
        face = image.resize((size, size), Image.Resampling.LANCZOS, box=box)
        return np.asarray(face, dtype=np.uint8)


def _decode(job):
    """Pool worker: (path, size) -> ("ok", array) | ("missing", None) | ("corrupt", message)."""
    path, size = job
    try:
        return "ok", load_face(path, size)
    except FileNotFoundError:
        return "missing", None
    except IsADirectoryError:
        return "corrupt", "a folder, not an image"
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return "corrupt", f"{type(error).__name__}: {error}"


def _pool_context():
    # fork is fastest, but unsafe once a threaded framework is loaded (train opens the data after import).
    threaded = any(name in sys.modules for name in ("tensorflow", "jax", "torch"))
    methods = multiprocessing.get_all_start_methods()
    if not threaded and "fork" in methods:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def decode_images(paths, size: int, workers: int | None = None, progress: bool = True):
    """Decode in parallel, order preserved. -> (uint8 [K, S, S, 3] of the good ones, keep mask [N], skipped).

    ``skipped`` is {"missing": [names], "corrupt": [names]}. Should the worker processes die (out of memory, a
    ``__main__`` they cannot import), decoding goes on in this process from where they stopped, never hangs.
    """
    n = len(paths)
    workers = max(1, min(int(workers or os.cpu_count() or 1), n or 1))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    keep = np.zeros(n, dtype=bool)
    skipped = {"missing": [], "corrupt": []}
    jobs = [(str(p), size) for p in paths]
    count = done = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc="decoding", dynamic_ncols=True, smoothing=0.1)

    def consume(results, start):
        nonlocal count, done
        for i, (status, value) in enumerate(results, start):
            if status == "ok":
                images[count] = value
                keep[i] = True
                count += 1
            else:
                skipped[status].append(Path(paths[i]).name)
            done = i + 1
            if bar is not None:
                bar.update(1)

    try:
        if workers > 1 and n >= 64:
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            chunksize = max(1, min(256, n // (workers * 16)))
            executor = ProcessPoolExecutor(workers, mp_context=_pool_context())
            try:
                consume(executor.map(_decode, jobs, chunksize=chunksize), 0)
            except BrokenProcessPool as error:
                print(f"\nparallel decoding failed ({error}); going on in this process", file=sys.stderr, flush=True)
            finally:
                executor.shutdown(wait=True, cancel_futures=True)
        consume(map(_decode, jobs[done:]), done)  # everything (serial), or what a broken pool left
    finally:
        if bar is not None:
            bar.close()
    return images[:count], keep, skipped


# -- prepare -------------------------------------------------------------------------------------------------
def dataset_identity(root: Path) -> tuple:
    """(dataset_name, synthetic): "synth"/True where README.txt's first line says the synth command wrote it."""
    readme = root / "README.txt"
    try:
        with open(readme, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:
        first = ""
    if first.lower().startswith(SYNTH_MARK):
        return "synth", True
    return root.resolve().name, False


def prepare(data, out, size: int, filter_text=None, limit=None, workers=None, progress=True, quiet=False) -> Cache:
    """Read a CelebA-layout folder into the cache OUT; returns the cache (as load_cache would)."""
    if int(size) <= 0:
        raise UsageError(f"--size must be positive, got {size}")
    size = int(size)
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be positive, got {limit}")
    if workers is not None and workers <= 0:
        raise UsageError(f"--workers must be positive, got {workers}")
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder; name the cache file to write, e.g. {out / 'faces.npz'}")
    layout = detect_layout(data)
    started = time.monotonic()
    filenames, attributes, names = read_attributes(layout)
    partition = read_partition(layout, filenames)
    wanted = parse_filter(filter_text, names)
    rows = np.arange(len(filenames))
    for name, value in wanted.items():
        rows = rows[attributes[rows, names.index(name)] == value]
    if limit is not None:
        rows = rows[:limit]
    if len(rows) == 0:
        what = f" match --filter {filter_text}" if wanted else " are listed"
        raise UsageError(f"no images{what} in {layout.attribute_file}")
    chosen = [filenames[i] for i in rows]
    if not quiet:
        print(f"{layout.root} ({layout.name} layout): {len(chosen)} of {len(filenames)} images, "
              f"{size}x{size}", flush=True)
    images, keep, skipped = decode_images([layout.image_dir / f for f in chosen], size, workers, progress)
    rows = rows[keep]
    if len(rows) == 0:
        raise UsageError(f"none of the {len(chosen)} images in {layout.image_dir} could be read "
                         f"({len(skipped['missing'])} missing, {len(skipped['corrupt'])} corrupt)")
    dataset_name, synthetic = dataset_identity(layout.root)
    meta = {
        "source": str(layout.root.resolve()), "layout": layout.name, "size": size, "crop": list(CROP),
        "count": int(len(rows)), "skipped": {reason: len(items) for reason, items in skipped.items()},
        "filter": wanted or None, "limit": limit, "dataset_name": dataset_name, "synthetic": synthetic,
    }
    kept_names = [filenames[i] for i in rows]
    try:
        save_cache(out, images, attributes[rows], names, partition[rows], kept_names, meta)
    except OSError as error:
        raise UsageError(f"cannot write the cache {out}: {error}") from None
    seconds = time.monotonic() - started
    if not quiet:
        print(summary(meta, skipped, seconds, out), flush=True)
    return Cache(images=images, attributes=attributes[rows], attribute_names=list(names), partition=partition[rows],
                 filenames=_str_array(kept_names), meta=meta, path=out)


def summary(meta: dict, skipped: dict, seconds: float, out: Path) -> str:
    lines = [f"prepared {meta['count']} images in {seconds:.1f} s "
             f"({meta['count'] / max(seconds, 1e-9):,.0f} images/s)"]
    for reason, items in skipped.items():
        if items:
            shown = ", ".join(items[:SHOW_SKIPPED]) + (", ..." if len(items) > SHOW_SKIPPED else "")
            lines.append(f"skipped {len(items)} {reason}: {shown}")
    if not any(skipped.values()):
        lines.append("skipped none")
    size_mb = out.stat().st_size / 1e6 if out.exists() else 0.0
    lines.append(f"wrote {out} ({size_mb:.1f} MB)")
    return "\n".join(lines)


def default_cache_path(data, size: int, cache_dir=None) -> Path:
    root = Path(data).resolve()
    folder = Path(cache_dir) if cache_dir is not None else root.parent / ".facegen-cache"
    return folder / f"{root.name}-{int(size)}.npz"


def open_dataset(data, size: int, cache_dir=None, progress: bool = True, workers=None) -> Cache:
    """A cache file (its size must be SIZE), or a CelebA-layout folder, prepared once into CACHE_DIR and reused."""
    data = Path(data)
    if not data.exists():
        raise UsageError(f"--data: no such file or folder: {data}")
    if data.is_file():
        cache = load_cache(data)
        if cache.size != int(size):
            raise UsageError(f"--data: {data} holds {cache.size}px images but {size}px are wanted; re-run "
                             f"`python -m training prepare --data FOLDER --out FILE.npz --size {size}`")
        return cache
    layout = detect_layout(data)
    path = default_cache_path(data, size, cache_dir)
    if path.is_file():
        newest_source = max(p.stat().st_mtime for p in layout.source_files())
        if path.stat().st_mtime > newest_source:
            try:
                cache = load_cache(path)
            except UsageError:
                cache = None
            if (cache is not None and cache.size == int(size) and cache.meta.get("source") == str(data.resolve())
                    and not cache.meta.get("filter") and cache.meta.get("limit") is None):
                print(f"using the cache {path} ({len(cache)} images)", flush=True)
                return cache
    print(f"preparing {data} into the cache {path}", flush=True)
    prepare(data, path, size, workers=workers, progress=progress)
    return load_cache(path)


# -- the command ---------------------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--data", required=True, type=Path,
                        help="CelebA-layout folder (official: img_align_celeba/ + list_attr_celeba.txt; or Kaggle's "
                             "list_attr_celeba.csv layout)")
    parser.add_argument("--out", required=True, type=Path, help="the cache file to write (FILE.npz)")
    parser.add_argument("--size", type=int, default=64, choices=SIZES,
                        help="image side in pixels (default 64; 32 for smoke tests only)")
    parser.add_argument("--filter", metavar="NAME[=1|0],...",
                        help="keep only images with these attributes, e.g. Male=1,Eyeglasses (bare name means =1)")
    parser.add_argument("--limit", type=int, metavar="N", help="keep only the first N images (after --filter)")
    parser.add_argument("--workers", type=int, metavar="W", help="decoding processes (default: all CPU cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    prepare(args.data, args.out, args.size, filter_text=args.filter, limit=args.limit, workers=args.workers,
            progress=not args.no_progress)
    return 0
