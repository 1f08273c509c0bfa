"""facegen.framing: the similarity fit (pure maths) and, on real CelebA-HQ photos read in place from the shared data
folder beside the repository, detection, framing and the template.

The photos are never copied: they are read at test time (their licence is non-commercial research), and the tests
that need them are skipped, with the reason, where the folder is absent.
"""

import math
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen import framing
from facegen.framing import NoFaceFound, check_template, similarity_transform

CELEBA_HQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-hq-128" / "CelebA-HQ-img"
SIZE = 128


@pytest.fixture(scope="module")
def photo():
    """photo(n): CelebA-HQ image n.jpg as uint8 RGB [128, 128, 3]."""
    if not CELEBA_HQ.is_dir():
        pytest.skip(f"CelebA-HQ 128 px photos not found at {CELEBA_HQ} (the shared data folder beside the repo)")

    def load(number: int) -> np.ndarray:
        with Image.open(CELEBA_HQ / f"{number}.jpg") as image:
            return np.asarray(image.convert("RGB"))

    return load


def similarity(angle_degrees: float, scale: float, tx: float, ty: float) -> np.ndarray:
    angle = math.radians(angle_degrees)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def warp_onto_canvas(rgb: np.ndarray, matrix: np.ndarray, canvas_size: tuple[int, int]) -> np.ndarray:
    """The photo moved by ``matrix`` (photo -> canvas, continuous pixel coordinates) onto a grey canvas."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    canvas = Image.fromarray(rgb).transform(canvas_size, Image.Transform.AFFINE, tuple(inverse.ravel()),
                                            Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    return np.asarray(canvas)


# --- similarity_transform: pure maths ---------------------------------------------------------------------------------

def test_similarity_transform_recovers_a_known_transform_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, size=(5, 2))
    for matrix in (similarity(23.0, 0.31, 40.0, -12.5), similarity(-170.0, 4.2, 1000.0, 3.0), similarity(0, 1, 0, 0)):
        dst = framing.apply_transform(matrix, src)
        np.testing.assert_allclose(similarity_transform(src, dst), matrix, rtol=0, atol=1e-9)
    # Two points determine it; collinear points are fine.
    line = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    matrix = similarity(90.0, 2.0, 5.0, 5.0)
    np.testing.assert_allclose(similarity_transform(line, framing.apply_transform(matrix, line)), matrix, atol=1e-12)


def test_similarity_transform_is_the_least_squares_fit_and_never_reflects():
    rng = np.random.default_rng(1)
    src = rng.uniform(-1, 1, size=(5, 2))
    dst = framing.apply_transform(similarity(10, 2, 3, 4), src) + rng.normal(0, 0.05, size=(5, 2))
    fitted = similarity_transform(src, dst)
    best = ((framing.apply_transform(fitted, src) - dst) ** 2).sum()
    for _ in range(200):  # no nearby similarity fits better
        a, b, tx, ty = rng.normal(0, 1e-3, size=4)
        nudged = fitted + np.array([[a, -b, tx], [b, a, ty]])
        assert ((framing.apply_transform(nudged, src) - dst) ** 2).sum() >= best
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) >= 0


@pytest.mark.parametrize("src, dst, words", [
    (np.ones((5, 2)), np.random.default_rng(2).uniform(size=(5, 2)), "degenerate source"),
    (np.random.default_rng(3).uniform(size=(5, 2)), np.full((5, 2), 7.0), "degenerate target"),
    (np.zeros((1, 2)), np.zeros((1, 2)), "at least 2 points"),
    (np.zeros((5, 2)), np.zeros((4, 2)), "same shape"),
    (np.zeros((5, 3)), np.zeros((5, 3)), "[N, 2]"),
    (np.array([[0, 0], [1, np.nan]]), np.array([[0, 0], [1, 1]]), "finite"),
])
def test_similarity_transform_fails_loudly_on_degenerate_input(src, dst, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        similarity_transform(src, dst)


def test_check_template_refuses_bad_templates():
    good = [[0.38, 0.48], [0.62, 0.48], [0.5, 0.63], [0.39, 0.73], [0.61, 0.73]]
    assert check_template(good).shape == (5, 2)
    for bad, words in ((good[:4], "[5, 2]"), ([[2.0, 0.5]] + good[1:], "[0, 1]"),
                       ([good[0], good[0]] + good[2:], "eyes coincide"), ("abc", "numeric")):
        with pytest.raises(ValueError, match=re.escape(words)):
            check_template(bad)


# --- detection on real photos -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_face_is_found_with_landmarks_in_plausible_places(photo):
    for number in (0, 1, 2, 3):
        face = framing.largest_face(photo(number))
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
        assert lx + 10 < rx, "the image-left eye is left of the other, a face's width apart"
        assert max(ly, ry) + 5 < ny < min(mly, mry) - 5, "the nose is below the eyes and above the mouth"
        assert mlx < mrx and abs(ly - ry) < 15
        x0, y0, x1, y1 = face.box
        assert (x0 <= face.landmarks[:, 0]).all() and (face.landmarks[:, 0] <= x1).all()
        assert (y0 <= face.landmarks[:, 1]).all() and (face.landmarks[:, 1] <= y1).all()
        assert 0.8 <= face.score <= 1.0 and face.area > 40 * 40


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_in_a_flat_or_noise_image(kind):
    rng = np.random.default_rng(4)
    image = (np.full((256, 320, 3), 140, np.uint8) if kind == "flat"
             else rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8))
    assert framing.detect_faces(image) == []
    with pytest.raises(NoFaceFound, match="no face found"):
        framing.largest_face(image)
    assert framing.detect_faces(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than any face


@pytest.mark.slow  # TensorFlow in a subprocess: the suite's own process keeps TensorFlow's warnings quiet
def test_an_image_without_a_face_logs_nothing():
    """A grey 64 px square leaves the second network no candidate, a noise square the third; mtcnn would run them on
    an empty batch, and TensorFlow's runtime would log its refusal ("Local rendezvous is aborting ...
    INVALID_ARGUMENT") on stderr for every such upload. The stages pass nothing on instead."""
    code = ("import numpy as np, sys; from facegen import framing; framing.detector(); print('BUILT', file=sys.stderr, "
            "flush=True); grey = np.full((64, 64, 3), 128, np.uint8); "
            "noise = np.random.RandomState(0).randint(0, 255, (200, 200, 3)).astype(np.uint8); "
            "sys.exit(framing.detect_faces(grey) != [] or framing.detect_faces(noise) != [])")
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # warnings shown, as in a service's log
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after_build = done.stderr.split("BUILT", 1)[1]
    assert "INVALID_ARGUMENT" not in after_build, after_build[-2000:]


@pytest.mark.slow
def test_two_faces_side_by_side_the_larger_is_chosen(photo):
    big = np.asarray(Image.fromarray(photo(1)).resize((300, 300), Image.Resampling.LANCZOS))
    small = photo(2)
    canvas = np.full((320, 460, 3), 200, np.uint8)
    canvas[10:310, 140:440] = big  # the big face on the right, so the order is not simply left to right
    canvas[100:228, 5:133] = small
    faces = framing.detect_faces(canvas)
    assert len(faces) >= 2
    assert [face.area for face in faces] == sorted((face.area for face in faces), reverse=True)
    chosen = framing.largest_face(canvas)
    assert 140 <= chosen.landmarks[:, 0].min() and chosen.landmarks[:, 0].max() <= 440
    expected = framing.largest_face(big).landmarks + [140, 10]
    assert np.abs(chosen.landmarks - expected).max() < 4


# --- framing ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("angle, scale, shift", [
    (17.0, 2.6, (150.0, 90.0)),  # a large face, framing shrinks it (the antialiased path)
    (-24.0, 0.75, (260.0, 210.0)),  # a small face, framing enlarges it
])
def test_a_moved_photo_is_framed_back_onto_the_template(photo, angle, scale, shift):
    original = photo(3)
    reference = framing.largest_face(original).landmarks
    template = reference / SIZE  # the photo's own framing: framing the moved copy must restore it
    moved = similarity(angle, scale, *shift)
    canvas = warp_onto_canvas(original, moved, (640, 560))

    found = framing.largest_face(canvas).landmarks
    assert np.abs(found - framing.apply_transform(moved, reference)).max() < 4 * scale
    framed = framing.frame_face(canvas, found, template, SIZE)
    assert framed.shape == (SIZE, SIZE, 3) and framed.dtype == np.uint8

    again = framing.largest_face(framed).landmarks
    assert np.abs(again - template * SIZE).max() < 3.0, "landmarks land within 3 px of the template"
    centre = (slice(24, 104), slice(24, 104))  # the face itself, away from borders the canvas never had
    difference = np.abs(framed[centre].astype(int) - original[centre].astype(int)).mean()
    assert difference < 12, f"the framed face differs from the original by {difference:.1f} levels on average"


def test_frame_face_fills_outside_the_photo_by_reflection_or_black(photo):
    original = photo(0)
    landmarks = framing.largest_face(original).landmarks
    shrunk = landmarks / SIZE * 0.5 + 0.25  # the template puts the face in the middle half: borders are outside
    reflected = framing.frame_face(original, landmarks, shrunk, SIZE)
    black = framing.frame_face(original, landmarks, shrunk, SIZE, border="constant")
    assert black[:8].max() < 10 and black[:, :8].max() < 10
    assert reflected[:8].mean() > 30, "reflection fills the border with the photo's own pixels"
    np.testing.assert_array_equal(reflected[40:88, 40:88], black[40:88, 40:88])
    with pytest.raises(ValueError, match="border"):
        framing.frame_face(original, landmarks, shrunk, SIZE, border="wrap")


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_frame_face_antialiases_when_it_shrinks(angle):
    """A 1-pixel checkerboard shrunk 3.4 times must come out flat grey: sampled without a low-pass first, it
    aliases into stripes and moire (a standard deviation of about 70 levels instead of under 2)."""
    board = (np.indices((500, 500)).sum(axis=0) % 2 * 255).astype(np.uint8)
    rgb = np.repeat(board[..., None], 3, axis=2)
    template = np.array([[0.378, 0.476], [0.625, 0.476], [0.498, 0.630], [0.388, 0.729], [0.613, 0.729]])
    turn = similarity(angle, 1.0, 0.0, 0.0)[:, :2]
    landmarks = (template * 440 - 220) @ turn.T + 250
    framed = framing.frame_face(rgb, landmarks, template, SIZE)
    assert abs(framed.mean() - 127.5) < 2 and framed.std() < 2


def test_frame_face_output_size_follows_the_argument(photo):
    original = photo(2)
    landmarks = framing.largest_face(original).landmarks
    template = landmarks / SIZE
    for size in (32, 64, 256):
        framed = framing.frame_face(original, landmarks, template, size)
        assert framed.shape == (size, size, 3)
    # At the photo's own size and framing, the warp is the identity.
    same = framing.frame_face(original, landmarks, template, SIZE)
    assert np.abs(same.astype(int) - original.astype(int)).mean() < 1.0


# --- the template and the shared detector -----------------------------------------------------------------------------

@pytest.mark.slow
def test_mean_landmarks_averages_faces_and_counts_the_skipped(photo):
    images = [photo(number) for number in range(6)] + [np.full((128, 128, 3), 90, np.uint8)]
    result = framing.mean_landmarks(images)
    assert result.used == 6 and result.skipped == 1
    check_template(result.template)
    each = np.stack([framing.largest_face(image).landmarks / SIZE for image in images[:6]])
    np.testing.assert_allclose(result.template, each.mean(axis=0), atol=1e-9)
    assert result.template[0, 0] < result.template[1, 0] and result.template[0, 1] < result.template[3, 1]
    with pytest.raises(NoFaceFound):
        framing.mean_landmarks([np.full((64, 64, 3), 0, np.uint8)])


def test_importing_framing_does_not_import_tensorflow():
    code = "import sys, facegen.framing; sys.exit('tensorflow' in sys.modules or 'mtcnn' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_the_detector_is_built_once_and_shared_by_threads(photo, monkeypatch):
    import mtcnn

    built = []

    class CountingMTCNN(mtcnn.MTCNN):
        def __init__(self, *args, **kwargs):
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(mtcnn, "MTCNN", CountingMTCNN)
    monkeypatch.setattr(framing, "_detector", None)  # as in a fresh process
    image = photo(1)
    start = threading.Barrier(4)
    detectors, results, errors = [], [], []

    def work():
        try:
            start.wait()
            detectors.append(framing.detector())
            results.append(framing.largest_face(image).landmarks)
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(built) == 1 and all(detector is built[0] for detector in detectors)
    for landmarks in results[1:]:
        np.testing.assert_allclose(landmarks, results[0], atol=1e-6)
