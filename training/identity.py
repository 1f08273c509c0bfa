"""Does an edited photo still show the same person? Identity measured by a face-recognition network.

    python -m training.identity --model models/celeba-hq-64 --data data/celeba-hq-64.npz \
        --photos ../shared/data/celeba-hq-128/CelebA-HQ-img [--count 200] [--edit-attributes Male,Smiling,Eyeglasses]
        [--partition test|validation] [--methods generator,photo,latent,pti,pti-photo]
        [--latent-steps N] [--tune-steps N] [--latent-rate R] [--tune-rate R] [--low-pass-weight W]
        [--edit-gains G|NAME=G,...] [--inversion-edit-gains G|NAME=G,...] [--write]

Choose settings on --partition validation, report on test (the default).

Held-out photos (the cache's test partition, read in place from --photos) go through what /api/edit does, with the
same code: MTCNN finds and frames the face (facegen.framing), the SavedModel's encoder and generator give the
rebuilt face G(z, found) and each one-attribute edit G(z, flipped), and method=photo makes the edit a change to the
framed photo (facegen.photo_edit). Each image is then compared with the photo by dlib's face-recognition ResNet
(``face_recognition_models``, weights inside the wheel; dlib's documented rule: descriptors closer than
:data:`SAME_PERSON` are the same person):

- ``framed``: the framed input itself, the ceiling (what the model's resolution leaves of the person);
- ``rebuilt``: the encoder's rebuild; ``rebuilt_by_inversion``: the rebuild after a per-photo inversion
  (facegen/inversion.py: ``latent``, the noise and attribute logits optimised; ``pti``, then pivotal tuning);
- ``edits``: each one-attribute edit by every method asked for (facegen/edit_methods.py): ``generator`` (the
  encoder's noise through G), ``photo`` (G's change applied to the framed photo), ``latent`` / ``pti`` (the
  inversion's G output) and ``pti-photo`` (the tuned G's change applied to the framed photo);
- ``stranger``: another held-out photo, the floor (test photos of one person may repeat: a slight overestimate).

For each: the share called the same person and the mean distance. With an attribute classifier (--classifier, or
trained beside the cache as evaluate does) each edit also gets ``changed`` (the classifier reads the flipped
attribute in its new state) and ``kept`` (its other decisions equal those on the unedited face: the method's own
rebuild for generator / latent / pti, the framed photo for photo / pti-photo), ``kept_unconfounded`` (the same
over the others the judge does not itself tie to the edited attribute on real photos: see CONFOUND_SHIFT) and
``flipped_most`` (the others it reads changed most often). Each method's time per photo is
measured in the same run (the median, from detection to its edited faces). The network is an evaluation judge
only: nothing here, in facegen/inversion.py or in training optimises against it, or the figure would stop meaning
anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facegen import attributes, edit_methods
from training.classifier import reads_on
from training.usage_error import UsageError

SAME_PERSON = 0.6  # dlib's threshold for its face-recognition descriptors (99.38% on LFW)
DESCRIPTOR_SIDE = 256  # aligned faces are enlarged to this before dlib's 5-point predictor and 150 px face chip
DEFAULT_COUNT = 200
DEFAULT_EDITS = ("Male", "Smiling", "Eyeglasses")
# The attribute judge (training/classifier.py) learned CelebA's correlations as well as its attributes: on held-out
# real photos it reads people with glasses as older, male and without lipstick far more often than their labels say.
# A perfect glasses edit would still change those attributes in its eyes, so ``kept`` mixes an edit's side effects
# with the judge's. ``kept_unconfounded`` counts only the others whose reading the judge does not tie to the edited
# attribute: among held-out real photos with the same label for the other, its rate of reading it differs by at
# most CONFOUND_SHIFT between photos with and without the edited attribute, in every such group of at least
# CONFOUND_GROUP photos (and there is at least one).
CONFOUND_SHIFT = 0.1
CONFOUND_GROUP = 20
FLIPPED_SHOWN = 3  # each edit's report names the others the judge most often reads changed


class IdentityNet:
    """dlib's 5-point shape predictor and face-recognition ResNet (128-d descriptors), for aligned faces."""

    def __init__(self):
        try:
            import dlib
            import face_recognition_models
        except ImportError as error:
            raise UsageError(f"identity needs dlib and face_recognition_models (requirements-train.txt): {error}") \
                from None
        self._dlib = dlib
        self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    def descriptors(self, images, template) -> np.ndarray:
        """float64 [N, 128] for uint8 faces [N, S, S, 3] aligned to ``template`` (the manifest's framing: fractions
        of the side). The face's box comes from the template, not from a detector, so every image is measured
        (a 64 px rebuild is often too small or too odd for dlib's HOG detector); the shape predictor then finds its
        own five points inside it, as dlib's face-recognition example does after detection."""
        from PIL import Image

        template = np.asarray(template, np.float64)
        eyes = template[1, 0] - template[0, 0]
        centre = (template[0, 0] + template[1, 0]) / 2
        box = np.array([centre - 1.4 * eyes, template[:2, 1].mean() - 1.1 * eyes,
                        centre + 1.4 * eyes, template[3:, 1].mean() + 0.95 * eyes]) * DESCRIPTOR_SIDE
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        out = []
        for image in np.asarray(images, np.uint8):
            big = np.asarray(Image.fromarray(image).resize((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE),
                                                          Image.Resampling.LANCZOS))
            shape = self._shape(big, rect)
            out.append(np.asarray(self._net.compute_face_descriptor(big, shape), np.float64))
        return np.stack(out) if out else np.zeros((0, 128))


def same_person(photo: np.ndarray, other: np.ndarray) -> dict:
    """Share of pairs closer than SAME_PERSON, and the mean distance, for descriptor arrays [N, 128]."""
    distance = np.linalg.norm(photo - other, axis=1)
    return {"same_person": round(float(np.mean(distance < SAME_PERSON)), 4),
            "mean_distance": round(float(distance.mean()), 4)}


PARTITIONS = ("test", "validation")  # --partition: report on test, choose settings on validation
DEFAULT_METHODS = ("photo", "generator")  # --methods: how each edit is made (facegen.edit_methods.METHODS)


def judge_shifts(readings: np.ndarray, labels: np.ndarray, names, edited: str) -> dict:
    """{other attribute: shift}: how far the judge's reading of each other attribute moves with ``edited`` on real
    photos at equal labels (see CONFOUND_SHIFT): the largest, over the other's label values with at least
    CONFOUND_GROUP photos both with and without ``edited``, of the difference in the rate the judge reads the other;
    None where no label value has that many. ``readings`` and ``labels``: bool [N, A] in ``names``' order (the
    judge's decisions and the data set's labels for the same held-out photos)."""
    readings, labels = np.asarray(readings, bool), np.asarray(labels, bool)
    has = labels[:, list(names).index(edited)]
    shifts = {}
    for k, other in enumerate(names):
        if other == edited:
            continue
        moved = [abs(readings[has & group, k].mean() - readings[~has & group, k].mean())
                 for group in (labels[:, k], ~labels[:, k])
                 if min(np.sum(has & group), np.sum(~has & group)) >= CONFOUND_GROUP]
        shifts[other] = round(float(max(moved)), 4) if moved else None
    return shifts


def confounded(shifts: dict) -> list:
    """The others of judge_shifts that ``kept_unconfounded`` leaves out: tied to the edit, or not measurable."""
    return [other for other, shift in shifts.items() if shift is None or shift > CONFOUND_SHIFT]


def held_out_readings(cache, classifier, names, leave_out=()) -> tuple:
    """(readings, labels), bool [N, A] in ``names``' order, of the held-out photos the judge never trained on
    (training.classifier.split_indices) less ``leave_out`` (the measured photos): judge_shifts' input."""
    from training.classifier import split_indices

    _, rows = split_indices(cache.partition)
    rows = np.setdiff1d(rows, np.asarray(leave_out, int))
    cache_names = list(cache.attribute_names)
    missing = [n for n in names if n not in cache_names]
    if missing:
        raise UsageError(f"--data: the cache has no labels for {missing}, the model's attributes")
    readings = reads_on(classifier.probabilities(cache.images[rows]))
    readings = readings[:, [classifier.column(n) for n in names]]
    labels = np.asarray(cache.attributes)[rows][:, [cache_names.index(n) for n in names]] > 0
    return readings, labels


def served_methods(model_dir) -> tuple:
    """The edit methods a model folder's service offers (facegen.edit_methods.served)."""
    from facegen import model_folder

    manifest = model_folder.read_manifest(model_dir)
    return tuple(edit_methods.served(manifest.get("encoder") is not None, model_folder.has_pixels(manifest)))


def held_out(cache, count: int, seed: int = 0, partition: str = "test") -> np.ndarray:
    """``count`` indices, drawn with ``seed`` and sorted, of the held-out photos (``test``: training.data's
    held_out_rows, the test partition else validation) or of the validation partition (to choose settings on)."""
    from training.data import PARTITION_NAMES, held_out_rows

    if partition == "test":
        photos, _ = held_out_rows(cache.partition)
    else:
        photos = np.flatnonzero(np.asarray(cache.partition) == PARTITION_NAMES.index(partition))
    if len(photos) == 0:
        raise UsageError(f"--data: the cache has no {partition} partition to measure held-out photos on")
    if len(photos) > count:
        photos = np.sort(np.random.RandomState(seed).choice(photos, count, replace=False))
    return photos


def inverters(model_dir, methods, settings=None) -> dict:
    """{inversion name: facegen.inversion.Inverter} for the inversions ``methods`` need; ``settings``: the pti
    recipe (facegen.inversion.Settings; its defaults otherwise); latent is the same without the tuning."""
    from dataclasses import replace

    from facegen import inversion

    settings = settings or inversion.Settings()
    recipes = {"latent": replace(settings, tune_steps=0), "pti": settings}
    needed = {edit_methods.METHODS[m].inversion for m in methods} - {None}
    return {name: inversion.Inverter(model_dir, recipes[name]) for name in sorted(needed)}


class Editor:
    """What /api/edit runs, loaded once from a model folder and applied photo by photo with the same code: MTCNN
    framing (facegen.framing), the SavedModel's encoder and generator, the inversions the methods need
    (facegen.inversion) and the change applied to the framed photo (facegen.photo_edit), with the edit gains in
    force (the model's, or those asked for: chosen_gains)."""

    def __init__(self, model_dir, manifest: dict, methods, settings=None, edit_gains=None,
                 inversion_edit_gains=None):
        from facegen import framing, model_folder

        self.methods = list(methods)
        self.template = framing.check_template(manifest["encoder"]["framing"]["landmarks"])
        self.size = int(manifest["resolution"])
        self.generate, loaded = model_folder.load_generate(model_dir)
        self.encode = model_folder.load_encode(model_dir, loaded)
        self.inverting = inverters(model_dir, methods, settings)
        self.gains = chosen_gains(manifest, edit_gains, inverted=False)
        self.inversion_gains = chosen_gains(manifest, inversion_edit_gains, inverted=True)

    def edit(self, pixels: np.ndarray, columns) -> dict | None:
        """One photo (uint8 [H, W, 3]), each attribute in ``columns`` flipped in turn, by every method: None when
        no face is found, else {"framed": the framed face, "targets": the state asked for per column, "rebuilt":
        {inversion ("encoder" first): face}, "edited": {method: faces in columns' order}, "seconds": {method: from
        detection to its edited faces}}."""
        from facegen import framing, inversion, photo_edit

        started = time.perf_counter()
        faces = framing.detect_faces(pixels)
        if not faces:
            return None
        face = framing.frame_face(pixels, faces[0].landmarks, self.template, self.size)
        noise, probabilities = self.encode(face[None])
        noise, _, found = edit_methods.encoder_inputs(noise, probabilities[0])
        flipped = []
        for j in columns:
            vector = found.copy()
            vector[j] = 1.0 - vector[j]
            flipped.append(vector)
        inputs = [found] + [photo_edit.pushed(found, v, self.gains) for v in flipped]  # as app/edits.py
        generated = self.generate(np.repeat(noise, len(inputs), axis=0), np.stack(inputs))
        encoded_s = time.perf_counter() - started
        rebuilt, outputs = {"encoder": generated[0]}, {}
        for name, inverter in self.inverting.items():
            began = time.perf_counter()
            result = inverter.invert(face, noise[0], found, np.concatenate(
                [inversion.edit_vectors(found, v, self.inversion_gains) for v in flipped]))
            outputs[name] = (result, time.perf_counter() - began)
            rebuilt[name] = result.rebuilt
        edited, seconds = {}, {}
        for method in self.methods:
            began = time.perf_counter()
            inverted = edit_methods.METHODS[method].inversion
            if inverted is None:
                made, rebuild, spent = generated[1:], generated[0], encoded_s
            else:
                result, inverted_s = outputs[inverted]
                made, rebuild, spent = result.edits, result.rebuilt, encoded_s + inverted_s
            edited[method] = [edit_methods.edited_face(method, face, image, rebuild) for image in made]
            seconds[method] = spent + time.perf_counter() - began
        targets = [vector[j] for vector, j in zip(flipped, columns)]
        return {"framed": face, "targets": targets, "rebuilt": rebuilt, "edited": edited, "seconds": seconds}


def edit_success(decisions: np.ndarray, base: np.ndarray, targets, edited: int, names,
                 left_out=None) -> dict:
    """The judge's figures for one attribute's edits. ``decisions`` and ``base``: bool [N, A] readings of the
    edits and of the unedited faces they are compared with, in ``names``' order; ``targets``: the state asked for,
    per edit; ``edited``: the flipped attribute's column. ``changed``: the flipped attribute read as asked;
    ``kept``: the others read as on the unedited face; ``flipped_most``: the others read changed most often;
    with ``left_out`` (the others the judge ties to the edited attribute: confounded), ``kept_unconfounded``."""
    others = [k for k in range(len(names)) if k != edited]
    other_names = [names[k] for k in others]
    agree = decisions[:, others] == base[:, others]
    flips = 1 - agree.mean(axis=0)
    result = {"changed": round(float(np.mean(decisions[:, edited] == attributes.is_on(targets))), 4),
              "kept": round(float(np.mean(agree)), 4),
              "flipped_most": {other_names[n]: round(float(flips[n]), 4)
                               for n in np.argsort(-flips, kind="stable")[:FLIPPED_SHOWN]}}
    if left_out is not None:
        free = [n for n, other in enumerate(other_names) if other not in set(left_out)]
        result["kept_unconfounded"] = round(float(np.mean(agree[:, free])), 4) if free else None
    return result


def checked_request(model_dir, manifest: dict, methods, edit_attributes) -> list:
    """The columns of ``edit_attributes`` (any case) in the model's attributes, or a UsageError naming the flag."""
    if not manifest.get("encoder"):
        raise UsageError(f"--model: {model_dir} has no encoder, so its edits cannot be measured")
    unknown = [m for m in methods if m not in edit_methods.METHODS]
    if unknown:
        raise UsageError(f"--methods: {unknown} are not among {list(edit_methods.METHODS)}")
    names = list(manifest["attributes"])
    lowered = [n.lower() for n in names]
    unknown = [a for a in edit_attributes if a.lower() not in lowered]
    if unknown:
        raise UsageError(f"--edit-attributes: {unknown} are not the model's attributes ({names})")
    return [lowered.index(a.lower()) for a in edit_attributes]


def read_square_photo(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    if pixels.shape[0] != pixels.shape[1]:
        raise UsageError(f"{path}: not a square photo; the held-out photos are the data set's aligned squares")
    return pixels


def measure(model_dir, photo_paths, edit_attributes=DEFAULT_EDITS, classifier=None, progress: bool = True,
            methods=DEFAULT_METHODS, settings=None, edit_gains=None, inversion_edit_gains=None,
            shifts=None) -> dict:
    """Identity (and, with ``classifier``, edit success) over the photos at ``photo_paths`` for each of ``methods``
    (facegen.edit_methods.METHODS); see the module doc. ``settings``: the inversion recipe
    (facegen.inversion.Settings); ``edit_gains`` and ``inversion_edit_gains``: {attribute: gain} (or {"*": gain}:
    all) over the model's own for the encoder's edits and the tuned copy's (facegen.model_folder.edit_gains, what
    is served). ``shifts``: {edited attribute: judge_shifts} for the classifier; with it each edit also gets
    ``kept_unconfounded``."""
    from PIL import Image

    from facegen import model_folder

    manifest = model_folder.read_manifest(model_dir)
    columns = checked_request(model_dir, manifest, methods, edit_attributes)
    names = list(manifest["attributes"])
    editor = Editor(model_dir, manifest, methods, settings, edit_gains, inversion_edit_gains)

    photos, framed, skipped = [], [], 0
    rebuilt = {"encoder": [], **{name: [] for name in editor.inverting}}  # by inversion
    edited = {method: {name: [] for name in edit_attributes} for method in methods}
    seconds = {method: [] for method in methods}
    targets = {name: [] for name in edit_attributes}
    for number, path in enumerate(photo_paths):
        pixels = read_square_photo(path)
        one = editor.edit(pixels, columns)
        if one is None:
            skipped += 1
            continue
        for k, name in enumerate(edit_attributes):
            targets[name].append(one["targets"][k])
            for method in methods:
                edited[method][name].append(one["edited"][method][k])
        for name, face in one["rebuilt"].items():
            rebuilt[name].append(face)
        for method in methods:
            seconds[method].append(one["seconds"][method])
        photos.append(np.asarray(Image.fromarray(pixels).resize((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE),
                                                                Image.Resampling.LANCZOS)))
        framed.append(one["framed"])
        if progress and (number + 1) % 10 == 0:
            print(f"  {number + 1} photos", file=sys.stderr, flush=True)
    if not framed:
        raise UsageError("no face found in any of the photos")

    net = IdentityNet()
    template = editor.template
    # The photos are CelebA-HQ's aligned squares: the same template places their faces (the framing's source).
    reference = net.descriptors(np.stack(photos), template)
    judged_rebuilds = {name: same_person(reference, net.descriptors(np.stack(images), template))
                       for name, images in rebuilt.items()}
    figures = {"framed": same_person(reference, net.descriptors(np.stack(framed), template)),
               "rebuilt": judged_rebuilds.pop("encoder"),
               "stranger": same_person(reference, np.roll(reference, 1, axis=0))}
    if judged_rebuilds:
        figures["rebuilt_by_inversion"] = judged_rebuilds
    if classifier is not None:
        judged = [classifier.column(n) for n in names]  # the judge's columns in the model's order
        on = lambda images: reads_on(classifier.probabilities(np.stack(images)))[:, judged]  # noqa: E731
        bases = {"framed": on(framed), **{name: on(images) for name, images in rebuilt.items()}}
    edits = {}
    for name, j in zip(edit_attributes, columns):
        edits[name] = {}
        for method in methods:
            images = edited[method][name]
            result = same_person(reference, net.descriptors(np.stack(images), template))
            if classifier is not None:
                # The unedited face the other decisions are compared with: the framed photo for the methods that
                # edit it, else the method's own rebuild.
                base = bases[edit_methods.unedited(method)]
                left_out = confounded(shifts[name]) if shifts and name in shifts else None
                result.update(edit_success(on(images), base, targets[name], j, names, left_out))
            edits[name][method] = result
    return _report(figures, edits, framed, skipped, seconds, names, editor, edit_attributes, classifier, shifts)


def _report(figures, edits, framed, skipped, seconds, names, editor, edit_attributes, classifier, shifts) -> dict:
    from facegen import model_folder

    timing = {method: round(float(np.median(values)), 4) for method, values in seconds.items()}
    report = {"photos": len(framed), "no_face": skipped, "same_person_below": SAME_PERSON,
              "network": "dlib face-recognition ResNet (face_recognition_models 0.3.0), template-placed 5-point chip",
              **figures, "edits": edits, "methods": list(editor.methods),
              model_folder.EDIT_GAIN_KEYS[False]: named_gains(names, editor.gains),
              "seconds_per_photo_median": timing.get("photo", max(timing.values())),
              "seconds_per_photo_median_by_method": timing,
              "seconds_note": f"detect + frame + encode + generate {1 + len(edit_attributes)} faces (+ the method's "
                              "inversion, its edits rendered in one call) + the photo edits, in-process, no HTTP"}
    if classifier is not None and shifts:
        report["judge"] = {"held_out_balanced": classifier.info.get("held_out", {}).get("mean_balanced"),
                           "confound_shift": CONFOUND_SHIFT, "confound_group": CONFOUND_GROUP,
                           "confounded": {name: confounded(shifts[name]) for name in edit_attributes
                                          if name in shifts},
                           "shifts": {name: shifts[name] for name in edit_attributes if name in shifts}}
    inverting = editor.inverting
    if inverting:
        pti = inverting["pti"].settings if "pti" in inverting else next(iter(inverting.values())).settings
        report["inversion"] = {"latent_steps": pti.latent_steps, "tune_steps": pti.tune_steps,
                               "latent_rate": pti.latent_rate, "tune_rate": pti.tune_rate,
                               "low_pass_weight": pti.low_pass_weight}
        report[model_folder.EDIT_GAIN_KEYS[True]] = named_gains(names, editor.inversion_gains)
    return report


def chosen_gains(manifest: dict, asked, inverted: bool) -> np.ndarray:
    """float32 [A]: the model's own edit gains (facegen.model_folder.edit_gains) with ``asked`` ({attribute: gain},
    "*" for all) over them."""
    from facegen import model_folder

    names = list(manifest["attributes"])
    asked = dict(asked or {})
    everyone = asked.pop("*", None)
    asked = {**({name: everyone for name in names} if everyone is not None else {}), **asked}
    flag = "--" + model_folder.EDIT_GAIN_KEYS[inverted].replace("_", "-")  # the flag is named after the key
    problem = model_folder.edit_gains_problem(asked, names)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    gains = model_folder.edit_gains(manifest, inverted)
    for name, gain in asked.items():
        gains[names.index(name)] = gain
    return gains


def named_gains(names, gains) -> dict:
    """The gains that are not 1, {attribute: gain}: the manifest's form."""
    return {name: round(float(g), 4) for name, g in zip(names, gains) if g != 1.0}


def format_report(report: dict) -> str:
    lines = [f"identity on {report['photos']} held-out photos (same person: dlib distance < {SAME_PERSON}):"]
    rows = [(key, report[key]) for key in ("framed", "rebuilt", "stranger")]
    rows += [(f"rebuilt ({name})", figures) for name, figures in report.get("rebuilt_by_inversion", {}).items()]
    for key, figures in rows:
        lines.append(f"  {key:<17} same person {figures['same_person']:.3f}, mean distance "
                     f"{figures['mean_distance']:.3f}")
    for name, entry in report["edits"].items():
        for method, r in entry.items():
            extra = f", changed {r['changed']:.3f}, kept {r['kept']:.3f}" if "changed" in r else ""
            if r.get("kept_unconfounded") is not None:
                extra += f" ({r['kept_unconfounded']:.3f} unconfounded)"
            lines.append(f"  {name} edit, method={method:<9} same person {r['same_person']:.3f}, mean distance "
                         f"{r['mean_distance']:.3f}{extra}")
    timing = report.get("seconds_per_photo_median_by_method", {})
    lines.append("  median seconds per photo: " + ", ".join(f"{m} {t:.3f}" for m, t in timing.items()))
    if "inversion" in report:
        lines.append(f"  inversion: {report['inversion']}")
    for name, others in report.get("judge", {}).get("confounded", {}).items():
        lines.append(f"  the judge ties {', '.join(others) or 'nothing'} to {name} (left out of unconfounded)")
    return "\n".join(lines)


def _gains(raw: str) -> dict:
    """--edit-gains: "1.5" (every attribute) or "Male=1.5,Smiling=2" -> {name or "*": gain}."""
    try:
        if "=" not in raw:
            return {"*": float(raw)}
        return {name.strip(): float(value) for name, value in (part.split("=") for part in raw.split(",") if part)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected G or NAME=G,NAME=G..., got {raw!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.identity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model folder with an encoder")
    parser.add_argument("--data", type=Path, required=True, help="the data cache: its test partition is measured")
    parser.add_argument("--photos", type=Path, required=True,
                        help="the folder of the cache's photos (its filenames), read in place")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"held-out photos ({DEFAULT_COUNT})")
    parser.add_argument("--partition", choices=PARTITIONS, default="test",
                        help="the held-out partition measured: choose settings on validation, report on test (test)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"edit methods compared in one run, of {','.join(edit_methods.METHODS)} "
                             f"({','.join(DEFAULT_METHODS)}; facegen/edit_methods.py)")
    inversion = parser.add_argument_group("inversion (methods latent, pti, pti-photo; facegen/inversion.py)")
    for flag, kind, key in (("--latent-steps", int, "latent_steps"), ("--tune-steps", int, "tune_steps"),
                            ("--latent-rate", float, "latent_rate"), ("--tune-rate", float, "tune_rate"),
                            ("--low-pass-weight", float, "low_pass_weight")):
        inversion.add_argument(flag, type=kind, dest=key, help="(facegen.inversion's default)")
    parser.add_argument("--edit-gains", type=_gains, metavar="G|NAME=G,...",
                        help="how far an edit pushes the attributes it changes, for methods generator and photo "
                             "(facegen.photo_edit.pushed): one number for all, or per attribute (default: the "
                             "manifest's encoder.edit_gains, what is served; --write stores the ones measured)")
    parser.add_argument("--inversion-edit-gains", type=_gains, metavar="G|NAME=G,...",
                        help="the same for methods pti and pti-photo (the tuned copy's edits; default: the manifest's "
                             "encoder.inversion_edit_gains)")
    parser.add_argument("--edit-attributes", default=",".join(DEFAULT_EDITS),
                        help=f"attributes flipped one at a time ({','.join(DEFAULT_EDITS)})")
    parser.add_argument("--classifier", type=Path, metavar="FILE.keras",
                        help="attribute classifier for changed/kept (default: evaluate's, beside the cache; trained "
                             "there if missing)")
    parser.add_argument("--no-classifier", action="store_true", help="identity only")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--write", action="store_true", help="also store them in the manifest's metrics.identity")
    args = parser.parse_args(argv)
    try:
        if args.count < 2:
            raise UsageError("--count must be at least 2 (the stranger floor pairs photos)")
        from training.data import load_cache

        cache = load_cache(args.data)
        indices = held_out(cache, args.count, partition=args.partition)
        paths = [args.photos / str(cache.filenames[i]) for i in indices]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UsageError(f"--photos: no {missing[0]}")
        classifier = None
        if not args.no_classifier:
            from training.classifier import obtain_classifier

            classifier = obtain_classifier(cache, args.classifier)
        from dataclasses import replace

        from facegen.inversion import Settings

        chosen = {key: getattr(args, key) for key in ("latent_steps", "tune_steps", "latent_rate", "tune_rate",
                                                      "low_pass_weight") if getattr(args, key) is not None}
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        edit_attributes = [a.strip() for a in args.edit_attributes.split(",") if a.strip()]
        shifts = None
        if classifier is not None:
            from facegen import model_folder

            names = list(model_folder.read_manifest(args.model)["attributes"])
            readings, labels = held_out_readings(cache, classifier, names, leave_out=indices)
            spelled = {n.lower(): n for n in names}  # --edit-attributes match the model's names in any case
            shifts = {name: judge_shifts(readings, labels, names, spelled[name.lower()])
                      for name in edit_attributes if name.lower() in spelled}
        report = measure(args.model, paths, edit_attributes, classifier, methods=methods,
                         settings=replace(Settings(), **chosen), edit_gains=args.edit_gains,
                         inversion_edit_gains=args.inversion_edit_gains, shifts=shifts)
        report["partition"] = args.partition
        report["command"] = " ".join(["python -m training.identity"] + (argv if argv is not None else sys.argv[1:]))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write:
        write_to_manifest(args.model, report)
    return 0


def write_to_manifest(model_dir, report: dict) -> None:
    """--write: the report as the manifest's metrics.identity, and the edit gains it was measured with as the
    encoder's (the report names them as the manifest does): the figures and the gains served are written together."""
    from facegen import model_folder

    manifest = model_folder.read_manifest(model_dir)
    manifest.setdefault("metrics", {})["identity"] = report
    manifest["encoder"].update({key: report[key] for key in model_folder.EDIT_GAIN_KEYS.values() if key in report})
    model_folder.write_manifest(model_dir, manifest)


if __name__ == "__main__":
    sys.exit(main())
