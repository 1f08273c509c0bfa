"""training/data.py: `prepare` on both CelebA layouts, skipping bad files, filters, the crop, the cache contract."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import data
from training.__main__ import main
from training.errors import UsageError

NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
         "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
         "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
         "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
         "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
MALE, EYEGLASSES = NAMES.index("Male"), NAMES.index("Eyeglasses")
N = 20


def colour(i):
    return (37 * i % 256, 91 * i % 256, 53 * i % 256)


def attribute_rows(n=N):
    """Image i: Male if i is even, Eyeglasses if i % 3 == 0, other attributes a fixed pattern; values -1/1."""
    rows = np.where((np.arange(n)[:, None] + np.arange(40)[None, :]) % 4 == 0, 1, -1)
    rows[:, MALE] = np.where(np.arange(n) % 2 == 0, 1, -1)
    rows[:, EYEGLASSES] = np.where(np.arange(n) % 3 == 0, 1, -1)
    return rows


def make_celeba(root: Path, layout="official", n=N, nested=True, partition=True, skip_images=(), size=(178, 218)):
    """A CelebA-layout folder of n solid-colour JPEGs named 000001.jpg... with attribute (and partition) files."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    image_dir = root / "img_align_celeba"
    if layout == "kaggle" and nested:
        image_dir = image_dir / "img_align_celeba"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        if i not in skip_images:
            Image.new("RGB", size, colour(i)).save(image_dir / name, quality=95)
    rows = attribute_rows(n)
    parts = [0 if i < n - 4 else (1 if i < n - 2 else 2) for i in range(n)]
    if layout == "official":
        lines = [str(n), " ".join(NAMES)]
        lines += [f"{name}  " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, rows)]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        if partition:
            (root / "list_eval_partition.txt").write_text("".join(f"{m} {p}\n" for m, p in zip(names, parts)))
    else:
        lines = ["image_id," + ",".join(NAMES)] + [f"{m}," + ",".join(str(v) for v in row) for m, row in zip(names, rows)]
        (root / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
        if partition:
            (root / "list_eval_partition.csv").write_text(
                "image_id,partition\n" + "".join(f"{m},{p}\n" for m, p in zip(names, parts)))
    return image_dir, names


def prepare(root, out, size=32, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return data.prepare(root, out, size, **kwargs)


# -- layouts -------------------------------------------------------------------------------------------------
def test_official_layout_round_trip(tmp_path, capsys):
    make_celeba(tmp_path / "celeba")
    out = tmp_path / "cache.npz"
    prepare(tmp_path / "celeba", out, size=32)
    assert "prepared 20 images" in capsys.readouterr().out
    cache = data.load_cache(out)
    assert cache.images.shape == (N, 32, 32, 3) and cache.images.dtype == np.uint8
    assert cache.attributes.shape == (N, 40) and cache.attributes.dtype == np.uint8
    assert cache.attribute_names == NAMES
    np.testing.assert_array_equal(cache.attributes, (attribute_rows() + 1) // 2)
    assert list(cache.partition) == [0] * 16 + [1, 1, 2, 2] and cache.partition.dtype == np.uint8
    assert list(cache.filenames) == [f"{i + 1:06d}.jpg" for i in range(N)]
    for i in (0, 7, 19):  # order preserved: each face is its image's colour
        assert np.abs(cache.images[i].reshape(-1, 3).mean(0) - colour(i)).max() < 4
    meta = cache.meta
    assert meta["layout"] == "official" and meta["size"] == 32 and meta["count"] == N
    assert meta["crop"] == [15, 40, 163, 188] and meta["skipped"] == {"missing": 0, "corrupt": 0}
    assert meta["source"] == str((tmp_path / "celeba").resolve())
    assert meta["dataset_name"] == "celeba" and meta["synthetic"] is False
    assert meta["filter"] is None and meta["limit"] is None
    assert not list(tmp_path.glob("*.tmp*")), "the temporary file is renamed away"
    with np.load(out, allow_pickle=False) as npz:  # the contract: plain arrays, no pickles
        assert sorted(npz.files) == sorted(data.CACHE_KEYS)
        assert npz["attribute_names"].dtype.kind == "U" and npz["filenames"].dtype.kind == "U"


def test_kaggle_csv_layout_nested_and_no_partition(tmp_path):
    make_celeba(tmp_path / "kaggle", layout="kaggle", partition=False)
    cache = prepare(tmp_path / "kaggle", tmp_path / "k.npz")
    assert cache.meta["layout"] == "kaggle-csv" and cache.meta["count"] == N
    assert not cache.partition.any()
    loaded = data.load_cache(tmp_path / "k.npz")
    np.testing.assert_array_equal(loaded.attributes, (attribute_rows() + 1) // 2)
    np.testing.assert_array_equal(loaded.images, cache.images)


def test_kaggle_csv_flat_folder_with_partition(tmp_path):
    make_celeba(tmp_path / "flat", layout="kaggle", nested=False, n=8)
    cache = prepare(tmp_path / "flat", tmp_path / "f.npz")
    assert cache.meta["count"] == 8 and list(cache.partition) == [0] * 4 + [1, 1, 2, 2]


def test_synth_readme_names_the_data_set(tmp_path):
    make_celeba(tmp_path / "faces", n=4)
    (tmp_path / "faces" / "README.txt").write_text("facegen synth v1: procedural faces\n")
    cache = prepare(tmp_path / "faces", tmp_path / "s.npz")
    assert cache.meta["dataset_name"] == "synth" and cache.meta["synthetic"] is True


# -- bad files -----------------------------------------------------------------------------------------------
def test_corrupt_and_missing_images_are_skipped_and_counted(tmp_path, capsys):
    image_dir, names = make_celeba(tmp_path / "celeba", skip_images=(3,))
    jpeg = (image_dir / names[5]).read_bytes()
    (image_dir / names[5]).write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    (image_dir / names[6]).write_bytes(b"not a jpeg at all")
    cache = prepare(tmp_path / "celeba", tmp_path / "c.npz")
    assert cache.meta["skipped"] == {"missing": 1, "corrupt": 2} and cache.meta["count"] == N - 3
    out = capsys.readouterr().out
    assert "skipped 1 missing: 000004.jpg" in out and "000006.jpg" in out and "000007.jpg" in out
    kept = [i for i in range(N) if i not in (3, 5, 6)]
    assert list(data.load_cache(tmp_path / "c.npz").filenames) == [names[i] for i in kept]
    np.testing.assert_array_equal(cache.attributes, ((attribute_rows() + 1) // 2)[kept])
    assert np.abs(cache.images[3].reshape(-1, 3).mean(0) - colour(4)).max() < 4  # rows stay aligned


def test_nothing_readable_is_an_error(tmp_path):
    make_celeba(tmp_path / "celeba", n=3, skip_images=(0, 1, 2))
    with pytest.raises(UsageError, match="none of the 3 images"):
        prepare(tmp_path / "celeba", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_malformed_attribute_file_names_file_and_line(tmp_path):
    make_celeba(tmp_path / "celeba", n=5)
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 3)[0]  # drop values from image 3 (line 5)
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match=r"list_attr_celeba\.txt, line 5"):
        prepare(tmp_path / "celeba", tmp_path / "x.npz")
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:1] + ["garbage"] + lines[2:]))
    with pytest.raises(UsageError, match=r"list_attr_celeba\.txt"):
        prepare(tmp_path / "celeba", tmp_path / "x.npz")


def test_missing_folder_and_non_celeba_folder(tmp_path):
    with pytest.raises(UsageError, match=str(tmp_path / "nowhere")):
        prepare(tmp_path / "nowhere", tmp_path / "x.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as info:
        prepare(tmp_path / "empty", tmp_path / "x.npz")
    assert "list_attr_celeba.txt" in str(info.value) and "list_attr_celeba.csv" in str(info.value)


# -- filter and limit ----------------------------------------------------------------------------------------
def test_filter_and_limit(tmp_path):
    make_celeba(tmp_path / "celeba")
    cache = prepare(tmp_path / "celeba", tmp_path / "m.npz", filter_text="Male=1,Eyeglasses")
    expected = [i for i in range(N) if i % 2 == 0 and i % 3 == 0]  # 0, 6, 12, 18
    assert list(cache.filenames) == [f"{i + 1:06d}.jpg" for i in expected]
    assert cache.attributes[:, MALE].all() and cache.attributes[:, EYEGLASSES].all()
    assert cache.meta["filter"] == {"Male": 1, "Eyeglasses": 1}
    cache = prepare(tmp_path / "celeba", tmp_path / "l.npz", filter_text="male=0", limit=3)
    assert list(cache.filenames) == ["000002.jpg", "000004.jpg", "000006.jpg"] and cache.meta["limit"] == 3
    assert not cache.attributes[:, MALE].any()


def test_unknown_filter_attribute_lists_the_allowed_names(tmp_path):
    make_celeba(tmp_path / "celeba", n=2)
    with pytest.raises(UsageError, match="unknown attribute 'Beard'.*No_Beard"):
        prepare(tmp_path / "celeba", tmp_path / "x.npz", filter_text="Male,Beard=1")
    with pytest.raises(UsageError, match="1 or 0"):
        prepare(tmp_path / "celeba", tmp_path / "x.npz", filter_text="Male=yes")


# -- the crop ------------------------------------------------------------------------------------------------
def marked_face(scale=1):
    """Green inside the crop box, red outside, a white square at the box's top-left, blue at its centre."""
    image = Image.new("RGB", (178 * scale, 218 * scale), (255, 0, 0))
    s = scale
    image.paste((0, 255, 0), (15 * s, 40 * s, 163 * s, 188 * s))
    image.paste((255, 255, 255), (15 * s, 40 * s, 52 * s, 77 * s))  # the box's top-left quarter of a half
    image.paste((0, 0, 255), (79 * s, 104 * s, 99 * s, 124 * s))  # centred in the box
    return image


@pytest.mark.parametrize("size", [32, 64, 128])
def test_crop_box_lands_where_expected(tmp_path, size):
    path = tmp_path / "face.png"
    marked_face().save(path)
    face = data.load_face(path, size).astype(int)
    assert face.shape == (size, size, 3)
    q = size // 4  # the white square covers [0, size/4) of the output
    np.testing.assert_allclose(face[q // 2, q // 2], (255, 255, 255), atol=10)
    np.testing.assert_allclose(face[size // 2, size // 2], (0, 0, 255), atol=10)
    np.testing.assert_allclose(face[size - 3, size - 3], (0, 255, 0), atol=10)  # bottom-right: inside, green
    np.testing.assert_allclose(face[3, size - 3], (0, 255, 0), atol=10)
    assert face[2:-2, 2:-2, 0][face[2:-2, 2:-2, 1] < 128].max() < 40, "no red from outside the box"


def test_crop_scales_with_the_image_and_jpeg_draft_keeps_quality(tmp_path):
    small, big = tmp_path / "small.png", tmp_path / "big.jpg"
    marked_face().save(small)
    marked_face(scale=2).save(big, quality=95)
    a, b = data.load_face(small, 64).astype(int), data.load_face(big, 64).astype(int)
    assert np.abs(a - b).mean() < 6  # a 356x436 image gives the same face (through the JPEG draft path)
    textured = tmp_path / "textured.jpg"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (28, 23, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((178, 218), Image.Resampling.BICUBIC).save(textured, quality=95)
    with Image.open(textured) as full:  # reference: no draft, full decode
        reference = np.asarray(full.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS,
                                                          box=(15, 40, 163, 188))).astype(int)
    assert np.abs(data.load_face(textured, 64).astype(int) - reference).mean() < 4


# -- parallel decoding ---------------------------------------------------------------------------------------
def test_parallel_decoding_preserves_order(tmp_path):
    image_dir, names = make_celeba(tmp_path / "many", n=70, skip_images=(10,))
    serial = prepare(tmp_path / "many", tmp_path / "s.npz", workers=1)
    parallel = prepare(tmp_path / "many", tmp_path / "p.npz", workers=2)
    np.testing.assert_array_equal(serial.images, parallel.images)
    assert list(parallel.filenames) == list(serial.filenames) and parallel.meta["skipped"]["missing"] == 1


# -- the cache -----------------------------------------------------------------------------------------------
def test_load_cache_maps_the_images(tmp_path):
    make_celeba(tmp_path / "celeba", n=5)
    prepare(tmp_path / "celeba", tmp_path / "c.npz")
    mapped, read = data.load_cache(tmp_path / "c.npz"), data.load_cache(tmp_path / "c.npz", mmap=False)
    assert isinstance(mapped.images, np.memmap) and not isinstance(read.images, np.memmap)
    np.testing.assert_array_equal(mapped.images, read.images)
    with np.load(tmp_path / "c.npz") as npz:
        np.testing.assert_array_equal(mapped.images, npz["images"])
    mapped.images[0] = 0  # copy-on-write: the file is untouched
    np.testing.assert_array_equal(data.load_cache(tmp_path / "c.npz").images, read.images)
    np.savez_compressed(tmp_path / "z.npz", **{k: np.load(tmp_path / "c.npz")[k] for k in data.CACHE_KEYS})
    np.testing.assert_array_equal(data.load_cache(tmp_path / "z.npz").images, read.images)  # falls back to reading


def test_load_cache_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(UsageError, match="no such cache file"):
        data.load_cache(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UsageError, match="not a data cache"):
        data.load_cache(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", images=np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(UsageError, match="lacks attributes"):
        data.load_cache(tmp_path / "other.npz")


def test_open_dataset_on_a_folder_creates_then_reuses_the_cache(tmp_path, capsys):
    make_celeba(tmp_path / "celeba", n=6)
    cache = data.open_dataset(tmp_path / "celeba", 32, tmp_path / "caches", progress=False, workers=1)
    path = tmp_path / "caches" / "celeba-32.npz"
    assert path.is_file() and cache.images.shape == (6, 32, 32, 3) and "preparing" in capsys.readouterr().out
    stamp = path.stat().st_mtime_ns
    again = data.open_dataset(tmp_path / "celeba", 32, tmp_path / "caches", progress=False, workers=1)
    assert path.stat().st_mtime_ns == stamp and "using the cache" in capsys.readouterr().out
    np.testing.assert_array_equal(again.images, cache.images)
    assert set(["images", "attributes", "attribute_names", "partition", "meta"]) <= set(vars(again))
    # a newer attribute file makes the cache stale
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    os.utime(attr, ns=(stamp + 10**9, stamp + 10**9))
    data.open_dataset(tmp_path / "celeba", 32, tmp_path / "caches", progress=False, workers=1)
    assert "preparing" in capsys.readouterr().out
    # default cache folder: beside the data folder
    data.open_dataset(tmp_path / "celeba", 64, progress=False, workers=1)
    assert (tmp_path / ".facegen-cache" / "celeba-64.npz").is_file()


def test_open_dataset_on_a_cache_checks_the_size(tmp_path):
    make_celeba(tmp_path / "celeba", n=3)
    prepare(tmp_path / "celeba", tmp_path / "c.npz", size=32)
    assert data.open_dataset(tmp_path / "c.npz", 32).images.shape[1] == 32
    with pytest.raises(UsageError, match="--size 64"):
        data.open_dataset(tmp_path / "c.npz", 64)
    with pytest.raises(UsageError, match="no such file or folder"):
        data.open_dataset(tmp_path / "gone", 32)


# -- the command line ----------------------------------------------------------------------------------------
def test_cli_prepare(tmp_path, capsys):
    make_celeba(tmp_path / "celeba", n=6)
    out = tmp_path / "cli.npz"
    assert main(["prepare", "--data", str(tmp_path / "celeba"), "--out", str(out), "--size", "32",
                 "--filter", "Male", "--limit", "2", "--workers", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "prepared 2 images" in text and "images/s" in text and str(out) in text and "MB" in text
    cache = data.load_cache(out)
    assert len(cache) == 2 and json.loads(json.dumps(cache.meta))["filter"] == {"Male": 1}


@pytest.mark.parametrize("extra, message", [
    (["--data", "{tmp}/nowhere"], "nowhere"),
    (["--data", "{tmp}/celeba", "--filter", "Moustache"], "unknown attribute"),
    (["--data", "{tmp}/celeba", "--limit", "0"], "--limit"),
    (["--data", "{tmp}/celeba", "--out", "{tmp}"], "is a folder"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, message):
    make_celeba(tmp_path / "celeba", n=2)
    argv = ["prepare", "--out", str(tmp_path / "x.npz"), "--size", "32", "--no-progress"]
    argv += [arg.format(tmp=tmp_path) for arg in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--filter" in text and "--size" in text and "--workers" in text


PARENT = os.getpid()
_real_decode = data._decode


def _dies_in_workers(job):
    if os.getpid() != PARENT:
        os._exit(3)  # a worker killed (out of memory, say): the pool breaks
    return _real_decode(job)


def test_a_broken_pool_falls_back_to_this_process(tmp_path, monkeypatch, capsys):
    make_celeba(tmp_path / "many", n=64)
    monkeypatch.setattr(data, "_decode", _dies_in_workers)
    monkeypatch.setattr(data, "_pool_context", lambda: __import__("multiprocessing").get_context("fork"))
    cache = prepare(tmp_path / "many", tmp_path / "b.npz", workers=2)
    assert cache.meta["count"] == 64 and "going on in this process" in capsys.readouterr().err
    assert list(cache.filenames) == [f"{i + 1:06d}.jpg" for i in range(64)]
