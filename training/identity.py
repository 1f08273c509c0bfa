"""Does an edited photo still show the same person? Identity measured by a face-recognition network.

    python -m training.identity --model models/celeba-hq-64 --data data/celeba-hq-64.npz \
        --photos ../shared/data/celeba-hq-128/CelebA-HQ-img [--count 200] [--edit-attributes Male,Smiling,Eyeglasses]

Held-out photos (the cache's test partition, read in place from --photos) go through what /api/edit does, with the
same code: MTCNN finds and frames the face (facegen.framing), the SavedModel's encoder and generator give the
rebuilt face G(z, found) and each one-attribute edit G(z, flipped), and method=photo makes the edit a change to the
framed photo (facegen.photo_edit). Each image is then compared with the photo by dlib's face-recognition ResNet
(``face_recognition_models``, weights inside the wheel; dlib's documented rule: descriptors closer than
:data:`SAME_PERSON` are the same person):

- ``framed``: the framed input itself, the ceiling (what the model's resolution leaves of the person);
- ``rebuilt``: the encoder's rebuild; ``edit_generator`` / ``edit_photo``: edits by method=generator / photo;
- ``stranger``: another held-out photo, the floor (test photos of one person may repeat: a slight overestimate).

For each: the share called the same person and the mean distance. With an attribute classifier (--classifier, or
trained beside the cache as evaluate does) each edit also gets ``changed`` (the classifier reads the flipped
attribute in its new state) and ``kept`` (its other decisions equal those on the unedited face: the rebuild for
method=generator, the framed photo for method=photo). The network is an evaluation judge only: nothing here or in
training optimises against it, or the figure would stop meaning anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from training.usage_error import UsageError

SAME_PERSON = 0.6  # dlib's threshold for its face-recognition descriptors (99.38% on LFW)
DESCRIPTOR_SIDE = 256  # aligned faces are enlarged to this before dlib's 5-point predictor and 150 px face chip
DEFAULT_COUNT = 200
DEFAULT_EDITS = ("Male", "Smiling", "Eyeglasses")


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


def held_out(cache, count: int, seed: int = 0) -> np.ndarray:
    """``count`` indices of the cache's test partition (else validation), drawn with ``seed``, sorted."""
    partition = np.asarray(cache.partition)
    photos = np.flatnonzero(partition == 2)
    if len(photos) == 0:
        photos = np.flatnonzero(partition == 1)
    if len(photos) == 0:
        raise UsageError("--data: the cache has no test or validation partition to measure held-out photos on")
    if len(photos) > count:
        photos = np.sort(np.random.RandomState(seed).choice(photos, count, replace=False))
    return photos


def measure(model_dir, photo_paths, edit_attributes=DEFAULT_EDITS, classifier=None, progress: bool = True) -> dict:
    """Identity (and, with ``classifier``, edit success) over the photos at ``photo_paths``; see the module doc."""
    from PIL import Image

    from facegen import framing, model_folder, photo_edit

    manifest = model_folder.read_manifest(model_dir)
    if not manifest.get("encoder"):
        raise UsageError(f"--model: {model_dir} has no encoder, so its edits cannot be measured")
    names = list(manifest["attributes"])
    lowered = [n.lower() for n in names]
    unknown = [a for a in edit_attributes if a.lower() not in lowered]
    if unknown:
        raise UsageError(f"--edit-attributes: {unknown} are not the model's attributes ({names})")
    columns = [lowered.index(a.lower()) for a in edit_attributes]
    template = framing.check_template(manifest["encoder"]["framing"]["landmarks"])
    size = int(manifest["resolution"])
    generate, loaded = model_folder.load_generate(model_dir)
    encode = model_folder.load_encode(model_dir, loaded)

    photos, framed, rebuilt, seconds = [], [], [], []
    generated = {name: [] for name in edit_attributes}
    edited = {name: [] for name in edit_attributes}
    targets = {name: [] for name in edit_attributes}
    skipped = 0
    for number, path in enumerate(photo_paths):
        with Image.open(path) as opened:
            pixels = np.asarray(opened.convert("RGB"))
        started = time.perf_counter()
        faces = framing.detect_faces(pixels)
        if not faces:
            skipped += 1
            continue
        face = framing.frame_face(pixels, faces[0].landmarks, template, size)
        noise, probabilities = encode(face[None])
        found = (probabilities[0] >= 0.5).astype(np.float32)
        vectors = [found]
        for j in columns:
            flipped = found.copy()
            flipped[j] = 1.0 - flipped[j]
            vectors.append(flipped)
        faces_out = generate(np.repeat(noise, len(vectors), axis=0), np.stack(vectors))
        for k, name in enumerate(edit_attributes):
            generated[name].append(faces_out[k + 1])
            edited[name].append(photo_edit.photo_edit(face, faces_out[k + 1], faces_out[0]))
            targets[name].append(vectors[k + 1][columns[k]])
        seconds.append(time.perf_counter() - started)
        if pixels.shape[0] != pixels.shape[1]:
            raise UsageError(f"{path}: not a square photo; the held-out photos are the data set's aligned squares")
        photos.append(np.asarray(Image.fromarray(pixels).resize((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE),
                                                                Image.Resampling.LANCZOS)))
        framed.append(face)
        rebuilt.append(faces_out[0])
        if progress and (number + 1) % 25 == 0:
            print(f"  {number + 1} photos", file=sys.stderr, flush=True)
    if not framed:
        raise UsageError("no face found in any of the photos")

    net = IdentityNet()
    # The photos are CelebA-HQ's aligned squares: the same template places their faces (the framing's source).
    reference = net.descriptors(np.stack(photos), template)
    figures = {"framed": same_person(reference, net.descriptors(np.stack(framed), template)),
               "rebuilt": same_person(reference, net.descriptors(np.stack(rebuilt), template)),
               "stranger": same_person(reference, np.roll(reference, 1, axis=0))}
    edits = {}
    if classifier is not None:
        framed_on = classifier.probabilities(np.stack(framed)) > 0.5
        rebuilt_on = classifier.probabilities(np.stack(rebuilt)) > 0.5
        judged = [classifier.column(n) for n in names]
    for name in edit_attributes:
        entry = {}
        for method, images in (("generator", generated[name]), ("photo", edited[name])):
            result = same_person(reference, net.descriptors(np.stack(images), template))
            if classifier is not None:
                on = classifier.probabilities(np.stack(images)) > 0.5
                j = [n.lower() for n in names].index(name.lower())
                base = rebuilt_on if method == "generator" else framed_on
                others = [judged[k] for k in range(len(names)) if k != j]
                result["changed"] = round(float(np.mean(on[:, judged[j]] == (np.asarray(targets[name]) > 0.5))), 4)
                result["kept"] = round(float(np.mean(on[:, others] == base[:, others])), 4)
            entry[method] = result
        edits[name] = entry
    return {"photos": len(framed), "no_face": skipped, "same_person_below": SAME_PERSON,
            "network": "dlib face-recognition ResNet (face_recognition_models 0.3.0), template-placed 5-point chip",
            **figures, "edits": edits,
            "seconds_per_photo_median": round(float(np.median(seconds)), 4),
            "seconds_note": f"detect + frame + encode + generate {1 + len(edit_attributes)} faces + the photo "
                            "edits, in-process, no HTTP"}


def format_report(report: dict) -> str:
    lines = [f"identity on {report['photos']} held-out photos (same person: dlib distance < {SAME_PERSON}):"]
    for key in ("framed", "rebuilt", "stranger"):
        lines.append(f"  {key:<10} same person {report[key]['same_person']:.3f}, mean distance "
                     f"{report[key]['mean_distance']:.3f}")
    for name, entry in report["edits"].items():
        for method, r in entry.items():
            extra = f", changed {r['changed']:.3f}, kept {r['kept']:.3f}" if "changed" in r else ""
            lines.append(f"  {name} edit, method={method:<9} same person {r['same_person']:.3f}, mean distance "
                         f"{r['mean_distance']:.3f}{extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.identity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model folder with an encoder")
    parser.add_argument("--data", type=Path, required=True, help="the data cache: its test partition is measured")
    parser.add_argument("--photos", type=Path, required=True,
                        help="the folder of the cache's photos (its filenames), read in place")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"held-out photos ({DEFAULT_COUNT})")
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
        indices = held_out(cache, args.count)
        paths = [args.photos / str(cache.filenames[i]) for i in indices]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UsageError(f"--photos: no {missing[0]}")
        classifier = None
        if not args.no_classifier:
            from training.classifier import obtain_classifier

            classifier = obtain_classifier(cache, args.classifier)
        report = measure(args.model, paths, [a.strip() for a in args.edit_attributes.split(",") if a.strip()],
                         classifier)
        report["command"] = " ".join(["python -m training.identity"] + (argv if argv is not None else sys.argv[1:]))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write:
        from facegen import model_folder

        manifest = model_folder.read_manifest(args.model)
        manifest.setdefault("metrics", {})["identity"] = report
        model_folder.write_manifest(args.model, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
