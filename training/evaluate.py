"""``evaluate``: measure a generator's quality and write the figures into its manifest's ``metrics``.

  python -m training evaluate --model MODEL_DIR --data CACHE.npz|CELEBA_DIR [--classifier FILE.keras]
                              [--samples 2000] [--seed 0] [--inception-weights FILE.h5] [--json OUT.json]

--model loads the exported SavedModel (TensorFlow); --run rebuilds the generator from a training run's checkpoint
on whatever Keras backend is active (so a JAX machine without TensorFlow can evaluate), and writes no manifest.
The judge is an attribute classifier trained on the data's training partition (training/classifier.py), loaded
from --classifier (default: beside the data cache) when it exists, trained and saved there otherwise. The metrics
are the registry in training/quality.py. A model with an encoder is also measured on held-out photos (the cache's
test partition): encoder_attributes, encoder_reconstruction, encoder_edit.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from facegen import model_folder
from facegen.model_folder import to_uint8
from training import run_folder
from training.arguments import at_least, between, existing_file, existing_folder, existing_path, keras_file
from training.usage_error import UsageError
from training.timestamps import utc_now

DEFAULT_SAMPLES = 2000
DEFAULT_ATTRIBUTE_SAMPLES = 500
DEFAULT_ENCODER_SAMPLES = 500


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=existing_folder("model"),
                        help="exported model folder (SavedModel + manifest.json)")
    source.add_argument("--run", type=existing_folder("run"),
                        help="training run folder: evaluate its latest checkpoint (EMA weights)")
    parser.add_argument("--data", required=True, type=existing_path,
                        help="data cache (.npz from `prepare`) or CelebA-layout folder: the real faces to compare "
                             "with and to train the attribute classifier on")
    parser.add_argument("--classifier", type=keras_file, metavar="FILE.keras",
                        help="attribute classifier: loaded if it exists, else trained and saved there "
                             "(default: <cache>.classifier.keras beside the data cache)")
    parser.add_argument("--samples", type=at_least(2), default=DEFAULT_SAMPLES,
                        help=f"generated (and at most as many held-out real) images for the distribution metrics "
                             f"(default {DEFAULT_SAMPLES})")
    parser.add_argument("--attribute-samples", type=at_least(2), metavar="N",
                        help=f"images per attribute for attribute_accuracy, half with it on, half off "
                             f"(default: min(--samples, {DEFAULT_ATTRIBUTE_SAMPLES}))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and attribute draws (default 0)")
    parser.add_argument("--metrics", metavar="NAME,...",
                        help="metrics to compute (default: all): attribute_accuracy, attribute_accuracy_real_rows, "
                             "frechet_distance, diversity, fid_inception; with an encoder encoder_attributes, "
                             "encoder_reconstruction, encoder_edit; with --photos identity")
    parser.add_argument("--encoder-samples", type=at_least(2), metavar="N",
                        help=f"held-out photos (test partition) the encoder figures use "
                             f"(default: min(--samples, {DEFAULT_ENCODER_SAMPLES}))")
    parser.add_argument("--edit-attributes", metavar="NAME,...",
                        help="attributes encoder_edit flips (default: all of the model's)")
    parser.add_argument("--inception-weights", type=existing_file, metavar="FILE.h5",
                        help="InceptionV3 weights without the top, for the usual FID (never downloaded)")
    parser.add_argument("--judge-size", type=int, choices=(64, 128),
                        help="side the attribute classifier judges faces at (default: 128 for a model of 128 px or "
                             "more, else 64); 128 needs a 128 px data cache")
    parser.add_argument("--serve-size", type=between(16, 1024), metavar="PX",
                        help="judge the model's faces enlarged (or reduced) to PX by the service's resize rule, as "
                             "/api/face?size=PX serves them: compare a 64 px model with a 128 px one")
    parser.add_argument("--photos", type=existing_folder("photos"), metavar="DIR",
                        help="the folder of the data cache's photo files, read in place: with a --model and dlib "
                             "installed (requirements-train.txt), the identity metric measures its edits on them")
    parser.add_argument("--identity-photos", type=at_least(2), default=200, metavar="N",
                        help="test-partition photos the identity metric measures (default 200)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the metrics to this file")
    parser.add_argument("--no-write", action="store_true", help="do not write the metrics into manifest.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--batch-size", type=at_least(2), default=128, help="generator batch size (default 128)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where a CelebA folder given as --data is prepared (default: $FACEGEN_CACHE_DIR or "
                             "~/.cache/facegen, as `train` does)")
    parser.add_argument("--classifier-epochs", type=at_least(1), default=3,
                        help="epochs when training the classifier (3)")
    parser.add_argument("--classifier-seconds", type=at_least(0.0), default=0.0,
                        help="time budget of the classifier's training in seconds (0 = none, the default: a judge cut "
                             "short by time differs from machine to machine)")


# -- generators ------------------------------------------------------------------------------------------------
def keras_generate(generator):
    """generate(noise, attrs) -> uint8 images for a Keras generator, rounded exactly as the exported graph does."""

    def generate(noise, attrs):
        return to_uint8(generator.predict_on_batch([noise, attrs]))

    return generate


def keras_encode(encoder):
    """encode(uint8 images) -> (noise, attribute probabilities) for a Keras encoder, as the exported graph does."""

    def encode(images):
        z, logits = encoder.predict_on_batch(model_folder.from_uint8(images))
        logits = np.asarray(logits, np.float64)
        return np.asarray(z, np.float32), (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    return encode


def saved_model_generate(model_dir: Path, with_encoder: bool = False):
    try:
        generate, loaded = model_folder.load_generate(model_dir)
        encode = model_folder.load_encode(model_dir, loaded) if with_encoder else None
    except Exception as error:
        raise UsageError(f"--model: {model_dir} holds no loadable SavedModel ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    generate.keep_alive = loaded  # the function needs its object alive
    if encode is not None:
        encode.keep_alive = loaded
    return generate, encode


def served_at(generate, size: int):
    """``generate`` whose faces come back at ``size`` px by the service's resize rule."""
    from facegen.model_folder import resize_face

    def resized(noise, attrs):
        return np.stack([resize_face(face, size) for face in np.asarray(generate(noise, attrs))])

    return resized


def open_model(args) -> dict:
    """What evaluate needs of the model (--model's SavedModel, or --run's checkpoint): generate, latent size,
    resolution, attributes, marginals, description."""
    if args.model is not None:
        manifest = model_folder.read_manifest(args.model)
        attributes = list(manifest.get("attributes", []))
        generate, encode = saved_model_generate(args.model, with_encoder=bool(manifest.get("encoder")))
        return {"generate": generate, "encode": encode, "latent_size": int(manifest["latent_size"]),
                "resolution": int(manifest["resolution"]), "attributes": attributes,
                "frequencies": manifest.get("attribute_frequencies") or [0.5] * len(attributes),
                "name": manifest.get("name", args.model.name), "manifest": manifest}
    generator, config, run_info, meta, group = run_folder.load_run_generator(args.run)
    encoder = run_folder.load_run_encoder(args.run, config)
    attributes = list(config.attributes)
    return {"generate": keras_generate(generator), "encode": keras_encode(encoder) if encoder is not None else None,
            "latent_size": config.latent_size, "resolution": config.resolution,
            "attributes": attributes,
            "frequencies": run_info.get("attribute_frequencies") or [0.5] * len(attributes),
            "name": f"{args.run.name} (step {meta.get('step')}, {'EMA' if group == 'g_ema' else 'raw'} weights)",
            "manifest": None}


def open_data(args, resolution: int):
    from training.data import load_cache, open_dataset, user_cache_dir

    if args.data.is_file():
        return load_cache(args.data)  # any size: the classifier sees 64x64 whatever the cache holds
    cache_dir = args.cache_dir or user_cache_dir()
    return open_dataset(args.data, resolution, cache_dir, progress=not args.no_progress)


def attribute_columns(model_attributes, data_names, what="the model") -> list:
    lowered = {name.lower(): i for i, name in enumerate(data_names)}
    missing = [a for a in model_attributes if a.lower() not in lowered]
    if missing:
        raise UsageError(f"{what}'s attributes {missing} are not in the data; it has {list(data_names)}")
    return [lowered[a.lower()] for a in model_attributes]


def command_line(args) -> str:
    """The command, rebuilt from the parsed arguments (so it is right however evaluate was invoked)."""
    parts = ["python", "-m", "training", "evaluate"]
    parts += ["--model", str(args.model)] if args.model is not None else ["--run", str(args.run)]
    parts += ["--data", str(args.data)]
    for flag, value in (("--classifier", args.classifier), ("--samples", args.samples),
                        ("--attribute-samples", args.attribute_samples), ("--seed", args.seed),
                        ("--metrics", args.metrics), ("--encoder-samples", args.encoder_samples),
                        ("--edit-attributes", args.edit_attributes), ("--inception-weights", args.inception_weights),
                        ("--json", args.json)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [flag for flag, on in (("--no-write", args.no_write), ("--no-progress", args.no_progress)) if on]
    return " ".join(shlex.quote(p) for p in parts)


def encoder_inputs(args, model, cache, columns) -> dict:
    """The Context fields of a model with an encoder: its encode function and the held-out photos it is measured on,
    from the cache's test partition (else validation, else the classifier's hold-out), at the model's resolution."""
    from training.classifier import resize_images, split_indices
    from training.data import held_out_rows

    photos, partition_name = held_out_rows(cache.partition)
    source = f"{partition_name} partition"
    if len(photos) == 0:
        photos, source = split_indices(cache.partition)[1], "random 10% hold-out"
    count = args.encoder_samples or min(args.samples, DEFAULT_ENCODER_SAMPLES)
    if len(photos) > count:
        photos = np.sort(np.random.RandomState(args.seed + 5).choice(photos, count, replace=False))
    edit = None
    if args.edit_attributes:
        edit = [n.strip() for n in args.edit_attributes.split(",") if n.strip()]
        lowered = [a.lower() for a in model["attributes"]]
        unknown = [n for n in edit if n.lower() not in lowered]
        if unknown:
            raise UsageError(f"--edit-attributes: {unknown} are not the model's attributes ({model['attributes']})")
        edit = [model["attributes"][lowered.index(n.lower())] for n in edit]  # the model's spelling
    images = resize_images(cache.images[photos], model["resolution"])
    return {"encode": model["encode"], "encoder_images": images,
            "encoder_attributes": np.asarray(cache.attributes[photos][:, columns], np.float32),
            "edit_attributes": edit, "source": source}


def identity_photo_files(args, cache) -> list | None:
    """The files of --identity-photos test photos in --photos, for the identity metric (None without --photos or a
    --model: the metric is then skipped)."""
    if args.photos is None or args.model is None:
        return None
    from training.identity import held_out

    paths = [args.photos / str(cache.filenames[i]) for i in held_out(cache, args.identity_photos)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"--photos: no {missing[0].name} in {args.photos} (the folder --data was prepared from?)")
    return paths


# -- the command -----------------------------------------------------------------------------------------------
def run(args) -> int:
    """evaluate: the model, the real photos and the judge, the metrics, then the report (printed, --json, manifest).
    The flags were checked as they were read (training.arguments)."""
    start = time.monotonic()
    from training import quality as registry

    names = metric_names(args.metrics, registry.METRICS)
    model = open_model(args)
    if args.serve_size is not None:
        model["generate"] = served_at(model["generate"], args.serve_size)
        model["encode"] = None  # the encoder's figures belong to the model at its own size
    judge_size = args.judge_size or (128 if (args.serve_size or model["resolution"]) >= 128 else 64)
    cache = open_data(args, model["resolution"])
    columns = attribute_columns(model["attributes"], cache.attribute_names)
    classifier = open_judge(args, cache, judge_size, model["attributes"])
    held = real_rows(args, cache)
    attribute_samples = args.attribute_samples or min(args.samples, DEFAULT_ATTRIBUTE_SAMPLES)
    encoder = encoder_inputs(args, model, cache, columns) if model.get("encode") is not None else {}
    context = registry.Context(
        generate=model["generate"], latent_size=model["latent_size"], attributes=model["attributes"],
        frequencies=np.asarray(model["frequencies"], np.float32), real_images=cache.images[held],
        real_attributes=np.asarray(cache.attributes[held][:, columns], np.float32), classifier=classifier,
        samples=args.samples, attribute_samples=attribute_samples, seed=args.seed, batch_size=args.batch_size,
        inception_weights=args.inception_weights, progress=not args.no_progress,
        model_dir=args.model, identity_photos=identity_photo_files(args, cache),
        **{k: v for k, v in encoder.items() if k != "source"})
    if not args.no_progress:
        print(f"evaluating {model['name']}: {args.samples} samples, {attribute_samples} per attribute, "
              f"{len(held)} held-out real images", flush=True)
    results = registry.compute_metrics(names, context)
    report = build_report(args, results, model, cache, classifier, attribute_samples, held, encoder, start)
    print(format_report(report, model["name"]), flush=True)
    write_report(args, report)
    return 0


def metric_names(text: str | None, known: dict) -> list | None:
    """--metrics as a list of registered metric names (None: all of them)."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--metrics: unknown metric(s) {unknown}; known: {sorted(known)}")
    return names


def open_judge(args, cache, judge_size: int, attributes):
    """The attribute classifier that judges at ``judge_size`` px: loaded from --classifier (or beside the cache), or
    trained on the cache's training partition and saved there."""
    from training.classifier import obtain_classifier

    if judge_size > 64 and cache.images.shape[1] < judge_size:  # the 64 px judge has always taken any size
        raise UsageError(f"--data: the cache holds {cache.images.shape[1]} px photos; judging at {judge_size} px "
                         f"needs a cache prepared with --size {judge_size}")
    classifier = obtain_classifier(cache, args.classifier, progress=not args.no_progress, input_size=judge_size,
                                   epochs=args.classifier_epochs,
                                   max_seconds=args.classifier_seconds or None)
    attribute_columns(attributes, classifier.attribute_names, what="the model")
    return classifier


def real_rows(args, cache):
    """The held-out real photos the generated faces are compared with: the classifier's own hold-out (photos it
    never trained on), at most --samples of them, seeded."""
    from training.classifier import split_indices

    _, held = split_indices(cache.partition)
    if len(held) > args.samples:
        held = np.sort(np.random.RandomState(args.seed).choice(held, args.samples, replace=False))
    if len(held) < 2:
        raise UsageError(f"the data has {len(held)} held-out images: too few to compare with")
    return held


def build_report(args, results: dict, model: dict, cache, classifier, attribute_samples: int, held, encoder: dict,
                 start: float) -> dict:
    """The metrics with what they were measured on and how: the judge, the sample sizes, the data, the command."""
    meta = cache.meta or {}
    info = classifier.info
    return {
        **results,
        "classifier": {"path": str(classifier.path) if classifier.path else None,
                       "ceiling": classifier.ceiling(model["attributes"]),
                       "ceiling_mean_all": info.get("held_out", {}).get("mean_balanced"),
                       "held_out_images": info.get("held_out", {}).get("images"),
                       "trained_images": info.get("trained", {}).get("images"),
                       "input_size": classifier.input_size},
        "samples": {"generated": args.samples, "per_attribute": attribute_samples, "real": int(len(held)),
                    **({"encoded": int(len(encoder["encoder_images"])), "encoded_from": encoder["source"]}
                       if encoder else {})},
        "dataset": {"name": meta.get("dataset_name", Path(str(args.data)).stem), "images": int(len(cache.images)),
                    "synthetic": bool(meta.get("synthetic")), "source": str(meta.get("source", args.data))},
        "seed": args.seed,
        "date": utc_now(),
        "command": command_line(args),
        "seconds": round(time.monotonic() - start, 1),
    }


def write_report(args, report: dict) -> None:
    """--json, and the manifest's metrics (a --model unless --no-write; a --run has no manifest)."""
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.model is not None and not args.no_write:
        manifest = model_folder.read_manifest(args.model)  # re-read: never write back a stale copy
        manifest["metrics"] = kept_figures(manifest.get("metrics") or {}, report)
        model_folder.write_manifest(args.model, manifest)
        print(f"wrote the metrics into {args.model / model_folder.MANIFEST}")
    elif args.run is not None and not args.no_progress:
        print("(--run: no manifest to write; export the run and evaluate --model to record the metrics)")


def kept_figures(before: dict, report: dict) -> dict:
    """The new report, except that a metric skipped now (e.g. identity without --photos or dlib) keeps the figure a
    previous measurement wrote: an evaluate run for other figures must not wipe it."""
    merged = dict(report)
    for name, figure in before.items():
        skipped = not isinstance(report.get(name), dict) or "skipped" in report[name]
        if name in report and skipped and isinstance(figure, dict) and "skipped" not in figure:
            merged[name] = figure
    return merged


def _f(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def format_encoder(report: dict) -> list:
    lines = []
    attributes = report.get("encoder_attributes")
    if attributes is not None and "skipped" not in attributes:
        lines.append(f"encoder attributes on {attributes['photos']} held-out photos: balanced accuracy "
                     f"{_f(attributes['mean_balanced'])}; " + ", ".join(
                         f"{a} {_f(r['balanced'])}" for a, r in attributes["per_attribute"].items()))
    rebuilt = report.get("encoder_reconstruction")
    if rebuilt is not None and "skipped" not in rebuilt:
        lines.append(f"encoder reconstruction: PSNR {_f(rebuilt['psnr'], 2)} dB (true attributes "
                     f"{_f(rebuilt['psnr_true_attributes'], 2)}, random code {_f(rebuilt['psnr_random_code'], 2)}); "
                     f"feature distance {_f(rebuilt['feature_distance'])} = {_f(rebuilt['feature_ratio'])} of two "
                     f"different photos'")
    edit = report.get("encoder_edit")
    if edit is not None and "skipped" not in edit:
        identity = edit["identity"]
        lines.append(f"encoder edits: changed {_f(edit['changed'])}, others kept {_f(edit['kept'])}, success "
                     f"{_f(edit['success'])}; identity (centred feature cosine) edit-rebuild "
                     f"{_f(identity['edit_rebuild'])}, edit-photo {_f(identity['edit_photo'])}, two different "
                     f"photos {_f(identity['different_photos'])}")
        for attr, row in edit["per_attribute"].items():
            lines.append(f"  {attr}: changed {_f(row['changed'])} (to on {_f(row['to_on'])}, to off "
                         f"{_f(row['to_off'])}), kept {_f(row['kept'])}, success {_f(row['success'])}")
    for key in ("encoder_attributes", "encoder_reconstruction", "encoder_edit"):
        if report.get(key, {}).get("skipped") and "no encoder" not in report[key]["skipped"]:
            lines.append(f"{key}: skipped ({report[key]['skipped']})")
    return lines


def format_report(report: dict, name: str) -> str:
    lines = [f"== evaluation of {name} ==",
             f"data: {report['dataset']['name']} ({report['dataset']['images']} images"
             f"{', synthetic' if report['dataset']['synthetic'] else ''}); seed {report['seed']}; "
             f"{report['samples']['generated']} generated, {report['samples']['real']} held-out real"]
    acc = report.get("attribute_accuracy")
    if acc is not None:
        if "skipped" in acc:
            lines.append(f"attribute accuracy: skipped ({acc['skipped']})")
        else:
            lines.append(f"attribute accuracy ({acc['samples_per_attribute']} samples each, balanced over on/off):")
            width = max([9] + [len(n) for n in acc["per_attribute"]])
            lines.append(f"  {'attribute':<{width}}  model    on     off    ceiling")
            for attr, row in acc["per_attribute"].items():
                lines.append(f"  {attr:<{width}}  {_f(row['accuracy'])}  {_f(row['on'])}  {_f(row['off'])}  "
                             f"{_f(row['ceiling'])}")
            lines.append(f"  {'mean':<{width}}  {_f(acc['mean'])}  {'':5}  {'':5}  {_f(acc['ceiling_mean'])}"
                         f"   ({_f(acc['relative_to_ceiling'])} of the ceiling)")
    rows = report.get("attribute_accuracy_real_rows")
    if rows is not None and "skipped" not in rows:
        lines.append(f"attribute accuracy on real attribute rows ({rows['samples']} faces): mean {_f(rows['mean'])}; "
                     + ", ".join(f"{a} {_f(r['accuracy'])}" for a, r in rows["per_attribute"].items()))
    fd = report.get("frechet_distance")
    if fd is not None:
        lines.append(f"frechet distance (classifier features): {_f(fd['value'])}   "
                     f"(real vs real, split half: {_f(fd['real_split_half'])})")
    div = report.get("diversity")
    if div is not None:
        lines.append(f"diversity: feature spread {_f(div['feature_ratio'])} of real, pixel spread "
                     f"{_f(div.get('pixel_ratio'))} of real, near-duplicate pairs {_f(div['near_duplicate_fraction'])} "
                     f"(real {_f(div['real_near_duplicate_fraction'])}) -> "
                     f"{'COLLAPSED' if div['collapsed'] else 'ok'}")
    lines += format_encoder(report)
    fid = report.get("fid_inception")
    if fid is not None:
        lines.append(f"FID (InceptionV3): skipped ({fid['skipped']})" if "skipped" in fid
                     else f"FID (InceptionV3): {_f(fid['value'])}")
    lines.append(f"({report['seconds']:.0f} s)")
    return "\n".join(lines)
