"""``python -m training synth``: layout, determinism, coherent attributes, attributes true to the picture, CLI."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synth
from training.__main__ import main
from training.synth import ATTRIBUTE_NAMES, render_face, sample_attributes, write_dataset

CELEBA_NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
                "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
                "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
                "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
                "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
SEEDS = (1, 2, 3, 4, 5, 6)


def test_attribute_names_are_celeba_s():
    assert list(ATTRIBUTE_NAMES) == CELEBA_NAMES


# -- the data set on disk ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    summary = write_dataset(out, 70, seed=7, workers=1, progress=False)
    return out, summary


def test_layout_files_parse_as_celeba(dataset):
    out, summary = dataset
    assert summary["count"] == 70 and summary["images_per_second"] > 0 and summary["path"] == str(out)
    lines = (out / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == "70"
    assert lines[1].split() == CELEBA_NAMES
    rows = lines[2:]
    assert len(rows) == 70
    for index, row in enumerate(rows):
        fields = row.split()
        assert fields[0] == f"{index + 1:06d}.jpg"
        assert len(fields) == 41 and set(fields[1:]) <= {"1", "-1"}
    partition = [line.split() for line in (out / "list_eval_partition.txt").read_text().splitlines()]
    assert [name for name, _ in partition] == [f"{i + 1:06d}.jpg" for i in range(70)]
    split = [int(p) for _, p in partition]
    assert split == sorted(split)  # contiguous, like CelebA's
    assert split.count(0) == 56 and split.count(1) == 7 and split.count(2) == 7


def test_images_are_178x218_rgb_jpegs(dataset):
    out, _ = dataset
    files = sorted((out / "img_align_celeba").iterdir())
    assert [f.name for f in files] == [f"{i + 1:06d}.jpg" for i in range(70)]
    for path in files[:5]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (178, 218)


def test_readme_marks_the_set_synthetic(dataset):
    out, _ = dataset
    first = (out / "README.txt").read_text().splitlines()[0]
    assert first.startswith("facegen synth")
    assert "synthetic" in first and "seed 7" in first and "count 70" in first
    from training.data import dataset_identity

    assert dataset_identity(out) == ("synth", True)


def test_labels_match_the_rendered_images(dataset):
    """The file's row i is the attribute set the renderer drew for image i."""
    out, _ = dataset
    rows = (out / "list_attr_celeba.txt").read_text().splitlines()[2:]
    for index in (0, 33, 69):
        attributes, image = synth.render_one(7, index)
        expected = [" 1" if attributes[n] else "-1" for n in CELEBA_NAMES]
        assert rows[index].split()[1:] == [e.strip() for e in expected]
        with Image.open(out / "img_align_celeba" / f"{index + 1:06d}.jpg") as stored:
            diff = np.abs(np.asarray(stored, dtype=int) - np.asarray(image, dtype=int)).mean()
        assert diff < 4  # the same picture, up to JPEG


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    out, _ = dataset
    other = tmp_path / "again"
    write_dataset(other, 70, seed=7, workers=2, progress=False)  # two chunks on two processes
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt", "README.txt"):
        assert (out / name).read_bytes() == (other / name).read_bytes()
    for index in range(70):
        name = f"img_align_celeba/{index + 1:06d}.jpg"
        assert (out / name).read_bytes() == (other / name).read_bytes(), name


def test_a_different_seed_gives_different_faces(tmp_path):
    write_dataset(tmp_path / "a", 3, seed=1, workers=1, progress=False)
    write_dataset(tmp_path / "b", 3, seed=2, workers=1, progress=False)
    assert (tmp_path / "a/img_align_celeba/000001.jpg").read_bytes() != \
        (tmp_path / "b/img_align_celeba/000001.jpg").read_bytes()


# -- attributes ----------------------------------------------------------------------------------------------
def test_sample_attributes_is_coherent_with_celeba_like_marginals():
    rng = np.random.default_rng(0)
    samples = [sample_attributes(rng) for _ in range(4000)]
    for a in samples:
        assert set(a) == set(CELEBA_NAMES) and all(isinstance(v, bool) for v in a.values())
        assert sum(a[c] for c in HAIR_COLOURS) <= 1
        assert not (a["Wavy_Hair"] and a["Straight_Hair"])
        if not a["Male"]:
            assert a["No_Beard"] and not (a["Goatee"] or a["Mustache"] or a["Sideburns"] or a["5_o_Clock_Shadow"])
            assert not a["Bald"] and not a["Wearing_Necktie"]
        if a["Bald"]:
            assert not any(a[c] for c in HAIR_COLOURS) and not a["Bangs"] and not a["Wearing_Hat"]
        if a["Goatee"]:
            assert not a["No_Beard"]
        if a["5_o_Clock_Shadow"]:
            assert a["No_Beard"]
    freq = {n: np.mean([a[n] for a in samples]) for n in CELEBA_NAMES}
    expected = {"Male": (0.37, 0.47), "Eyeglasses": (0.09, 0.16), "Smiling": (0.43, 0.53), "No_Beard": (0.78, 0.88),
                "Young": (0.72, 0.82), "Black_Hair": (0.15, 0.3), "Blond_Hair": (0.08, 0.2),
                "Brown_Hair": (0.13, 0.27), "Gray_Hair": (0.03, 0.12), "Wearing_Hat": (0.03, 0.09),
                "Bald": (0.01, 0.06), "Wearing_Lipstick": (0.4, 0.52), "Mouth_Slightly_Open": (0.4, 0.54)}
    for name, (low, high) in expected.items():
        assert low <= freq[name] <= high, (name, freq[name])
    assert all(0 < freq[n] < 1 for n in CELEBA_NAMES)


def test_sample_attributes_and_render_are_deterministic():
    a1 = sample_attributes(np.random.default_rng([3, 9]))
    a2 = sample_attributes(np.random.default_rng([3, 9]))
    assert a1 == a2
    i1 = render_face(a1, np.random.default_rng(11))
    i2 = render_face(a1, np.random.default_rng(11))
    assert i1.size == (178, 218) and i1.mode == "RGB"
    assert i1.tobytes() == i2.tobytes()


# -- attributes are true to the picture ----------------------------------------------------------------------
NEUTRAL = dict.fromkeys(CELEBA_NAMES, False)
NEUTRAL.update(No_Beard=True, Young=True, Brown_Hair=True)


def pair(name, seed, value=True, **base):
    """(without, with) the attribute, everything else (attributes and rng stream) identical; float arrays."""
    attributes = dict(NEUTRAL, **base)
    off = render_face(dict(attributes, **{name: not value}), np.random.default_rng(seed))
    on = render_face(dict(attributes, **{name: value}), np.random.default_rng(seed))
    return np.asarray(off, dtype=float), np.asarray(on, dtype=float)


def region(array, x0, y0, x1, y1):
    return array[y0:y1, x0:x1]


def luminance(array):
    return array @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("seed", SEEDS)
def test_eyeglasses_draw_dark_frames_round_the_eyes(seed):
    off, on = pair("Eyeglasses", seed)
    box = (50, 88, 128, 124)
    dark_off = (luminance(region(off, *box)) < 50).mean()
    dark_on = (luminance(region(on, *box)) < 50).mean()
    assert dark_on > dark_off + 0.04, (dark_off, dark_on)
    # nothing changes far from the eyes
    assert np.abs(region(on, 40, 150, 140, 200) - region(off, 40, 150, 140, 200)).mean() < 1


@pytest.mark.parametrize("seed", SEEDS)
def test_a_hat_covers_the_top_of_the_head(seed):
    off, on = pair("Wearing_Hat", seed)
    assert np.abs(region(on, 55, 40, 123, 62) - region(off, 55, 40, 123, 62)).mean() > 25


@pytest.mark.parametrize("seed", SEEDS)
def test_a_beard_darkens_the_lower_face(seed):
    off, on = pair("No_Beard", seed, value=False, Male=True, Black_Hair=True, Brown_Hair=False)
    box = (66, 150, 112, 166)  # chin and jaw, below the mouth
    assert luminance(region(on, *box)).mean() < luminance(region(off, *box)).mean() - 25


@pytest.mark.parametrize("seed", SEEDS)
def test_a_moustache_darkens_the_upper_lip(seed):
    off, on = pair("Mustache", seed, Male=True, Black_Hair=True, Brown_Hair=False)
    box = (74, 134, 104, 142)
    assert luminance(region(on, *box)).mean() < luminance(region(off, *box)).mean() - 15


@pytest.mark.parametrize("seed", SEEDS)
def test_blond_hair_is_brighter_and_yellower_than_black_hair(seed):
    attributes = dict(NEUTRAL, Brown_Hair=False)
    black = np.asarray(render_face(dict(attributes, Black_Hair=True), np.random.default_rng(seed)), dtype=float)
    blond = np.asarray(render_face(dict(attributes, Blond_Hair=True), np.random.default_rng(seed)), dtype=float)
    gray = np.asarray(render_face(dict(attributes, Gray_Hair=True), np.random.default_rng(seed)), dtype=float)
    box = (60, 48, 118, 64)  # the top of the head: hair whatever the pose
    hb, hk, hg = (region(x, *box).reshape(-1, 3).mean(axis=0) for x in (blond, black, gray))
    assert luminance(hb) > luminance(hk) + 80
    assert (hb[0] + hb[1]) / 2 - hb[2] > (hk[0] + hk[1]) / 2 - hk[2] + 40  # yellow
    assert luminance(hg) > luminance(hk) + 80 and np.ptp(hg) < 25  # light and colourless


@pytest.mark.parametrize("seed", SEEDS)
def test_bald_shows_skin_where_the_hair_was(seed):
    off, on = pair("Bald", seed, Male=True, Black_Hair=False, Brown_Hair=False)
    box = (60, 48, 118, 64)
    assert np.abs(region(on, *box) - region(off, *box)).mean() > 20
    assert luminance(region(on, *box)).mean() > luminance(region(off, *box)).mean() + 15


def mouth_width(array):
    """Columns of the mouth band with a strong vertical contrast (lips, teeth, the dark opening)."""
    band = luminance(region(array, 50, 132, 128, 160))
    return int((band.max(axis=0) - band.min(axis=0) > 45).sum())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("open_mouth", (False, True))
def test_a_smile_is_wider(seed, open_mouth):
    off, on = pair("Smiling", seed, Mouth_Slightly_Open=open_mouth)
    assert mouth_width(on) >= mouth_width(off) + 6, (mouth_width(off), mouth_width(on))


@pytest.mark.parametrize("seed", SEEDS)
def test_an_open_smile_shows_teeth(seed):
    off, on = pair("Mouth_Slightly_Open", seed, Smiling=True)
    box = region(on, 60, 130, 118, 160)
    teeth = ((box.min(axis=2) > 215) & (np.ptp(box, axis=2) < 30)).sum()
    shut = region(off, 60, 130, 118, 160)
    assert teeth > ((shut.min(axis=2) > 215) & (np.ptp(shut, axis=2) < 30)).sum() + 30


@pytest.mark.parametrize("seed", SEEDS)
def test_women_have_long_hair_beside_the_jaw(seed):
    female, male = pair("Male", seed)
    box = (22, 130, 52, 175)  # left of the jaw
    assert np.abs(region(male, *box) - region(female, *box)).mean() > 20


@pytest.mark.parametrize("seed", SEEDS)
def test_lipstick_reddens_the_lips(seed):
    off, on = pair("Wearing_Lipstick", seed)

    def red_pixels(array):
        mouth = region(array, 66, 132, 112, 160)
        return int(((mouth[..., 0] - mouth[..., 1] > 100) & (mouth[..., 0] > 120)).sum())

    assert red_pixels(on) > red_pixels(off) + 20, (red_pixels(off), red_pixels(on))


@pytest.mark.parametrize("seed", SEEDS)
def test_pale_skin_is_lighter(seed):
    off, on = pair("Pale_Skin", seed)
    cheeks = (55, 112, 75, 130)
    assert luminance(region(on, *cheeks)).mean() >= luminance(region(off, *cheeks)).mean() + 5


@pytest.mark.parametrize("seed", SEEDS)
def test_a_necktie_shows_below_the_chin(seed):
    off, on = pair("Wearing_Necktie", seed, Male=True)
    assert np.abs(region(on, 78, 178, 100, 218) - region(off, 78, 178, 100, 218)).mean() > 25


@pytest.mark.parametrize("name, box", [("Bangs", (60, 78, 118, 94)), ("Wearing_Earrings", (30, 118, 60, 138)),
                                       ("Wearing_Necklace", (60, 168, 118, 190)), ("Young", (60, 60, 118, 175)),
                                       ("Chubby", (30, 120, 60, 165)), ("Heavy_Makeup", (55, 90, 125, 112)),
                                       ("Rosy_Cheeks", (50, 115, 128, 140)), ("Narrow_Eyes", (55, 98, 125, 114)),
                                       ("Bushy_Eyebrows", (55, 88, 125, 102)), ("Big_Nose", (76, 110, 102, 136))])
def test_other_drawn_attributes_change_their_region(name, box):
    for seed in SEEDS[:3]:
        value = name != "Young"  # old is the drawn state
        off, on = pair(name, seed, value=value)
        assert np.abs(region(on, *box) - region(off, *box)).mean() > 2, (name, seed)


LABEL_ONLY = {"Attractive"}  # sampled for CelebA's marginals, never drawn


@pytest.mark.parametrize("name", CELEBA_NAMES)
def test_each_attribute_alone_changes_the_picture_but_not_the_randomness_used(name):
    """Each drawn attribute has a part that draws it: toggling it alone changes pixels (a part dropped, hidden behind
    a later one or keyed to the wrong name fails here), and the rng is used the same either way (``pair`` and
    "image i depends only on (seed, i)" rely on it)."""
    base = dict(NEUTRAL, Brown_Hair=False, No_Beard=name != "Goatee")  # no hair colour named; a goatee needs a beard
    rng_off, rng_on = np.random.default_rng(5), np.random.default_rng(5)
    off = np.asarray(render_face(dict(base, **{name: False}), rng_off))
    on = np.asarray(render_face(dict(base, **{name: True}), rng_on))
    assert (off != on).any() == (name not in LABEL_ONLY), name
    assert rng_off.random() == rng_on.random()

def test_the_face_fills_the_crop_box_with_eyes_about_45_percent_down():
    """The project crops (15, 40, 163, 188): the head is inside it and the eye line is near 45% of its height."""
    for seed in SEEDS:
        attributes = dict(NEUTRAL, Brown_Hair=False, Black_Hair=True, Male=True)
        image = np.asarray(render_face(attributes, np.random.default_rng(seed)), dtype=float)
        crop = image[40:188, 15:163]
        dark = luminance(crop) < 60  # black hair, pupils, brows, lashes
        rows = np.where(dark.mean(axis=1) > 0.2)[0]
        assert rows.min() < 0.2 * 148  # hair near the top of the crop
        # the whites of the eyes
        centre = crop[30:110, 30:118]
        white = (centre.min(axis=2) > 225) & (np.ptp(centre, axis=2) < 20)
        assert white.sum() > 8
        y = 30 + np.nonzero(white)[0].mean()
        assert 0.40 * 148 < y < 0.50 * 148, y


# -- command line --------------------------------------------------------------------------------------------
def test_cli_writes_a_set_and_prints_a_summary(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--count", "3", "--seed", "1", "--workers", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 faces" in out and "images/s" in out and str(tmp_path / "s") in out
    assert len(list((tmp_path / "s/img_align_celeba").glob("*.jpg"))) == 3


@pytest.mark.parametrize("count", ("0", "-5"))
def test_cli_refuses_a_count_below_one(tmp_path, capsys, count):
    assert main(["synth", "--out", str(tmp_path / "s"), "--count", count, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--count" in err
    assert not (tmp_path / "s").exists()


def test_cli_refuses_an_existing_set(tmp_path, capsys):
    target = tmp_path / "s"
    assert main(["synth", "--out", str(target), "--count", "1", "--workers", "1", "--no-progress"]) == 0
    before = (target / "list_attr_celeba.txt").read_bytes()
    capsys.readouterr()
    assert main(["synth", "--out", str(target), "--count", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(Path(target) / "list_attr_celeba.txt") in err
    assert (target / "list_attr_celeba.txt").read_bytes() == before


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["synth", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--count", "--seed", "--workers", "--no-progress"):
        assert flag in text
