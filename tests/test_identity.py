"""training/identity.py: identity as dlib's face-recognition network measures it, on the tiny exported model with an
encoder (tests/conftest.py's 'tiny-enc', untrained: its rebuilds are nobody) and real CelebA-HQ photos read in place.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CELEBA_HQ, ENCODER_ATTRIBUTES, ENCODER_MODEL

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")


@pytest.fixture(scope="module")
def photo_paths(celeba_photo):
    celeba_photo()  # skips, with the reason, where the shared photos are absent
    return [CELEBA_HQ / f"{n}.jpg" for n in range(8)]


@pytest.fixture(scope="module")
def net():
    from training.identity import IdentityNet

    return IdentityNet()


def test_the_network_tells_the_same_photo_from_strangers(net, photo_paths):
    from PIL import Image

    from training.export import UNTRAINED_FRAMING
    from training.identity import SAME_PERSON

    photos = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in photo_paths])
    template = UNTRAINED_FRAMING  # CelebA-HQ's measured template, rounded
    reference = net.descriptors(photos, template)
    assert reference.shape == (len(photos), 128)
    # The same photo at 64 px is the same person; other photos are strangers.
    small = np.stack([np.asarray(Image.fromarray(p).resize((64, 64), Image.Resampling.LANCZOS)) for p in photos])
    assert np.all(np.linalg.norm(net.descriptors(small, template) - reference, axis=1) < SAME_PERSON)
    between = np.linalg.norm(reference[:, None] - reference[None], axis=2)[~np.eye(len(photos), dtype=bool)]
    assert between.min() > SAME_PERSON - 0.05 and between.mean() > 0.7


@pytest.mark.slow
def test_the_photo_method_keeps_the_person_where_the_encoder_alone_does_not(celeba_photo):
    """The shipped default (models/DEFAULT, trained on CelebA-HQ) on held-out photos of CelebA's test split: Smiling
    edits by method=photo are the same person, the encoder's rebuild and the generator's edit are not. (The tiny
    untrained test models cannot show this: there an attribute flip changes the whole face.)"""
    from facegen import model_folder
    from training.identity import measure

    celeba_photo()  # skips, with the reason, where the shared photos are absent
    models = Path(__file__).resolve().parents[1] / "models"
    default = models / model_folder.read_default(models)
    # The first six photos of the test partition (CelebA's identity-disjoint split, through CelebA-HQ's mapping).
    paths = [CELEBA_HQ / f"{n}.jpg" for n in (2, 4, 26, 44, 59, 84)]
    report = measure(default, paths, ("Smiling",), progress=False)
    assert report["photos"] == 6 and report["no_face"] == 0
    assert report["framed"]["same_person"] == 1.0  # the ceiling: the framed input is the person
    assert report["stranger"]["same_person"] == 0.0  # the floor
    assert report["rebuilt"]["same_person"] <= 0.34
    generator, photo = report["edits"]["Smiling"]["generator"], report["edits"]["Smiling"]["photo"]
    assert photo["same_person"] >= 0.83 and generator["same_person"] <= 0.34
    assert photo["mean_distance"] < generator["mean_distance"] - 0.15


def test_the_command_line_refuses_bad_flags_in_one_line(tmp_path, encoder_models_dir, capsys):
    from training.identity import main

    cache = tmp_path / "missing.npz"
    assert main(["--model", str(encoder_models_dir / ENCODER_MODEL), "--data", str(cache), "--photos",
                 str(tmp_path), "--count", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --count must be at least 2 (the stranger floor pairs photos)"
    assert main(["--model", str(encoder_models_dir / ENCODER_MODEL), "--data", str(cache), "--photos",
                 str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no such cache file") and "\n" not in error


def test_edit_gains_flags_name_their_problem(encoder_models_dir):
    from training.identity import _gains, measure
    from training.usage_error import UsageError

    assert _gains("1.5") == {"*": 1.5} and _gains("Male=2,Smiling=1.25") == {"Male": 2.0, "Smiling": 1.25}
    with pytest.raises(Exception, match="expected G or NAME=G"):
        _gains("Male:2")
    for gains, words in (({"Wings": 2.0}, "does not have"), ({"*": 40.0}, "numbers in")):
        with pytest.raises(UsageError, match=f"--edit-gains: .*{words}"):
            measure(encoder_models_dir / ENCODER_MODEL, [], ENCODER_ATTRIBUTES[:1], methods=("photo",),
                    edit_gains=gains)
        with pytest.raises(UsageError, match=f"--inversion-edit-gains: .*{words}"):
            measure(encoder_models_dir / ENCODER_MODEL, [], ENCODER_ATTRIBUTES[:1], methods=("photo",),
                    inversion_edit_gains=gains)


def test_write_stores_the_figures_and_both_kinds_of_gains_they_were_measured_with(encoder_models_dir, tmp_path):
    import shutil

    from facegen import model_folder
    from training.identity import write_to_manifest

    folder = tmp_path / ENCODER_MODEL
    shutil.copytree(encoder_models_dir / ENCODER_MODEL, folder)
    name = ENCODER_ATTRIBUTES[0]
    report = {"photos": 3, "edit_gains": {name: 2.0}, "inversion_edit_gains": {name: 1.25}}
    write_to_manifest(folder, report)
    manifest = model_folder.read_manifest(folder)  # still a valid manifest
    assert manifest["metrics"]["identity"] == report
    assert model_folder.edit_gains(manifest)[0] == 2.0 and model_folder.edit_gains(manifest, inverted=True)[0] == 1.25
    write_to_manifest(folder, {"photos": 3, "edit_gains": {}})  # a photo-only run keeps the pti gains it did not measure
    manifest = model_folder.read_manifest(folder)
    assert model_folder.edit_gains(manifest)[0] == 1.0 and model_folder.edit_gains(manifest, inverted=True)[0] == 1.25


def test_the_card_renders_the_identity_figures_and_says_when_there_are_none():
    from training.card import identity_section

    assert "Not measured" in "\n".join(identity_section(None))
    figures = {"same_person": 0.5, "mean_distance": 0.6}
    report = {"photos": 3, "same_person_below": 0.6, "framed": figures, "rebuilt": figures, "stranger": figures,
              "rebuilt_by_inversion": {"pti": {"same_person": 1.0, "mean_distance": 0.4}},
              "edits": {"Smiling": {"pti-photo": {"same_person": 0.9, "mean_distance": 0.45, "changed": 0.55,
                                                  "kept": 0.95, "kept_unconfounded": 0.97,
                                                  "flipped_most": {"Mouth_Slightly_Open": 0.4, "Young": 0.05}}}},
              "judge": {"confound_shift": 0.1, "confounded": {"Smiling": ["Mouth_Slightly_Open"]}},
              "seconds_per_photo_median_by_method": {"pti-photo": 0.8}, "command": "python -m training.identity",
              "edit_gains": {"Smiling": 2.0}, "inversion_edit_gains": {"Male": 1.25, "Smiling": 1.5}}
    text = "\n".join(identity_section(report))
    assert "methods photo and generator: Smiling 2; 1 for the rest" in text
    assert "methods pti and pti-photo: Male 1.25, Smiling 1.5; 1 for the rest" in text
    assert "| the rebuild after inversion (pti) | 1.000 | 0.400 |" in text
    assert ("| Smiling | pti-photo (the tuned copy's change applied to the framed photo) | 0.900 | 0.450 | 0.550 | "
            "0.950 | 0.970 | Mouth_Slightly_Open 0.40, Young 0.05 |") in text
    assert "Left out: Smiling: Mouth_Slightly_Open." in text
    assert "pti-photo 0.80" in text


def test_the_identity_metric_is_skipped_without_a_model_folder_and_photos():
    from training.quality import METRICS, Context

    context = Context(generate=None, latent_size=2, attributes=["Smiling"], frequencies=None, real_images=None,
                      real_attributes=None, classifier=None)
    assert "skipped" in METRICS["identity"](context)


def _judge_world(count=4000, seed=0):
    """Made-up held-out photos: labels for (Male, Eyeglasses, Young), glasses worn mostly by men, and a judge that
    reads Male and Eyeglasses as labelled but Young as off whenever there are glasses (the shortcut CelebA's judge
    learned: glasses -> older)."""
    rng = np.random.RandomState(seed)
    male = rng.rand(count) < 0.4
    glasses = rng.rand(count) < np.where(male, 0.3, 0.05)
    young = rng.rand(count) < 0.7
    labels = np.stack([male, glasses, young], axis=1)
    readings = labels.copy()
    readings[:, 2] &= ~glasses
    return readings, labels


def test_judge_shifts_find_the_attributes_the_judge_ties_to_the_edit_at_equal_labels():
    from training.identity import CONFOUND_SHIFT, confounded, judge_shifts

    readings, labels = _judge_world()
    names = ("Male", "Eyeglasses", "Young")
    shifts = judge_shifts(readings, labels, names, "Eyeglasses")
    # Young is read off with glasses for every young person: the shift is the whole young group's rate.
    assert shifts["Young"] == pytest.approx(1.0)
    # Male goes with glasses in the labels, yet the judge reads it as labelled: at equal labels, no shift. (Without
    # the label groups Male's reading rate would move with glasses by ~0.4 and it would be left out wrongly.)
    assert shifts["Male"] == pytest.approx(0.0)
    assert confounded(shifts) == ["Young"]
    # From Male's side, young men read as young less often only through glasses (worn by 30% of men, 5% of women):
    # a tie all the same, and the judge_shifts measure it.
    through_glasses = judge_shifts(readings, labels, names, "Male")["Young"]
    assert through_glasses == pytest.approx(0.25, abs=0.04) and through_glasses > CONFOUND_SHIFT
    # Too few photos with the edited attribute in a label group: not measurable, so left out of unconfounded.
    few = labels.copy()
    few[:, 1] = False
    few[:5, 1] = True
    shifts = judge_shifts(readings, few, names, "Eyeglasses")
    assert shifts == {"Male": None, "Young": None} and confounded(shifts) == ["Male", "Young"]


def test_edit_success_reads_the_flip_the_others_and_what_moved_most():
    from training.identity import edit_success

    names = ["Male", "Young", "Smiling", "Eyeglasses"]
    base = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 0, 1]], bool)
    decisions = base.copy()
    decisions[:, 3] = [1, 1, 1, 0]  # asked [1, 1, 0, 1]: the first two read as asked
    decisions[:3, 1] = ~base[:3, 1]  # Young read changed on 3 of 4 edits
    decisions[0, 0] = ~base[0, 0]  # Male on 1 of 4, Smiling never
    result = edit_success(decisions, base, [1.0, 1.0, 0.0, 1.0], 3, names, left_out=["Young"])
    assert result["changed"] == 0.5
    assert result["kept"] == pytest.approx(1 - 4 / 12, abs=1e-4)
    assert result["flipped_most"] == {"Young": 0.75, "Male": 0.25, "Smiling": 0.0}
    assert result["kept_unconfounded"] == pytest.approx(1 - 1 / 8)  # Male and Smiling only
    assert edit_success(decisions, base, [1.0] * 4, 3, names, left_out=names)["kept_unconfounded"] is None
    assert "kept_unconfounded" not in edit_success(decisions, base, [1.0] * 4, 3, names)


class _ShortcutJudge:
    """A judge for measure(): Young read on the first images it sees (the framed photos, read first) and on nothing
    after, everything else read off; so every edit 'changes' Young and keeps the rest."""

    info = {"held_out": {"mean_balanced": 0.5}}

    def __init__(self, names):
        self.names, self.calls = list(names), 0

    def column(self, name):
        return self.names.index(name)

    def probabilities(self, images):
        self.calls += 1
        out = np.zeros((len(images), len(self.names)), np.float32)
        if self.calls == 1:
            out[:, self.names.index("Young")] = 1.0
        return out


def test_kept_unconfounded_leaves_out_what_the_judge_ties_to_the_edit(encoder_models_dir, photo_paths):
    from training.identity import measure

    judge = _ShortcutJudge(ENCODER_ATTRIBUTES)
    shifts = {"Eyeglasses": {"Male": 0.02, "Smiling": 0.0, "Young": 0.7}}
    report = measure(encoder_models_dir / ENCODER_MODEL, photo_paths[:3], ("Eyeglasses",), classifier=judge,
                     progress=False, methods=("photo",), shifts=shifts)
    figures = report["edits"]["Eyeglasses"]["photo"]
    assert figures["kept"] == round(2 / 3, 4)  # Young flipped on every photo, Male and Smiling kept
    assert figures["kept_unconfounded"] == 1.0  # Young is the judge's, not the edit's
    assert list(figures["flipped_most"].items())[0] == ("Young", 1.0)
    assert report["judge"]["confounded"] == {"Eyeglasses": ["Young"]}
