"""``prepare``: read a face-data folder into one compact ``.npz`` cache, and the cache's only reader.

Layouts (detected automatically):
  official       DIR/img_align_celeba/*.jpg, DIR/list_attr_celeba.txt, DIR/list_eval_partition.txt (optional)
  kaggle-csv     DIR/list_attr_celeba.csv, DIR/list_eval_partition.csv (optional), images in
                 DIR/img_align_celeba/img_align_celeba/*.jpg (as Kaggle ships it) or DIR/img_align_celeba/*.jpg
  celebamask-hq  DIR/CelebA-HQ-img/N.jpg (square, any size), DIR/CelebAMask-HQ-attribute-anno.txt (CelebA's format),
                 optionally DIR/CelebA-HQ-to-CelebA-mapping.txt AND CelebA's DIR/list_eval_partition.txt: with both,
                 each HQ image takes its CelebA original's official (identity-disjoint) partition; without them, a
                 seeded 80/10/10 split (SPLIT_SEED), which is not identity-disjoint. meta["split"] says which.

Each aligned 178x218 CelebA image is cropped to the fixed face box CROP (scaled proportionally for other image
sizes) and resized to SIZE x SIZE; a CelebA-HQ image is already a face crop and is resized whole (crop None).
Downsizing is antialiased (JPEG draft scaling, then Lanczos). Missing or undecodable images are skipped and counted,
never fatal. The cache format is the contract in docs/ARCHITECTURE.md ("The data cache"). numpy + Pillow + tqdm
only: no TensorFlow here.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.usage_error import UsageError

CROP = (15, 40, 163, 188)  # left, top, right, bottom on the 178x218 aligned image
ALIGNED_SIZE = (178, 218)  # width, height
SIZES = (32, 64, 128)  # 32 for smoke tests only
CACHE_KEYS = ("images", "attributes", "attribute_names", "partition", "filenames", "meta")
SYNTH_MARK = "facegen synth"
SHOW_SKIPPED = 5  # how many skipped file names the report lists per reason
SPLIT_SEED = 0  # the seeded split (a layout without an official partition file): fixed, so every prepare agrees
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test
# The cache's partition codes (CelebA's list_eval_partition values), and their names, in code order.
TRAIN, VALIDATION, TEST = 0, 1, 2
PARTITION_NAMES = ("train", "validation", "test")

# The files that make each layout, for detect_layout and its error message.
OFFICIAL_ATTRIBUTES, OFFICIAL_PARTITION = "list_attr_celeba.txt", "list_eval_partition.txt"
CELEBA_IMAGES = "img_align_celeba"
KAGGLE_ATTRIBUTES, KAGGLE_PARTITION = "list_attr_celeba.csv", "list_eval_partition.csv"
HQ_ATTRIBUTES, HQ_IMAGES = "CelebAMask-HQ-attribute-anno.txt", "CelebA-HQ-img"
HQ_MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
LAYOUT_FILES = (
    f"official CelebA: {CELEBA_IMAGES}/ + {OFFICIAL_ATTRIBUTES} ({OFFICIAL_PARTITION} optional)",
    f"Kaggle CelebA: {KAGGLE_ATTRIBUTES} + {CELEBA_IMAGES}/ ({KAGGLE_PARTITION} optional)",
    f"CelebAMask-HQ: {HQ_IMAGES}/ + {HQ_ATTRIBUTES} ({HQ_MAPPING} + CelebA's {OFFICIAL_PARTITION} optional, "
    "for CelebA's official split)",
)


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
    """Where a face-data folder keeps its files."""

    root: Path
    name: str  # "official" | "kaggle-csv" | "celebamask-hq"
    attribute_file: Path
    partition_file: Path | None
    image_dir: Path
    mapping_file: Path | None = None  # celebamask-hq only: HQ index -> CelebA file name
    crop: tuple | None = CROP  # the face box on the 178x218 aligned image; None: the whole (square) image

    def source_files(self) -> list:
        return [p for p in (self.attribute_file, self.partition_file, self.mapping_file) if p is not None]


def detect_layout(data) -> Layout:
    """The layout of a face-data folder, or UsageError naming the files each layout needs."""
    root = Path(data)
    if not root.exists():
        raise UsageError(f"--data: no such folder: {root}")
    if not root.is_dir():
        raise UsageError(f"--data: {root} is not a folder (expected a CelebA or CelebAMask-HQ folder)")
    official, kaggle, hq = root / OFFICIAL_ATTRIBUTES, root / KAGGLE_ATTRIBUTES, root / HQ_ATTRIBUTES
    if official.is_file():
        name, attribute_file = "official", official
        partition_file = root / OFFICIAL_PARTITION
    elif kaggle.is_file():
        name, attribute_file = "kaggle-csv", kaggle
        partition_file = root / KAGGLE_PARTITION
    elif hq.is_file():
        image_dir = root / HQ_IMAGES
        if not image_dir.is_dir():
            raise UsageError(f"--data: {root} has {HQ_ATTRIBUTES} but no image folder {image_dir} "
                             "(the CelebAMask-HQ layout)")
        mapping, partition_file = root / HQ_MAPPING, root / OFFICIAL_PARTITION
        return Layout(root=root, name="celebamask-hq", attribute_file=hq,
                      partition_file=partition_file if partition_file.is_file() else None, image_dir=image_dir,
                      mapping_file=mapping if mapping.is_file() else None, crop=None)
    else:
        hint = _layout_hint(root)
        raise UsageError(f"--data: {root} is not in a known layout; it needs the files of one of: "
                         + "; ".join(LAYOUT_FILES) + (f". Did you mean --data {hint}?" if hint else ""))
    top, nested = root / CELEBA_IMAGES, root / CELEBA_IMAGES / CELEBA_IMAGES
    if nested.is_dir() and (name == "kaggle-csv" or not any(top.glob("*.jpg"))):
        image_dir = nested
    elif top.is_dir():
        image_dir = top
    else:
        raise UsageError(f"--data: {root} has {attribute_file.name} but no image folder {top}")
    return Layout(root=root, name=name, attribute_file=attribute_file,
                  partition_file=partition_file if partition_file.is_file() else None, image_dir=image_dir)


def _layout_hint(root: Path):
    """The parent (when ROOT is an image folder) or a sub-folder that holds a layout's attribute file, or None."""
    markers = (OFFICIAL_ATTRIBUTES, KAGGLE_ATTRIBUTES, HQ_ATTRIBUTES)
    if root.name in (HQ_IMAGES, CELEBA_IMAGES):  # the image folder itself (not listed: 30,000+ files)
        candidates = [root.parent]
    else:
        try:
            candidates = sorted(p for p in root.iterdir() if p.is_dir())[:20]
        except OSError:
            candidates = []
    for folder in candidates:
        if any((folder / marker).is_file() for marker in markers):
            return folder
    return None


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
    if layout.name in ("official", "celebamask-hq"):  # CelebA's text format, whitespace-separated
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


def _read_partition_file(path: Path, csv_format: bool) -> dict:
    """{image name: 0|1|2} from CelebA's list_eval_partition (.txt rows "000001.jpg 0", or Kaggle's .csv)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not csv_format:
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
    return lookup


def read_hq_mapping(path: Path) -> dict:
    """{HQ index: CelebA file name} from CelebA-HQ-to-CelebA-mapping.txt ("idx orig_idx orig_file" rows)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    mapping = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and not fields[0].isdigit()):  # blank, or the header line
            continue
        if len(fields) not in (2, 3) or not fields[0].isdigit() or not fields[1].isdigit():
            raise UsageError(f"{path}, line {number}: malformed mapping file: expected \"idx orig_idx orig_file\"")
        # orig_file is CelebA's name; orig_idx is its 0-based index (000001.jpg is 0) should the column be absent
        mapping[int(fields[0])] = fields[2] if len(fields) == 3 else f"{int(fields[1]) + 1:06d}.jpg"
    return mapping


def _hq_index(name: str):
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else None


def seeded_split(n: int, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """uint8 [n]: a seeded random split of n images in the given train/validation/test fractions (rounded)."""
    order = np.random.default_rng(seed).permutation(n)
    train = int(round(n * fractions[0]))
    validation = min(n - train, int(round(n * fractions[1])))
    partition = np.full(n, TRAIN, dtype=np.uint8)
    partition[order[train:train + validation]] = VALIDATION
    partition[order[train + validation:]] = TEST
    return partition


def read_split(layout: Layout, filenames):
    """(uint8 [N] partition: 0 train 1 validation 2 test, split description for meta, bool [N] unlisted).

    Computed over every image the attribute file lists, before --filter/--limit, so neither moves an image between
    partitions. official/kaggle-csv: the partition file (all train without one). celebamask-hq: with the mapping
    AND CelebA's list_eval_partition.txt, each HQ image takes its CelebA original's partition (identity-disjoint);
    without both, seeded_split. ``unlisted`` marks images the partition file (or the mapping) lacks: they go to
    train (an image of unknown identity must not land in validation/test), counted in meta and reported.
    """
    n = len(filenames)
    unlisted = np.zeros(n, dtype=bool)
    if layout.name != "celebamask-hq":
        if layout.partition_file is None:
            return np.full(n, TRAIN, dtype=np.uint8), {"kind": "none"}, unlisted
        lookup = _read_partition_file(layout.partition_file, csv_format=layout.name == "kaggle-csv")
        partition = np.array([lookup.get(name, TRAIN) for name in filenames], dtype=np.uint8)
        unlisted[:] = [name not in lookup for name in filenames]
        return partition, {"kind": "celeba-official", "file": layout.partition_file.name}, unlisted
    if layout.mapping_file is None or layout.partition_file is None:
        present = ((HQ_MAPPING, layout.mapping_file), (OFFICIAL_PARTITION, layout.partition_file))
        lacking = [name for name, path in present if path is None]
        return seeded_split(n), {"kind": "seeded", "seed": SPLIT_SEED, "fractions": list(SPLIT_FRACTIONS),
                                 "identity_disjoint": False, "lacking": lacking}, unlisted
    mapping = read_hq_mapping(layout.mapping_file)
    lookup = _read_partition_file(layout.partition_file, csv_format=False)
    partition = np.full(n, TRAIN, dtype=np.uint8)
    for i, name in enumerate(filenames):
        value = lookup.get(mapping.get(_hq_index(name)))
        if value is None:
            unlisted[i] = True
        else:
            partition[i] = value
    if n and unlisted.all():
        raise UsageError(f"none of the {n} images in {layout.attribute_file.name} can be placed through "
                         f"{layout.mapping_file} and {layout.partition_file} (do they belong to this data set?); "
                         "move both away for a seeded split")
    return partition, {"kind": "celeba-official", "file": layout.partition_file.name,
                       "mapping": layout.mapping_file.name, "identity_disjoint": True}, unlisted


def training_rows(partition) -> np.ndarray:
    """The rows a generator trains on: the training partition, or every row of a set without one."""
    rows = np.flatnonzero(np.asarray(partition) == TRAIN)
    return rows if len(rows) else np.arange(len(partition))


def held_out_rows(partition) -> tuple[np.ndarray, str | None]:
    """(rows, the partition's name) of the photos no generator trained on: the test partition, else validation;
    (empty, None) where the set has neither. Every held-out measurement and picture picks its photos here."""
    partition = np.asarray(partition)
    for code in (TEST, VALIDATION):
        rows = np.flatnonzero(partition == code)
        if len(rows):
            return rows, PARTITION_NAMES[code]
    return np.array([], dtype=np.int64), None


def read_partition(layout: Layout, filenames) -> np.ndarray:
    """uint8 [N]: 0 train, 1 validation, 2 test (see read_split)."""
    return read_split(layout, filenames)[0]


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


def square_box(width: int, height: int) -> tuple:
    """The centred square of an image of this size (the whole image when it is square)."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def load_face(path, size: int, crop: bool = True) -> np.ndarray:
    """One image file -> uint8 [size, size, 3]. Raises OSError etc. on a bad file.

    ``crop``: the CelebA face box (crop_box, for aligned 178x218 CelebA); otherwise the whole image (CelebA-HQ:
    already a square face crop), a non-square one centre-cropped to its largest square rather than squashed.
    Antialiased: JPEG draft mode lets the decoder scale down by 1/2, 1/4 or 1/8 in the DCT domain (a low-pass) while
    the box stays >= size, then Lanczos resizes the box to size x size.
    """
    from PIL import Image

    box_of = crop_box if crop else square_box
    with Image.open(path) as image:
        width, height = image.size
        left, top, right, bottom = box_of(width, height)
        scale = size / min(right - left, bottom - top)
        if scale < 1:
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image = image.convert("RGB")  # decodes (the whole file: truncation shows up here)
        box = box_of(*image.size) if image.size != (width, height) else (left, top, right, bottom)
        face = image.resize((size, size), Image.Resampling.LANCZOS, box=box)
        return np.asarray(face, dtype=np.uint8)


def _decode(job):
    """Pool worker: (path, size, crop) -> ("ok", array) | ("missing", None) | ("corrupt", message)."""
    path, size, crop = job
    try:
        return "ok", load_face(path, size, crop)
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


def decode_images(paths, size: int, workers: int | None = None, progress: bool = True, crop: bool = True):
    """Decode in parallel, order preserved. -> (uint8 [K, S, S, 3] of the good ones, keep mask [N], skipped).

    ``crop``: as load_face (the CelebA face box, or the whole square image).

    ``skipped`` is {"missing": [names], "corrupt": [names]}. Should the worker processes die (out of memory, a
    ``__main__`` they cannot import), decoding goes on in this process from where they stopped, never hangs.
    """
    n = len(paths)
    workers = max(1, min(int(workers or os.cpu_count() or 1), n or 1))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    keep = np.zeros(n, dtype=bool)
    skipped = {"missing": [], "corrupt": []}
    jobs = [(str(p), size, bool(crop)) for p in paths]
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
# Terms that travel with a model trained on the data (manifest["dataset"]["licence"], the card): CelebA and
# CelebA-HQ images may be used for non-commercial research only, whichever of their layouts they came in.
CELEBA_LICENCE = ("CelebA / CelebA-HQ terms: non-commercial research and educational use only; the images may not "
                  "be copied or distributed (models trained on them inherit these terms)")
SYNTH_LICENCE = "procedural faces rendered by `python -m training synth`: no third-party terms"


def dataset_licence(synthetic: bool) -> str:
    """The terms a data set's images come with: every layout prepare reads is CelebA's, except our own synth."""
    return SYNTH_LICENCE if synthetic else CELEBA_LICENCE


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


def unwritable_reason(folder) -> str | None:
    """Why a new file cannot be written in FOLDER (to be created if need be), or None when it can.

    A folder (or the nearest existing ancestor, for one yet to be made) whose mode has no write bit at all counts as
    read-only even for root, who could write there anyway: a shared data folder is made r-x to be left alone.
    Creates nothing: an existing folder is probed with a temporary file, deleted at once; a missing one is made by
    save_cache when the cache is written.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    mode = existing.stat().st_mode
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return f"{existing} is read-only ({stat.filemode(mode)})"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    if existing == folder:
        try:
            with tempfile.TemporaryFile(dir=folder, prefix=".facegen-write-test-"):
                pass
        except OSError as error:
            return f"cannot write in {folder} ({error.strerror or error})"
    return None


def _partition_counts(partition) -> dict:
    counts = np.bincount(np.asarray(partition, dtype=np.int64), minlength=len(PARTITION_NAMES))
    return {name: int(count) for name, count in zip(PARTITION_NAMES, counts)}


def _describe_split(split: dict) -> str:
    counts = " / ".join(f"{split['counts'][name]:,} {name}" for name in PARTITION_NAMES)
    if split["kind"] == "seeded":
        fractions = "/".join(f"{round(f * 100)}" for f in split["fractions"])
        return (f"split: seeded {fractions} (seed {split['seed']}; no {' or '.join(split['lacking'])} beside the "
                f"images, so not identity-disjoint): {counts}")
    if split["kind"] == "none":
        return f"split: none (no partition file): all {split['counts']['train']:,} in train"
    through = f" through {split['mapping']}" if split.get("mapping") else ""
    return f"split: CelebA's official {split['file']}{through}: {counts}"


def prepare(data, out, size: int, filter_text=None, limit=None, workers=None, progress=True, quiet=False) -> Cache:
    """Read a face-data folder (detect_layout) into the cache OUT; returns the cache (as load_cache would)."""
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
    problem = unwritable_reason(out.parent)  # before minutes of decoding, not after
    if problem:
        raise UsageError(f"--out: cannot write the cache {out}: {problem}")
    started = time.monotonic()
    filenames, attributes, names = read_attributes(layout)
    partition, split, unlisted = read_split(layout, filenames)
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
    images, keep, skipped = decode_images([layout.image_dir / f for f in chosen], size, workers, progress,
                                          crop=layout.crop is not None)
    rows = rows[keep]
    if len(rows) == 0:
        raise UsageError(f"none of the {len(chosen)} images in {layout.image_dir} could be read "
                         f"({len(skipped['missing'])} missing, {len(skipped['corrupt'])} corrupt)")
    dataset_name, synthetic = dataset_identity(layout.root)
    split["counts"] = _partition_counts(partition[rows])
    if split["kind"] == "celeba-official":
        split["unlisted"] = int(unlisted[rows].sum())
    meta = {
        "source": str(layout.root.resolve()), "layout": layout.name, "size": size,
        "crop": list(layout.crop) if layout.crop is not None else None,
        "count": int(len(rows)), "skipped": {reason: len(items) for reason, items in skipped.items()},
        "filter": wanted or None, "limit": limit, "dataset_name": dataset_name, "synthetic": synthetic,
        "split": split, "licence": dataset_licence(synthetic),
    }
    kept_names = [filenames[i] for i in rows]
    try:
        save_cache(out, images, attributes[rows], names, partition[rows], kept_names, meta)
    except OSError as error:
        raise UsageError(f"cannot write the cache {out}: {error}") from None
    seconds = time.monotonic() - started
    if not quiet:
        print(summary(meta, skipped, seconds, out), flush=True)
        print(_describe_split(split), flush=True)
        if split.get("unlisted"):
            lost = [filenames[i] for i in rows if unlisted[i]]
            shown = ", ".join(lost[:SHOW_SKIPPED]) + (", ..." if len(lost) > SHOW_SKIPPED else "")
            source = split["mapping"] + " / " + split["file"] if split.get("mapping") else split["file"]
            print(f"warning: {len(lost)} images are not in {source}, so they went to train: {shown}", flush=True)
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
    """CACHE_DIR/NAME-SIZE.npz; without CACHE_DIR, beside the data folder (DATA/../.facegen-cache/)."""
    root = Path(data).resolve()
    folder = Path(cache_dir) if cache_dir is not None else root.parent / ".facegen-cache"
    return folder / f"{root.name}-{int(size)}.npz"


def user_cache_dir() -> Path:
    """Where open_dataset falls back to when the data folder's parent is read-only: $FACEGEN_CACHE_DIR or
    ~/.cache/facegen (train's and evaluate's own default)."""
    return Path(os.environ.get("FACEGEN_CACHE_DIR") or Path.home() / ".cache" / "facegen")


def _fresh_cache(path: Path, data: Path, layout: Layout, size: int):
    if not path.is_file():
        return None
    newest_source = max(p.stat().st_mtime for p in layout.source_files())
    if path.stat().st_mtime <= newest_source:
        return None
    try:
        cache = load_cache(path)
    except UsageError:
        return None
    if (cache.size == int(size) and cache.meta.get("source") == str(data.resolve())
            and not cache.meta.get("filter") and cache.meta.get("limit") is None):
        return cache
    return None


def open_dataset(data, size: int, cache_dir=None, progress: bool = True, workers=None) -> Cache:
    """A cache file (its size must be SIZE), or a face-data folder, prepared once into CACHE_DIR and reused.

    Without CACHE_DIR the cache goes beside the data folder, or, where that is read-only (a shared data folder),
    into user_cache_dir(). A CACHE_DIR given but not writable is a UsageError (unless it already holds the cache).
    """
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
    candidates = [default_cache_path(data, size, cache_dir)]
    if cache_dir is None:
        candidates.append(default_cache_path(data, size, user_cache_dir()))
    for path in candidates:
        cache = _fresh_cache(path, data, layout, size)
        if cache is not None:
            print(f"using the cache {path} ({len(cache)} images)", flush=True)
            return cache
    problems = []
    for path in candidates:
        problem = unwritable_reason(path.parent)
        if problem is None:
            if problems:
                print(f"not writing beside the data ({problems[0]}); caching in {path.parent} instead", flush=True)
            print(f"preparing {data} into the cache {path}", flush=True)
            prepare(data, path, size, workers=workers, progress=progress)
            return load_cache(path)
        problems.append(problem)
    raise UsageError(f"no writable place for the cache of {data}: {'; '.join(problems)}. Pass a writable "
                     "--cache-dir (or set FACEGEN_CACHE_DIR), or prepare a cache file yourself with "
                     f"`python -m training prepare --data {data} --out FILE.npz --size {size}` and pass "
                     "--data FILE.npz")


# -- the command ---------------------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--data", required=True, type=Path,
                        help="face-data folder, layout detected: official CelebA (img_align_celeba/ + "
                             "list_attr_celeba.txt), Kaggle's list_attr_celeba.csv, or CelebAMask-HQ (CelebA-HQ-img/ + "
                             "CelebAMask-HQ-attribute-anno.txt; with CelebA-HQ-to-CelebA-mapping.txt and "
                             "list_eval_partition.txt beside them it takes CelebA's official split, else a seeded one)")
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
