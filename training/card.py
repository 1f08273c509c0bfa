"""``card``: a model folder's pictures and MODEL_CARD.md, written from its manifest (the one source of truth).

MODEL_DIR/
  samples.png      8x8 faces for seeds 0..63, exactly as the service serves them (attributes sampled per seed)
  attributes.png   one row per attribute: for the same seeds, the attribute off then on
  loss_curves.png  copied from the run (--run), with training.gif where it is small enough for git
  MODEL_CARD.md    data, training, per-attribute accuracy against the classifier's ceiling, Frechet distance,
                   diversity, the baseline's figures beside ours (--baseline), the pictures and --notes

Run `evaluate --model MODEL_DIR` first: the card reports the metrics the manifest holds.
"""

import json
import shutil
from pathlib import Path

from facegen import attributes as attributes_module
from facegen import model_folder
from training.errors import UsageError

GIF_LIMIT_BYTES = 3_000_000


def add_arguments(parser):
    parser.add_argument("--model", required=True, type=Path, help="an exported model folder (with manifest.json)")
    parser.add_argument("--run", type=Path, help="the training run it came from: copies loss curves and the GIF")
    parser.add_argument("--baseline", type=Path, metavar="JSON",
                        help="the baseline's `evaluate --json` output, shown beside this model's figures")
    parser.add_argument("--baseline-name", default="baseline", help="the baseline's column title")
    parser.add_argument("--baseline-training", type=Path, metavar="RUN_JSON",
                        help="the baseline run's run.json + checkpoint meta, for its training figures")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended as the card's notes (weaknesses etc.)")
    parser.add_argument("--columns", type=int, default=4, help="seeds per row of the attribute grid (default 4)")


def run(args) -> int:
    if not (args.model / model_folder.MANIFEST).is_file():
        raise UsageError(f"--model: {args.model} holds no {model_folder.MANIFEST} (export a run there first)")
    for path, flag in ((args.run, "--run"), (args.baseline, "--baseline"), (args.notes, "--notes")):
        if path is not None and not path.exists():
            raise UsageError(f"{flag}: no such file or folder: {path}")
    if args.columns < 1:
        raise UsageError("--columns must be at least 1")
    manifest = model_folder.read_manifest(args.model)
    baseline = _read_json(args.baseline, "--baseline") if args.baseline else None
    pictures = write_pictures(args.model, args.columns)
    if args.run is not None:
        for name in ("loss_curves.png", "training.gif"):
            source = args.run / name
            if source.is_file() and (name != "training.gif" or source.stat().st_size <= GIF_LIMIT_BYTES):
                shutil.copyfile(source, args.model / name)
                pictures.append(name)
    notes = args.notes.read_text() if args.notes else ""
    baseline_training = _read_json(args.baseline_training, "--baseline-training") if args.baseline_training else None
    text = render_card(manifest, pictures, baseline, args.baseline_name, baseline_training, notes)
    (args.model / model_folder.CARD).write_text(text)
    print(f"wrote {args.model / model_folder.CARD} and {', '.join(pictures)}")
    return 0


def _read_json(path: Path, flag: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{flag}: {path} is not readable JSON ({error})") from None


# -- pictures ----------------------------------------------------------------------------------------------------
def write_pictures(model_dir: Path, columns: int) -> list:
    """samples.png and attributes.png, drawn with the service's seed rule, so seed N is the face the service shows."""
    import numpy as np
    from PIL import Image, ImageDraw

    from training.report import grid

    manifest = model_folder.read_manifest(model_dir)
    generate, _loaded = model_folder.load_generate(model_dir)

    table = attributes_module.AttributeTable.from_manifest(manifest.get("attribute_table"), manifest["attributes"])

    def seed_inputs(seed):  # what the service draws for ?seed=N with no attrs
        noise, vector, _ = attributes_module.seed_face(seed, manifest["latent_size"], 1.0,
                                                       manifest["attribute_frequencies"], table)
        return noise, vector

    inputs = [seed_inputs(seed) for seed in range(64)]
    images = generate(np.stack([z for z, _ in inputs]), np.stack([a for _, a in inputs]))
    grid(images, 8).save(model_dir / "samples.png")
    written = ["samples.png"]

    attributes = manifest["attributes"]
    if attributes:
        size = manifest["resolution"]
        label_width, pad = 120, 2
        card = Image.new("RGB", (label_width + 2 * columns * (size + pad), len(attributes) * (size + pad) + 16),
                         "white")
        draw = ImageDraw.Draw(card)
        for c in range(columns):
            draw.text((label_width + 2 * c * (size + pad) + 4, 2), f"seed {c}: off | on", fill="black")
        noise, attrs = zip(*[seed_inputs(seed) for seed in range(columns)])
        noise, attrs = np.stack(noise), np.stack(attrs)
        for row, name in enumerate(attributes):
            off, on = attrs.copy(), attrs.copy()
            off[:, row], on[:, row] = 0.0, 1.0
            faces = generate(np.concatenate([noise, noise]), np.concatenate([off, on]))
            y = 16 + row * (size + pad)
            draw.text((4, y + size // 2 - 6), name, fill="black")
            for c in range(columns):
                for k, face in enumerate((faces[c], faces[columns + c])):
                    card.paste(Image.fromarray(face), (label_width + (2 * c + k) * (size + pad), y))
        card.save(model_dir / "attributes.png")
        written.append("attributes.png")
    return written


# -- the card ----------------------------------------------------------------------------------------------------
def _f(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metric_rows(ours: dict, baseline: dict | None) -> list:
    def pick(report, *keys):
        for key in keys:
            report = (report or {}).get(key)
        return report

    rows = [
        ("attribute accuracy, mean over attributes (balanced on/off)", ("attribute_accuracy", "mean")),
        ("attribute accuracy on real attribute rows, mean", ("attribute_accuracy_real_rows", "mean")),
        ("classifier ceiling, mean over the same attributes", ("attribute_accuracy", "ceiling_mean")),
        ("Frechet distance in the classifier's feature space (lower is better)", ("frechet_distance", "value")),
        ("  real vs real, split half (the floor at this sample size)", ("frechet_distance", "real_split_half")),
        ("diversity: feature spread relative to real (1 = as varied as real)", ("diversity", "feature_ratio")),
        ("diversity: pixel spread relative to real", ("diversity", "pixel_ratio")),
        ("near-duplicate pairs (real set's value in brackets)", ("diversity", "near_duplicate_fraction")),
    ]
    lines = []
    for title, keys in rows:
        value = pick(ours, *keys)
        cell = _f(value)
        if keys == ("diversity", "near_duplicate_fraction"):
            cell += f" ({_f(pick(ours, 'diversity', 'real_near_duplicate_fraction'))})"
        line = f"| {title} | {cell} |"
        if baseline is not None:
            line += f" {_f(pick(baseline, *keys))} |"
        lines.append(line)
    collapsed = pick(ours, "diversity", "collapsed")
    line = f"| mode collapse | {'yes' if collapsed else 'no' if collapsed is not None else 'n/a'} |"
    if baseline is not None:
        b = pick(baseline, "diversity", "collapsed")
        line += f" {'yes' if b else 'no' if b is not None else 'n/a'} |"
    lines.append(line)
    return lines


def render_card(manifest: dict, pictures: list, baseline: dict | None = None, baseline_name: str = "baseline",
                baseline_training: dict | None = None, notes: str = "") -> str:
    name = manifest["name"]
    data = manifest.get("dataset", {})
    training = manifest.get("training", {})
    metrics = manifest.get("metrics") or {}
    config = training.get("config", {})
    out = [f"# Model card: {name}", ""]
    kind = "conditional" if manifest.get("conditional") else "unconditional"
    out += [f"A {kind} GAN generator ({manifest.get('architecture', '?')}, {manifest.get('parameters', 0):,} "
            f"parameters) making {manifest['resolution']}x{manifest['resolution']} RGB faces from "
            f"{manifest['latent_size']} noise values"
            + (f" and {len(manifest['attributes'])} attributes." if manifest["attributes"] else "."), ""]
    if data.get("synthetic"):
        note = data.get("note", "the training data set is synthetic").rstrip(".")
        out += [f"**Trained on synthetic faces:** {note}. The faces it makes look like those renderings, "
                "not like photographs.", ""]

    out += ["## Data", "", "| | |", "| --- | --- |",
            f"| data set | {data.get('name', '?')}{' (synthetic)' if data.get('synthetic') else ''} |",
            f"| training images | {data.get('images', '?'):,} (of {data.get('total_images', data.get('images', 0)):,}; "
            f"partition 0) |" if isinstance(data.get("images"), int) else f"| training images | {data.get('images')} |",
            f"| resolution | {data.get('resolution', manifest['resolution'])} px, crop {data.get('crop')} |",
            f"| source | `{data.get('source', '?')}` |", ""]

    seconds = training.get("train_seconds")
    out += ["## Training", "", "| | |", "| --- | --- |",
            f"| steps | {training.get('steps', '?'):,} (batch {training.get('batch_size', '?')}, "
            f"{training.get('images_seen', 0):,} images seen, {training.get('epochs', '?')} epochs) |"
            if isinstance(training.get("steps"), int) else f"| steps | {training.get('steps')} |",
            f"| training time | {_f(seconds / 60 if seconds else None, 1)} minutes |",
            f"| device | {training.get('device', '?')}; precision {training.get('precision', '?')} |",
            f"| weights | {training.get('weights', '?')} (EMA decay {config.get('ema_decay', '?')}) |",
            f"| generator / discriminator parameters | {training.get('generator_parameters', '?'):,} / "
            f"{training.get('discriminator_parameters', 0):,} |" if isinstance(training.get("generator_parameters"), int)
            else "| parameters | ? |",
            f"| conditioning | {config.get('conditioning', '?')}, loss {config.get('loss', '?')}, spectral norm "
            f"{config.get('spectral_norm', '?')} |", ""]
    if baseline_training:
        bt = baseline_training
        out += [f"Baseline ({baseline_name}): {bt.get('steps', '?')} steps in "
                f"{_f((bt.get('train_seconds') or 0) / 60, 1)} minutes on the same machine, "
                f"{bt.get('generator_parameters', 0):,} generator parameters.", ""]

    out += ["## Quality", ""]
    if not metrics:
        out += ["No figures yet: run `python -m training evaluate --model <this folder> --data <cache>`.", ""]
    else:
        head = "| figure | " + name + " |" + (f" {baseline_name} |" if baseline is not None else "")
        out += [head, "| --- | --- |" + (" --- |" if baseline is not None else "")]
        out += _metric_rows(metrics, baseline)
        out += ["", f"Measured with `{metrics.get('command', 'evaluate')}` on {metrics.get('date', '?')}: "
                f"{metrics.get('samples', {}).get('generated', '?')} generated faces against "
                f"{metrics.get('samples', {}).get('real', '?')} held-out real ones; the attribute classifier was "
                f"trained on {metrics.get('classifier', {}).get('trained_images', '?')} real training images and "
                f"tested on {metrics.get('classifier', {}).get('held_out_images', '?')} held-out ones (its accuracy "
                f"there is the ceiling).", ""]
        per = (metrics.get("attribute_accuracy") or {}).get("per_attribute") or {}
        base_per = ((baseline or {}).get("attribute_accuracy") or {}).get("per_attribute") or {}
        if per:
            real_rows = (metrics.get("attribute_accuracy_real_rows") or {}).get("per_attribute") or {}
            head = "| attribute | accuracy | on | off | on real rows | classifier ceiling |"
            head += f" {baseline_name} |" if baseline is not None else ""
            out += ["### Attribute control", "",
                    "*accuracy, on, off*: faces generated with the attribute on and off (same noise, the other "
                    "attributes drawn independently from the training marginals), judged by the classifier; balanced "
                    "accuracy. *on real rows*: faces generated from held-out real attribute rows (coherent "
                    "combinations), balanced accuracy of the classifier finding what each row asked for.", "", head,
                    "| --- | --- | --- | --- | --- | --- |" + (" --- |" if baseline is not None else "")]
            for attribute, row in per.items():
                line = (f"| {attribute} | {_f(row.get('accuracy'))} | {_f(row.get('on'))} | {_f(row.get('off'))} "
                        f"| {_f((real_rows.get(attribute) or {}).get('accuracy'))} | {_f(row.get('ceiling'))} |")
                if baseline is not None:
                    line += f" {_f((base_per.get(attribute) or {}).get('accuracy'))} |"
                out.append(line)
            out.append("")

    captions = {"samples.png": "Seeds 0-63 as the service serves them (attributes sampled per seed)",
                "attributes.png": "Each row one attribute, off then on, for the same seeds",
                "loss_curves.png": "Training losses", "training.gif": "The fixed-seed sample grid during training"}
    if pictures:
        out += ["## Pictures", ""]
        for picture in pictures:
            out += [f"**{captions.get(picture, picture)}**", "", f"![{picture}]({picture})", ""]
    if notes.strip():
        out += [notes.strip(), ""]
    return "\n".join(out)
