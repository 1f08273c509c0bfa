"""Judging faces at 128 px: the classifier's size, the half-resolution reference figure and evaluate's flags for
comparing a 64 px model served enlarged with a 128 px one (training/classifier.py, training/quality.py)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from training import quality


def test_classifier_widths_and_files_follow_the_judge_size(tmp_path):
    from training.classifier import WIDTHS, build_network, default_path, widths_for
    from training.usage_error import UsageError

    assert widths_for(64) == WIDTHS and widths_for(128) == (16,) + WIDTHS
    with pytest.raises(UsageError, match="power of two"):
        widths_for(96)
    network = build_network(3, 128)
    assert network.input_shape == (None, 128, 128, 3) and network.output_shape == (None, 3)
    # every size ends at 4x4 before pooling: the 128 px network has one more strided block
    assert network.get_layer("conv4").output.shape[1:3] == (4, 4)

    class Cache:
        path = tmp_path / "faces-128.npz"

    assert default_path(Cache, 64).name == "faces-128.classifier.keras"
    assert default_path(Cache, 128).name == "faces-128.classifier128.keras"


class SharpnessJudge:
    """Features a blurred photo cannot fake: mean colour and the energy of fine differences at two scales."""

    def features(self, images):
        x = np.asarray(images, np.float32) / 255.0
        fine = [np.abs(np.diff(x, axis=1)).mean(axis=(1, 2)), np.abs(np.diff(x, axis=2)).mean(axis=(1, 2))]
        coarse = np.abs(np.diff(x[:, ::2, ::2], axis=1)).mean(axis=(1, 2))
        return np.concatenate([x.mean(axis=(1, 2)), *fine, coarse], axis=1)


def photos(n, seed):
    """Textured 64 px 'photos': smooth colour fields plus fine grain, each with its own grain strength."""
    rng = np.random.RandomState(seed)
    base = rng.uniform(60, 200, (n, 1, 1, 3)) + np.linspace(-40, 40, 64)[None, :, None, None]
    grain = rng.normal(0, 1, (n, 64, 64, 3)) * rng.uniform(10, 30, (n, 1, 1, 1))
    return np.clip(base + grain, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("blurred_generator", [False, True])
def test_half_resolution_reference_separates_sharp_from_enlarged(blurred_generator):
    from facegen.model_folder import resize_face

    real = photos(200, seed=1)

    def generate(noise, attrs):
        faces = photos(len(noise), seed=int(abs(noise[0, 0]) * 1e4) % 2**31)
        return np.stack([resize_face(resize_face(f, 32), 64) for f in faces]) if blurred_generator else faces

    context = quality.Context(generate=generate, latent_size=4, attributes=[], frequencies=np.zeros(0),
                              real_images=real, real_attributes=np.zeros((200, 0), np.float32), classifier=None,
                              samples=200, progress=False)
    features = SharpnessJudge().features
    context.classifier = type("Judge", (), {"features": staticmethod(features)})()
    generated = features(context.generate_all(np.random.RandomState(0).standard_normal((200, 4)), np.zeros((200, 0))))
    part_a, part_b = quality.real_halves(200, context.seed)  # frechet_distance's halves (seed 0)
    real_features = features(real)
    floor = quality.frechet_distance_of(real_features[part_a], real_features[part_b])
    reference = quality.half_resolution_reference(context, generated, real_features, (part_a, part_b), floor)
    assert reference["size"] == 100 and reference["resolution"] == 64
    # the enlarged half-resolution photos are far from the sharp ones; real halves are close to each other
    assert reference["real_half_resolution_enlarged"] > 10 * reference["real"]
    if blurred_generator:  # a generator that only makes enlarged small faces scores like the reference
        assert reference["generated"] > 10 * reference["real"]
    else:
        assert reference["generated"] < reference["real_half_resolution_enlarged"] / 5


@pytest.mark.slow
def test_evaluate_judge_and_serve_size_flags_name_the_problem(tmp_path, capsys):
    from training.__main__ import main
    from training.data import save_cache
    from training.export import export_random_model

    model = export_random_model(tmp_path / "tiny", resolution=32, latent_size=8, attributes=("Male",))
    rng = np.random.RandomState(0)
    cache_path = save_cache(tmp_path / "faces-64.npz", rng.randint(0, 256, (40, 64, 64, 3)).astype(np.uint8),
                       (rng.rand(40, 1) < 0.5).astype(np.uint8), ["Male"], np.repeat([0, 1, 2], [30, 5, 5]),
                       [f"{i}.jpg" for i in range(40)], {"dataset_name": "noise", "synthetic": True})
    base = ["evaluate", "--model", str(model), "--data", str(cache_path), "--no-write", "--no-progress"]
    assert main(base + ["--serve-size", "8"]) == 2
    assert "argument --serve-size: must be between 16 and 1024, got 8" in capsys.readouterr().err
    assert main(base + ["--judge-size", "128"]) == 2
    assert "needs a cache prepared with --size 128" in capsys.readouterr().err
