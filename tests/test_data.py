"""training/data.py: `prepare` on the CelebA layouts and CelebAMask-HQ, skipping bad files, filters, the crop, the
split, antialiasing, the cache contract and where it may be written."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.celebahq_fixture import (HQ_N, HQ_NAMES, celeba_name, hq_attribute_rows, hq_colour, hq_partition,
                                    make_celebahq)
from training import data
from training.__main__ import main
from training.usage_error import UsageError

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
    assert meta["split"] == {"kind": "celeba-official", "file": "list_eval_partition.txt", "unlisted": 0,
                             "counts": {"train": 16, "validation": 2, "test": 2}}
    assert not list(tmp_path.glob("*.tmp*")), "the temporary file is renamed away"
    with np.load(out, allow_pickle=False) as npz:  # the contract: plain arrays, no pickles
        assert sorted(npz.files) == sorted(data.CACHE_KEYS)
        assert npz["attribute_names"].dtype.kind == "U" and npz["filenames"].dtype.kind == "U"


def test_kaggle_csv_layout_nested_and_no_partition(tmp_path):
    make_celeba(tmp_path / "kaggle", layout="kaggle", partition=False)
    cache = prepare(tmp_path / "kaggle", tmp_path / "k.npz")
    assert cache.meta["layout"] == "kaggle-csv" and cache.meta["count"] == N
    assert not cache.partition.any()
    assert cache.meta["split"] == {"kind": "none", "counts": {"train": N, "validation": 0, "test": 0}}
    loaded = data.load_cache(tmp_path / "k.npz")
    np.testing.assert_array_equal(loaded.attributes, (attribute_rows() + 1) // 2)
    np.testing.assert_array_equal(loaded.images, cache.images)


def test_kaggle_csv_flat_folder_with_partition(tmp_path):
    make_celeba(tmp_path / "flat", layout="kaggle", nested=False, n=8)
    cache = prepare(tmp_path / "flat", tmp_path / "f.npz")
    assert cache.meta["count"] == 8 and list(cache.partition) == [0] * 4 + [1, 1, 2, 2]
    assert cache.meta["split"]["kind"] == "celeba-official" and cache.meta["split"]["file"] == "list_eval_partition.csv"


def test_synth_readme_names_the_data_set(tmp_path):
    make_celeba(tmp_path / "faces", n=4)
    (tmp_path / "faces" / "README.txt").write_text("facegen synth v1: procedural faces\n")
    cache = prepare(tmp_path / "faces", tmp_path / "s.npz")
    assert cache.meta["dataset_name"] == "synth" and cache.meta["synthetic"] is True
    assert cache.meta["licence"] == data.SYNTH_LICENCE


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


def test_neither_layout_names_each_layouts_files(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "images-only" / "CelebA-HQ-img").mkdir(parents=True)  # images but no attribute file: no layout
    for folder in ("empty", "images-only"):
        with pytest.raises(UsageError) as info:
            data.detect_layout(tmp_path / folder)
        message = str(info.value)
        for needed in ("img_align_celeba/", "list_attr_celeba.txt", "list_attr_celeba.csv", "CelebA-HQ-img/",
                       "CelebAMask-HQ-attribute-anno.txt"):
            assert needed in message, (needed, message)
    assert main(["prepare", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    assert "CelebAMask-HQ-attribute-anno.txt" in capsys.readouterr().err
    make_celebahq(tmp_path / "hq", n=2)  # --data given the image folder itself: the parent is suggested
    with pytest.raises(UsageError, match=f"Did you mean --data {tmp_path / 'hq'}"):
        data.detect_layout(tmp_path / "hq" / "CelebA-HQ-img")


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


# -- CelebAMask-HQ ------------------------------------------------------------------------------------------------
def test_celebahq_layout_is_detected(tmp_path):
    image_dir, _ = make_celebahq(tmp_path / "hq", n=3)
    layout = data.detect_layout(tmp_path / "hq")
    assert layout.name == "celebamask-hq" and layout.image_dir == image_dir and layout.crop is None
    assert layout.attribute_file == tmp_path / "hq" / "CelebAMask-HQ-attribute-anno.txt"
    assert layout.mapping_file == tmp_path / "hq" / "CelebA-HQ-to-CelebA-mapping.txt"
    assert layout.partition_file == tmp_path / "hq" / "list_eval_partition.txt"
    assert set(layout.source_files()) == {layout.attribute_file, layout.mapping_file, layout.partition_file}
    make_celebahq(tmp_path / "bare", n=3, mapping=False, partition=False)
    bare = data.detect_layout(tmp_path / "bare")
    assert bare.name == "celebamask-hq" and bare.mapping_file is None and bare.partition_file is None
    make_celeba(tmp_path / "celeba", n=2)
    assert data.detect_layout(tmp_path / "celeba").name == "official"
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "CelebAMask-HQ-attribute-anno.txt").write_text("0\nMale\n")
    with pytest.raises(UsageError, match="no image folder .*CelebA-HQ-img"):
        data.detect_layout(tmp_path / "no-images")


def test_celebahq_takes_celebas_official_split_through_the_mapping(tmp_path, capsys):
    make_celebahq(tmp_path / "celeba-hq")
    cache = prepare(tmp_path / "celeba-hq", tmp_path / "hq.npz", size=32)
    assert list(cache.filenames) == [f"{i}.jpg" for i in range(HQ_N)]
    assert cache.attribute_names == HQ_NAMES
    np.testing.assert_array_equal(cache.attributes, (hq_attribute_rows() + 1) // 2)
    partition = dict(zip(cache.filenames, cache.partition))
    assert partition["0.jpg"] == 0 and partition["3.jpg"] == 1 and partition["4.jpg"] == 2 and partition["18.jpg"] == 1
    assert list(cache.partition) == [hq_partition(i) for i in range(HQ_N)]
    # the fixture's decoys: looking up HQ i's own number instead of its CelebA original gives another split
    decoys = data._read_partition_file(tmp_path / "celeba-hq" / "list_eval_partition.txt", csv_format=False)
    assert [decoys.get(f"{i + 1:06d}.jpg") for i in range(HQ_N)] != list(cache.partition)
    assert decoys[celeba_name(3)] == 1
    for i in (0, 7, 19):  # order preserved: each face is its image's colour
        assert np.abs(cache.images[i].reshape(-1, 3).mean(0) - hq_colour(i)).max() < 4
    meta = data.load_cache(tmp_path / "hq.npz").meta
    assert meta["layout"] == "celebamask-hq" and meta["crop"] is None and meta["count"] == HQ_N
    assert meta["split"] == {"kind": "celeba-official", "file": "list_eval_partition.txt",
                             "mapping": "CelebA-HQ-to-CelebA-mapping.txt", "identity_disjoint": True, "unlisted": 0,
                             "counts": {"train": 12, "validation": 4, "test": 4}}
    assert meta["dataset_name"] == "celeba-hq" and meta["synthetic"] is False
    assert meta["licence"] == data.CELEBA_LICENCE and "non-commercial research" in meta["licence"]
    out = capsys.readouterr().out
    assert "celebamask-hq layout" in out and "12 train / 4 validation / 4 test" in out and "warning" not in out


def test_celebahq_image_missing_from_the_mapping_or_partition_goes_to_train(tmp_path, capsys):
    root = tmp_path / "hq"
    make_celebahq(root)
    mapping = root / "CelebA-HQ-to-CelebA-mapping.txt"
    lines = mapping.read_text().splitlines()
    mapping.write_text("\n".join(line for line in lines if line.split()[0] != "3") + "\n")  # 3.jpg unmapped
    partition = root / "list_eval_partition.txt"
    partition.write_text("".join(line + "\n" for line in partition.read_text().splitlines()
                                 if not line.startswith(celeba_name(4))))  # 4.jpg's original not listed
    cache = prepare(root, tmp_path / "hq.npz")
    assert cache.partition[3] == 0 and cache.partition[4] == 0, "unknown identity: train, never validation/test"
    assert cache.partition[8] == 1 and cache.partition[9] == 2, "the others keep theirs"
    assert cache.meta["split"]["unlisted"] == 2 and cache.meta["split"]["counts"] == {"train": 14, "validation": 3,
                                                                                       "test": 3}
    assert "warning: 2 images are not in CelebA-HQ-to-CelebA-mapping.txt / list_eval_partition.txt, so they went " \
           "to train: 3.jpg, 4.jpg" in capsys.readouterr().out
    # a mapping that places none of the images is the wrong file, not a data set of unknowns
    rows = "".join(f"{i} {900000 + i} {900001 + i}.jpg\n" for i in range(HQ_N))
    mapping.write_text("idx orig_idx orig_file\n" + rows)
    with pytest.raises(UsageError, match="none of the 20 images .* move both away for a seeded split"):
        prepare(root, tmp_path / "x.npz")
    mapping.write_text("idx orig_idx orig_file\n0 zero 1.jpg\n")
    with pytest.raises(UsageError, match=r"CelebA-HQ-to-CelebA-mapping\.txt, line 2"):
        prepare(root, tmp_path / "x.npz")


@pytest.mark.parametrize("mapping, partition", [(False, False), (False, True), (True, False)])
def test_celebahq_without_the_mapping_files_takes_a_seeded_split(tmp_path, capsys, mapping, partition):
    make_celebahq(tmp_path / "hq", mapping=mapping, partition=partition)
    first = prepare(tmp_path / "hq", tmp_path / "a.npz")
    second = prepare(tmp_path / "hq", tmp_path / "b.npz")
    np.testing.assert_array_equal(first.partition, second.partition)  # deterministic
    assert list(np.bincount(first.partition, minlength=3)) == [16, 2, 2]  # 80/10/10
    assert list(first.partition) != [hq_partition(i) for i in range(HQ_N)]
    split = data.load_cache(tmp_path / "a.npz").meta["split"]
    lacking = [name for name, present in (("CelebA-HQ-to-CelebA-mapping.txt", mapping),
                                          ("list_eval_partition.txt", partition)) if not present]
    assert split == {"kind": "seeded", "seed": data.SPLIT_SEED, "fractions": [0.8, 0.1, 0.1],
                     "identity_disjoint": False, "lacking": lacking,
                     "counts": {"train": 16, "validation": 2, "test": 2}}
    assert "split: seeded 80/10/10 (seed 0; no " in capsys.readouterr().out
    # drawn over the whole attribute file: --filter and --limit never move an image to another partition
    subset = prepare(tmp_path / "hq", tmp_path / "c.npz", filter_text="Male", limit=6)
    assert list(subset.filenames) == ["0.jpg", "2.jpg", "4.jpg", "6.jpg", "8.jpg", "10.jpg"]
    np.testing.assert_array_equal(subset.partition, first.partition[[0, 2, 4, 6, 8, 10]])


def bordered(side, border, inside=(0, 200, 0), edge=(230, 0, 0)):
    """A square: an `edge`-coloured border `border` px wide, `inside` within, a blue square at the centre."""
    image = Image.new("RGB", (side, side), edge)
    image.paste(inside, (border, border, side - border, side - border))
    c = side // 2
    image.paste((0, 0, 255), (c - side // 8, c - side // 8, c + side // 8, c + side // 8))
    return image


def test_celebahq_images_are_resized_whole_not_cropped_the_celeba_way(tmp_path):
    # a 16px border at 256px: the CelebA box (left 8%, top 18%, right 8%, bottom 14% cut off) would remove it all
    make_celebahq(tmp_path / "hq", n=2, image=lambda i: bordered(256, 16))
    cache = prepare(tmp_path / "hq", tmp_path / "hq.npz", size=64)
    assert cache.meta["crop"] is None
    face = cache.images[0].astype(int)  # 16px at 256 -> 4px at 64
    for y, x in ((1, 32), (32, 1), (62, 32), (32, 62), (1, 1), (62, 62)):
        np.testing.assert_allclose(face[y, x], (230, 0, 0), atol=25, err_msg=f"border at {(y, x)}")
    np.testing.assert_allclose(face[32, 32], (0, 0, 255), atol=25)  # the centre stays the centre
    np.testing.assert_allclose(face[12, 12], (0, 200, 0), atol=25)
    assert (face[:, :, 0] > 150).sum(axis=0)[32] == 8, "4px of border top and bottom: not stretched, not cut"


def test_celebahq_non_square_image_is_centre_cropped(tmp_path):
    def picture(i):
        if i != 1:
            return Image.new("RGB", (128, 128), hq_colour(i))
        image = Image.new("RGB", (300, 200), (230, 0, 0))  # red bands left and right of a 200x200 square
        image.paste((0, 200, 0), (50, 0, 250, 200))
        image.paste((255, 255, 255), (50, 0, 250, 40))  # the square's top fifth is white
        return image

    make_celebahq(tmp_path / "hq", n=3, image=picture)
    cache = prepare(tmp_path / "hq", tmp_path / "hq.npz", size=64)
    assert cache.meta["count"] == 3 and cache.meta["skipped"]["corrupt"] == 0
    face = cache.images[1].astype(int)
    red = (face[:, :, 0] > 120) & (face[:, :, 1] < 100)
    assert not red.any(), "the bands outside the centred square are cut off, not squeezed in"
    np.testing.assert_allclose(face[5, 32], (255, 255, 255), atol=20)  # white rows 0..12.8 of 64: not squashed
    np.testing.assert_allclose(face[20, 32], (0, 200, 0), atol=20)
    np.testing.assert_allclose(face[60, 3], (0, 200, 0), atol=20)


def checkerboard(side):
    return Image.fromarray(((np.indices((side, side)).sum(0) % 2) * 255).astype(np.uint8)).convert("RGB")


def test_downsizing_is_antialiased(tmp_path):
    """A 1px checkerboard downsized 4x (or 3.75x) is uniform grey; point sampling would keep black or white."""
    board = checkerboard(256)
    aliased = np.asarray(board.resize((64, 64), Image.Resampling.NEAREST)).astype(float)
    assert aliased.std() > 100 or abs(aliased.mean() - 127.5) > 100, "what the test guards against"
    for side in (256, 240):  # 240 -> 64: no JPEG draft step reaches 64 exactly, Lanczos does the rest
        checkerboard(side).save(tmp_path / f"board{side}.png")
        face = data.load_face(tmp_path / f"board{side}.png", 64, crop=False).astype(float)
        assert abs(face.mean() - 127.5) < 6 and face.std() < 6, (side, face.mean(), face.std())
    make_celebahq(tmp_path / "hq", n=2, image=lambda i: checkerboard(256))  # through prepare and JPEG draft mode
    with Image.open(tmp_path / "hq" / "CelebA-HQ-img" / "0.jpg") as saved:
        assert np.asarray(saved.convert("L")).astype(float).std() > 60, "the JPEG still holds the checkerboard"
    face = prepare(tmp_path / "hq", tmp_path / "hq.npz", size=64).images[0].astype(float)
    assert abs(face.mean() - 127.5) < 10 and face.std() < 8, (face.mean(), face.std())


def test_celebahq_1024px_images(tmp_path):
    make_celebahq(tmp_path / "hq", n=2, image=lambda i: bordered(1024, 64, inside=hq_colour(i)))
    assert (tmp_path / "hq" / "CelebA-HQ-img" / "0.jpg").stat().st_size < 200_000  # flat: small on disk
    for size in (64, 128):
        cache = prepare(tmp_path / "hq", tmp_path / f"hq{size}.npz", size=size)
        face = cache.images[1].astype(int)  # 64px border at 1024 -> size/16
        assert cache.images.shape == (2, size, size, 3)
        np.testing.assert_allclose(face[size // 32, size // 2], (230, 0, 0), atol=25)
        np.testing.assert_allclose(face[size // 16 + 3, size // 16 + 3], hq_colour(1), atol=25)
        np.testing.assert_allclose(face[size // 2, size // 2], (0, 0, 255), atol=25)


def test_celebahq_corrupt_and_missing_images_are_skipped_and_counted(tmp_path, capsys):
    image_dir, names = make_celebahq(tmp_path / "hq", skip_images=(2,))
    jpeg = (image_dir / names[4]).read_bytes()
    (image_dir / names[4]).write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    (image_dir / names[8]).write_bytes(b"not a jpeg at all")
    cache = prepare(tmp_path / "hq", tmp_path / "hq.npz")
    assert cache.meta["skipped"] == {"missing": 1, "corrupt": 2} and cache.meta["count"] == HQ_N - 3
    assert "skipped 1 missing: 2.jpg" in capsys.readouterr().out
    kept = [i for i in range(HQ_N) if i not in (2, 4, 8)]
    assert list(cache.filenames) == [names[i] for i in kept]
    assert list(cache.partition) == [hq_partition(i) for i in kept]  # rows stay aligned
    assert cache.meta["split"]["counts"] == {"train": 11, "validation": 3, "test": 3}
    assert np.abs(cache.images[2].reshape(-1, 3).mean(0) - hq_colour(3)).max() < 4


def test_celebahq_filter_and_limit(tmp_path):
    make_celebahq(tmp_path / "hq")
    cache = prepare(tmp_path / "hq", tmp_path / "m.npz", filter_text="Male=1,Eyeglasses")
    assert list(cache.filenames) == ["0.jpg", "6.jpg", "12.jpg", "18.jpg"]
    assert list(cache.partition) == [0, 0, 0, 1] and cache.meta["filter"] == {"Male": 1, "Eyeglasses": 1}
    cache = prepare(tmp_path / "hq", tmp_path / "l.npz", filter_text="male=0", limit=3)
    assert list(cache.filenames) == ["1.jpg", "3.jpg", "5.jpg"] and list(cache.partition) == [0, 1, 0]


def test_open_dataset_on_celebahq_when_the_data_folder_is_read_only(tmp_path, monkeypatch, capsys):
    shared, user, locked = tmp_path / "shared", tmp_path / "user-cache", tmp_path / "locked"
    make_celebahq(shared / "celeba-hq", n=6)
    locked.mkdir()
    monkeypatch.setenv("FACEGEN_CACHE_DIR", str(user))
    shared.chmod(0o555), locked.chmod(0o555)  # read-only by mode: root too must leave it alone
    try:
        assert data.unwritable_reason(shared / ".facegen-cache") == f"{shared} is read-only (dr-xr-xr-x)"
        cache = data.open_dataset(shared / "celeba-hq", 32, progress=False, workers=1)
        assert cache.images.shape == (6, 32, 32, 3) and cache.meta["layout"] == "celebamask-hq"
        assert (user / "celeba-hq-32.npz").is_file() and not (shared / ".facegen-cache").exists()
        assert "caching in" in capsys.readouterr().out
        again = data.open_dataset(shared / "celeba-hq", 32, progress=False, workers=1)
        assert "using the cache" in capsys.readouterr().out and list(again.partition) == list(cache.partition)
        with pytest.raises(UsageError, match=f"no writable place .*{locked} is read-only.*--cache-dir"):
            data.open_dataset(shared / "celeba-hq", 64, locked / "caches", progress=False, workers=1)
        with pytest.raises(UsageError, match=f"--out: cannot write the cache .*{locked} is read-only"):
            prepare(shared / "celeba-hq", locked / "x.npz")
        assert not (locked / "caches").exists() and not list(locked.iterdir())
    finally:
        shared.chmod(0o755), locked.chmod(0o755)
    # beside a writable data folder, as before
    data.open_dataset(shared / "celeba-hq", 64, progress=False, workers=1)
    assert (shared / ".facegen-cache" / "celeba-hq-64.npz").is_file()


REAL_HQ = Path("/work/shared/data/celeba-hq-128")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_HQ / "CelebAMask-HQ-attribute-anno.txt").is_file(), reason=f"no {REAL_HQ}")
def test_real_celebahq_64_images_take_the_official_split(tmp_path):
    out = tmp_path / "real.npz"
    assert main(["prepare", "--data", str(REAL_HQ), "--out", str(out), "--size", "64", "--limit", "64",
                 "--workers", "1", "--no-progress"]) == 0
    cache = data.load_cache(out)
    assert list(cache.filenames) == [f"{i}.jpg" for i in range(64)] and cache.images.shape == (64, 64, 64, 3)
    original = {}  # read here independently: HQ index -> CelebA file -> partition
    for line in (REAL_HQ / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()[1:]:
        idx, _, orig_file = line.split()
        original[f"{idx}.jpg"] = orig_file
    official = dict(line.split() for line in (REAL_HQ / "list_eval_partition.txt").read_text().splitlines())
    expected = [int(official[original[name]]) for name in cache.filenames]
    assert list(cache.partition) == expected and len(set(expected)) == 3
    meta = cache.meta
    assert meta["layout"] == "celebamask-hq" and meta["crop"] is None and meta["split"]["kind"] == "celeba-official"
    assert meta["split"]["unlisted"] == 0 and meta["skipped"] == {"missing": 0, "corrupt": 0}
    assert cache.images.reshape(64, -1).std(axis=1).min() > 10, "faces, not flat images"
    # the shared folder is never written, not even the cache folder beside it (root could: the mode says no)
    cache_dir = data.default_cache_path(REAL_HQ, 64).parent
    assert cache_dir == REAL_HQ.parent / ".facegen-cache" and not cache_dir.exists()
    assert data.unwritable_reason(cache_dir), "open_dataset must fall back to the user cache folder"


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
