"""The GAN's maths, each piece against what it must compute, so a broken GAN fails here and not only in pictures.

Losses against hand-computed values; every stabiliser switch changing what it should; EMA against its formula; a
checkpoint round trip that compares weights; seeded initialisation; the TensorFlow and JAX steps agreeing number
for number; and a short learning test on both backends.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from tests import gan_harness
from tests.gan_harness import ReplayRng, bce, config_of, largest_change, run_jax, sigmoid
from training import loss, stabilisers

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "gan_harness.py"


REAL = np.array([2.0, -1.0, 0.5], np.float32)
FAKE = np.array([0.5, -3.0, 1.5], np.float32)


# -- losses ------------------------------------------------------------------------------------------------------
def test_generator_loss_wants_d_to_call_fakes_real():
    value = float(loss.g_adversarial(ops.convert_to_tensor(FAKE), config_of()))
    assert value == pytest.approx(bce(FAKE, 1.0), rel=1e-5)  # target 1, i.e. -mean(log D(G(z)))
    assert value == pytest.approx(float(np.mean(-np.log(sigmoid(FAKE)))), rel=1e-5)


def test_discriminator_loss_with_one_sided_label_smoothing():
    config = config_of(label_smoothing=0.1)
    value = float(loss.d_adversarial(ops.convert_to_tensor(REAL), ops.convert_to_tensor(FAKE), config))
    # Smoothing on the real side only: real target 0.9, fake target exactly 0.
    assert value == pytest.approx(bce(REAL, 0.9) + bce(FAKE, 0.0), rel=1e-5)
    assert value != pytest.approx(bce(REAL, 1.0) + bce(FAKE, 0.1), rel=1e-3)


def test_label_flipping_swaps_the_targets_of_flipped_examples():
    config = config_of(label_smoothing=0.0, label_flip=0.3)
    flip = np.array([1.0, 0.0, 0.0], np.float32)
    value = float(loss.d_adversarial(ops.convert_to_tensor(REAL), ops.convert_to_tensor(FAKE), config,
                                     ops.convert_to_tensor(flip)))
    assert value == pytest.approx(bce(REAL, [0, 1, 1]) + bce(FAKE, [1, 0, 0]), rel=1e-5)


def test_flip_mask_flips_where_the_uniform_draw_is_below_label_flip():
    config = config_of(label_flip=0.3)
    draws = np.random.RandomState(4).random_sample(1000)
    mask = np.asarray(stabilisers.flip_mask(config, 1000, ReplayRng(4, 0)))
    np.testing.assert_array_equal(mask, (draws < 0.3).astype(np.float32))
    assert stabilisers.flip_mask(config_of(label_flip=0.0), 1000, ReplayRng(4, 0)) == 0.0


def test_hinge_losses():
    config = config_of(loss="hinge")
    d = float(loss.d_adversarial(ops.convert_to_tensor(REAL), ops.convert_to_tensor(FAKE), config))
    assert d == pytest.approx(np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE)), rel=1e-6)
    assert float(loss.g_adversarial(ops.convert_to_tensor(FAKE), config)) == pytest.approx(-np.mean(FAKE), rel=1e-6)


class _RecordingD:
    """A stand-in D that records what it is shown and returns fixed logits."""

    def __init__(self, logits):
        self.logits, self.inputs = logits, []

    def __call__(self, images, attrs):
        self.inputs.append(np.asarray(images))
        n = int(ops.shape(images)[0])
        return ops.convert_to_tensor(self.logits[:n]), ops.zeros((n, int(ops.shape(attrs)[1])))


def _fixed_g(z, attrs):
    return ops.zeros((ops.shape(z)[0], 32, 32, 3))


def test_discriminator_objective_applies_label_flipping_from_its_rng():
    config = config_of(label_smoothing=0.0, label_flip=0.45, conditioning="projection", instance_noise=0.0)
    real, attrs = ops.zeros((3, 32, 32, 3)), ops.zeros((3, 2))
    logits = iter([REAL, FAKE])  # D's verdict on the real batch, then on the fakes

    def d_forward(images, a):
        return ops.convert_to_tensor(next(logits)), ops.zeros((int(ops.shape(images)[0]), 2))

    value, _ = loss.discriminator_objective(_fixed_g, d_forward, real, attrs, attrs, 0, config, ReplayRng(0, 0))
    stream = np.random.RandomState(0)
    stream.standard_normal((3, config.latent_size))  # z is drawn first
    flip = (stream.random_sample(3) < 0.45).astype(np.float64)
    assert 0 < flip.sum() < 3  # this seed flips some and not all: the test can tell flipping from no flipping
    assert float(value) == pytest.approx(bce(REAL, 1 - flip) + bce(FAKE, flip), rel=1e-5)


@pytest.mark.parametrize("objective", ["discriminator", "generator"])
def test_instance_noise_reaches_everything_d_judges_and_anneals_to_zero(objective):
    config = config_of(instance_noise=0.5, instance_noise_steps=100, conditioning="projection")
    real = ops.zeros((3, 32, 32, 3))
    attrs = ops.zeros((3, 2))
    stds = []
    for step in (0, 50, 100):
        d = _RecordingD(REAL)
        if objective == "discriminator":
            loss.discriminator_objective(_fixed_g, d, real, attrs, attrs, step, config, ReplayRng(0, step))
        else:
            loss.generator_objective(_fixed_g, d, attrs, step, config, ReplayRng(0, step))
        stds.append([float(np.std(x)) for x in d.inputs])  # the clean images are all zeros
    # 0.5 at step 0, half of it half-way, none at the end; on real and fake inputs alike.
    assert all(s == pytest.approx(0.5, rel=0.05) for s in stds[0])
    assert all(s == pytest.approx(0.25, rel=0.05) for s in stds[1])
    assert all(s == 0.0 for s in stds[2])


# -- the discriminator's conditioning ---------------------------------------------------------------------------
def _d_logits(config, attrs):
    from training.networks import build_discriminator

    d = build_discriminator(config)
    images = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    logits = []
    for a in attrs:
        logit, _ = d([images, np.array([a, a], np.float32)], training=False)
        logits.append(np.asarray(logit))
    return d, images, logits


def test_projection_term_makes_d_judge_images_with_their_attributes():
    config = config_of(conditioning="projection")
    _, _, (on, off) = _d_logits(config, [[1, 1], [0, 0]])
    assert np.max(np.abs(on - off)) > 1e-4  # the same images with other attributes get another verdict
    # Without the projection head (AC-GAN only) the attributes do not enter D's real/fake logit at all.
    _, _, (unconditioned_on, unconditioned_off) = _d_logits(config_of(conditioning="acgan"), [[1, 1], [0, 0]])
    np.testing.assert_allclose(unconditioned_on, unconditioned_off, atol=1e-6)


# -- stabilisers inside the real step ------------------------------------------------------------------------------
def _train_one_step(config, d_accuracy=None, groups=None):
    """(groups before, groups after, models) of one replayed TensorFlow step."""
    images, attributes = gan_harness.tiny_data(config)
    trainer, models = gan_harness.trainer_for(config, images, attributes, groups, ReplayRng)
    if d_accuracy is not None:
        models.d_accuracy.assign(d_accuracy)
    before = models.checkpoint_groups()
    real, cond = gan_harness.indices(config, len(images))
    trainer.train_step(real, cond, 3)
    return before, models.checkpoint_groups(), models


def test_ema_follows_its_formula():
    config = config_of(ema_start=0, ema_decay=0.9)
    before, after, _ = _train_one_step(config)
    # The EMA copy starts equal to G; after one step it is 0.9 * old + 0.1 * new G, variable by variable.
    for ema_old, ema_new, g_new in zip(before["g_ema"], after["g_ema"], after["g"]):
        np.testing.assert_allclose(ema_new, 0.9 * ema_old + 0.1 * g_new, rtol=1e-5, atol=1e-7)
    assert largest_change(before, after, "g_ema") > 0


def test_ema_copies_g_before_ema_start():
    before, after, _ = _train_one_step(config_of(ema_start=10, ema_decay=0.9))
    for ema_new, g_new in zip(after["g_ema"], after["g"]):
        np.testing.assert_array_equal(ema_new, g_new)


@pytest.mark.slow
def test_accuracy_schedule_holds_d_while_it_wins_and_updates_it_otherwise():
    config = config_of(d_accuracy_threshold=0.6)
    held_before, held_after, models = _train_one_step(config, d_accuracy=0.9)
    kernels = [i for i, v in enumerate(models.discriminator.variables) if v.trainable and len(v.shape) >= 2]
    assert all(np.array_equal(held_before["d"][i], held_after["d"][i]) for i in kernels)
    assert largest_change(held_before, held_after, "g") > 0  # G still trains
    free_before, free_after, _ = _train_one_step(config, d_accuracy=0.1)
    assert all(not np.array_equal(free_before["d"][i], free_after["d"][i]) for i in kernels)
    # The running accuracy moves by the documented momentum, in both cases.
    for before, after in ((held_before, held_after), (free_before, free_after)):
        old, new = float(before["schedule"][0]), float(after["schedule"][0])
        assert new != old and abs(new - stabilisers.RUNNING_ACCURACY_MOMENTUM * old) <= 0.02 + 1e-6


def _power_iteration(u, kernel):
    matrix = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    v = u @ matrix.T
    v /= np.linalg.norm(v)
    u = v @ matrix
    return u / np.linalg.norm(u)


@pytest.mark.slow
def test_spectral_norm_vectors_advance_in_d_step_only():
    """One step with d_steps=1: D sees the real and the fake batch (two power iterations per layer); G's step reads
    D with training=False and must add none (the same semantics on both backends)."""
    config = config_of(d_accuracy_threshold=0.6, spectral_norm=True, d_steps=1)
    before, after, models = _train_one_step(config, d_accuracy=0.9)  # D held: its kernels stay as they were
    variables = models.discriminator.variables
    layers = [(i, next(j for j, w in enumerate(variables) if w.path == v.path.replace("sn_u", "kernel")))
              for i, v in enumerate(variables) if v.path.endswith("sn_u")]
    assert layers
    third_iteration_moves = []
    for u_index, kernel_index in layers:
        kernel = before["d"][kernel_index]
        expected = _power_iteration(_power_iteration(before["d"][u_index].astype(np.float64), kernel), kernel)
        np.testing.assert_allclose(after["d"][u_index], expected, rtol=1e-4, atol=1e-6)
        third_iteration_moves.append(np.max(np.abs(_power_iteration(expected, kernel) - expected)))
    assert max(third_iteration_moves) > 1e-3  # so a power iteration in G's step would be caught


# -- checkpoints and seeds ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_round_trip_restores_every_weight(tmp_path):
    from training import checkpoint
    from training.gan_state import build_models

    _, trained, _ = _train_one_step(config_of(d_accuracy_threshold=0.7), d_accuracy=0.3)
    checkpoint.save_state(tmp_path, trained, {"step": 1})
    groups, meta = checkpoint.load_state(tmp_path)
    fresh = build_models(config_of(d_accuracy_threshold=0.7, seed=99))  # other initial weights
    assert not np.array_equal(fresh.checkpoint_groups()["g"][0], trained["g"][0])
    fresh.load_groups(groups)
    restored = fresh.checkpoint_groups()
    assert set(restored) == set(trained) == {"g", "d", "g_ema", "g_opt", "d_opt", "schedule"}
    for name in trained:
        assert len(restored[name]) == len(trained[name])
        for a, b in zip(restored[name], trained[name]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_no_two_layers_start_from_the_same_values():
    from training.gan_state import build_models

    models = build_models(config_of(g_width=8, g_max_width=8, d_width=8, d_max_width=8))
    kernels = [v for m in (models.generator, models.discriminator) for v in m.variables if len(v.shape) >= 2]
    values = [np.asarray(v.value).ravel() for v in kernels]
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if values[i].shape == values[j].shape:
                assert not np.allclose(values[i], values[j]), (kernels[i].path, kernels[j].path)


def _initial_weights(seed):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(HARNESS), "initial-weights", json.dumps({"seed": seed})],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_same_seed_same_initial_weights_in_two_processes():
    first, second, other = _initial_weights(3), _initial_weights(3), _initial_weights(4)
    assert first == second
    assert first["g"] != other["g"] and first["d"] != other["d"]


# -- the two backends -------------------------------------------------------------------------------------------------
# One step from the same weights and batch, with every stabiliser on. Tolerance: float32 convolutions differ
# between the backends' kernels by ~1e-6 relative; losses agree to 1e-4 relative, and each updated weight to within
# 1e-5 + 1% of Adam's step (lr), which sign-level differences in near-zero gradients can reach.
BACKEND_CONFIG = {"d_steps": 2, "label_flip": 0.2, "instance_noise": 0.1, "d_accuracy_threshold": 0.9,
                  "augment": ["translation", "cutout"],
                  "spectral_norm": True, "conditioning": "both", "ema_start": 0, "ema_decay": 0.5}


@pytest.mark.slow
def test_tensorflow_and_jax_steps_agree(tmp_path):
    config = config_of(**BACKEND_CONFIG)
    from training.gan_state import build_models

    start = build_models(config).checkpoint_groups()
    gan_harness.save_groups(tmp_path / "start.npz", start)
    tf_metrics, tf_after = gan_harness.one_step(config, start)
    run_jax("one-step", json.dumps(BACKEND_CONFIG), str(tmp_path / "start.npz"), str(tmp_path / "jax.npz"))
    jax_after = gan_harness.load_groups(tmp_path / "jax.npz")
    jax_metrics = json.loads((tmp_path / "jax.npz.json").read_text())
    for key in ("d_loss", "g_loss", "d_class", "g_class", "d_real", "d_fake", "d_accuracy_running"):
        assert jax_metrics[key] == pytest.approx(tf_metrics[key], rel=1e-4, abs=1e-5), key
    tolerance = 1e-5 + 0.01 * config.g_lr
    for name in ("g", "d", "g_ema", "schedule"):
        for i, (a, b) in enumerate(zip(tf_after[name], jax_after[name])):
            assert np.max(np.abs(a - b), initial=0.0) <= tolerance + 1e-5 * np.max(np.abs(a), initial=0.0), (name, i)
        moved = largest_change({name: start[name]}, {name: jax_after[name]}, name)
        assert moved > 3 * tolerance, f"the JAX step did not update {name}"


LEARN_CONFIG = {"attributes": ["Male"], "batch_size": 16, "latent_size": 8, "g_width": 8, "g_max_width": 32,
                "d_width": 8, "d_max_width": 32, "ema_start": 0, "ema_decay": 0.5, "g_lr": 1e-3, "d_lr": 1e-3,
                "flip_images": False}
LEARN_STEPS = 250


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_generator_learns_to_follow_an_attribute(backend):
    """Images whose colour is set by one attribute: after a few hundred steps G's faces follow it (red when on,
    blue when off). Any broken piece of the adversarial or auxiliary maths keeps the gap near zero."""
    if backend == "tensorflow":
        gap = gan_harness.colour_gap(config_of(**LEARN_CONFIG), LEARN_STEPS)
    else:
        answer = run_jax("colour-gap", json.dumps(LEARN_CONFIG), str(LEARN_STEPS))
        gap = json.loads(answer.strip().splitlines()[-1])["gap"]
    assert gap > 0.8, f"G's red-minus-blue differs by {gap:.3f} between attribute on and off (data: 2.35)"
