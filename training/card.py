"""``card``: a model folder's pictures and MODEL_CARD.md, written from its manifest (the one source of truth).

MODEL_DIR/
  samples.png      8x8 faces for seeds 0..63, exactly as the service serves them (attributes sampled per seed)
  attributes.png   one row per attribute: for the same seeds, the attribute off then on
  edits.png        models with an encoder, given a data cache (--data, or the one --run recorded): held-out photos,
                   their rebuilds and edits, made by the SavedModel's encode and generate as the service makes them
  loss_curves.png  copied from the run (--run), with training.gif where it is small enough for git
  MODEL_CARD.md    data, training, per-attribute accuracy against the classifier's ceiling, Frechet distance,
                   diversity, the encoder's figures, the baseline's figures beside ours (--baseline), the pictures
                   and --notes

Run `evaluate --model MODEL_DIR` first: the card reports the metrics the manifest holds.
"""

import json
import shlex
import shutil
from pathlib import Path

from facegen import attributes as attributes_module
from facegen import edit_methods, model_folder
from training import run_folder
from training.usage_error import UsageError

GIF_LIMIT_BYTES = 3_000_000
REPO = Path(__file__).resolve().parents[1]


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
    parser.add_argument("--data", type=Path, metavar="CACHE",
                        help="a data cache (.npz) whose held-out photos edits.png shows, for a model with an encoder "
                             "(default: the cache the --run recorded)")


def run(args) -> int:
    if not (args.model / model_folder.MANIFEST).is_file():
        raise UsageError(f"--model: {args.model} holds no {model_folder.MANIFEST} (export a run there first)")
    for path, flag in ((args.run, "--run"), (args.baseline, "--baseline"), (args.notes, "--notes"),
                       (args.data, "--data")):
        if path is not None and not path.exists():
            raise UsageError(f"{flag}: no such file or folder: {path}")
    if args.columns < 1:
        raise UsageError("--columns must be at least 1")
    manifest = model_folder.read_manifest(args.model)
    baseline = _read_json(args.baseline, "--baseline") if args.baseline else None
    generate, loaded = model_folder.load_generate(args.model)  # loaded once: every picture comes from it
    pictures = write_pictures(args.model, manifest, generate, args.columns)
    edits_note = None
    if manifest.get("encoder") is not None:
        photos, edits_note = held_out_photos(args.data, args.run)
        licensed = photos is None and edits_note.startswith(LICENSED)
        if licensed:  # the model's own faces (seeds 0..) stand in for the photos
            photos = generate(*service_inputs(manifest, range(EDIT_PHOTOS)))
        if photos is not None:
            encode = model_folder.load_encode(args.model, loaded)
            pictures.append(write_edits(args.model, manifest, generate, encode, photos,
                                        "generated" if licensed else "photo"))
    if args.run is not None:
        if (args.run / run_folder.LOSS_CURVES).is_file():
            shutil.copyfile(args.run / run_folder.LOSS_CURVES, args.model / run_folder.LOSS_CURVES)
            pictures.append(run_folder.LOSS_CURVES)
        if small_training_gif(args.run, args.model / run_folder.TRAINING_GIF):
            pictures.append(run_folder.TRAINING_GIF)
    notes = args.notes.read_text() if args.notes else ""
    baseline_training = _read_json(args.baseline_training, "--baseline-training") if args.baseline_training else None
    text = render_card(manifest, pictures, baseline, args.baseline_name, baseline_training, notes, edits_note)
    (args.model / model_folder.CARD).write_text(text)
    print(f"wrote {args.model / model_folder.CARD} and {', '.join(pictures)}")
    return 0


def small_training_gif(run_dir: Path, out: Path) -> bool:
    """The run's training.gif, or where it is too big for git, the same sample grids redrawn narrower."""
    from training.pictures import make_gif

    source = run_dir / run_folder.TRAINING_GIF
    if source.is_file() and source.stat().st_size <= GIF_LIMIT_BYTES:
        shutil.copyfile(source, out)
        return True
    frames = run_folder.sample_frames(run_dir)
    for width in (256, 192, 128):
        if frames and make_gif(frames, out, width=width) and out.stat().st_size <= GIF_LIMIT_BYTES:
            return True
    out.unlink(missing_ok=True)
    return False


def _read_json(path: Path, flag: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{flag}: {path} is not readable JSON ({error})") from None


# -- pictures ----------------------------------------------------------------------------------------------------
def service_inputs(manifest: dict, seeds):
    """(noise [n, latent], attribute vectors [n, A]): what the service draws for ?seed=N with no attrs, per seed."""
    import numpy as np

    table = attributes_module.AttributeTable.from_manifest(manifest.get("attribute_table"), manifest["attributes"])
    faces = [attributes_module.seed_face(seed, manifest["latent_size"], 1.0, manifest["attribute_frequencies"], table)
             for seed in seeds]
    return np.stack([noise for noise, _, _ in faces]), np.stack([vector for _, vector, _ in faces])


def write_pictures(model_dir: Path, manifest: dict, generate, columns: int) -> list:
    """samples.png and attributes.png, drawn with the service's seed rule, so seed N is the face the service shows."""
    import numpy as np
    from PIL import Image, ImageDraw

    from training.pictures import grid

    grid(generate(*service_inputs(manifest, range(64))), 8).save(model_dir / "samples.png")
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
        noise, attrs = service_inputs(manifest, range(columns))
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


# -- edits.png: held-out photos through the encoder ---------------------------------------------------------------
EDIT_PHOTOS = 6
LICENSED = "not the photos:"  # how held_out_photos says why it gave none because of the data's terms
# Attributes whose flips read at a glance; a model with none of them edits its first three instead.
EDIT_PREFERENCE = ("Male", "Smiling", "Eyeglasses", "Blond_Hair", "Young")
TILE_PAD, EDIT_HEADER, EDIT_LABEL = 2, 14, 12  # pixels: between tiles, column titles, the line under each tile


def held_out_photos(data: Path | None, run_dir: Path | None, count: int = EDIT_PHOTOS):
    """(up to ``count`` held-out photos uint8 [n, S, S, 3], a sentence saying where they came from), or (None, why
    there are none). --data wins over the cache the run recorded. Held out: test partition, else validation; never
    training photos, which a rebuild could flatter."""
    import numpy as np

    from training.data import held_out_rows, load_cache

    path, problem = _cache_path(data, run_dir)
    if path is None:
        return None, problem
    try:
        cache = load_cache(path)
    except UsageError as error:
        if data is not None:  # the user named this file: a wrong one is their error, not a quiet skip
            raise UsageError(f"--data: {error}") from None
        return None, f"the run's data cache is not readable ({error})"
    if not cache.meta.get("synthetic"):  # real people's photos: their terms forbid copying them into a model folder
        return None, (f"{LICENSED} `{path.name}` holds photographs of real people whose terms forbid copying them "
                      f"into a model folder, which is shipped; so edits.png starts from faces the model generated "
                      f"(seeds 0-{EDIT_PHOTOS - 1}), and the encoder figures above were measured on held-out photos")
    rows, name = held_out_rows(cache.partition)
    if not len(rows):
        return None, f"`{path.name}` holds no held-out (test or validation) photos"
    chosen = rows[:count]
    return np.asarray(cache.images[chosen]), f"the first {len(chosen)} photos of the {name} partition of `{path.name}`"


def _cache_path(data: Path | None, run_dir: Path | None):
    """(the data cache to read, None) or (None, why there is none)."""
    if data is not None:
        return data, None
    if run_dir is None:
        return None, "no data cache was given (`card --data CACHE`, or `--run RUN` whose run.json records one)"
    try:
        recorded = run_folder.recorded_cache(run_folder.read_run_info(run_dir))
    except (OSError, ValueError):
        recorded = None
    if not recorded:
        return None, f"{run_dir.name}/{run_folder.RUN_INFO} records no data cache; give `card --data CACHE`"
    if not recorded.is_file():
        return None, f"the run's data cache {recorded.name} is not here; give `card --data CACHE`"
    return recorded, None


def edit_attributes(attributes) -> list:
    """The attributes edits.png flips, in the model's spelling."""
    lowered = {name.lower(): name for name in attributes}
    chosen = [lowered[name.lower()] for name in EDIT_PREFERENCE if name.lower() in lowered]
    return chosen or list(attributes[:3])


def edit_tile_origin(row: int, column: int, size: int) -> tuple:
    """The top-left pixel (x, y) of tile (row, column) in edits.png."""
    return TILE_PAD + column * (size + TILE_PAD), EDIT_HEADER + row * (size + EDIT_LABEL + TILE_PAD)


def edit_sheet_size(rows: int, columns: int, size: int) -> tuple:
    return columns * (size + TILE_PAD) + TILE_PAD, EDIT_HEADER + rows * (size + EDIT_LABEL + TILE_PAD)


def write_edits(model_dir: Path, manifest: dict, generate, encode, photos, first_title: str = "photo") -> str:
    """edits.png: per photo (a row) the photo at the model's resolution, its rebuild G(encoded noise, attributes as
    found), then one column per edit_attributes flip from what was found, through the exported SavedModel exactly as
    the service calls it (the photos are aligned cache faces, so the service's face detection step is not needed)."""
    import numpy as np

    from training.classifier import resize_images

    size, attributes = manifest["resolution"], manifest["attributes"]
    photos = resize_images(photos, size)  # as evaluate resizes the photos its encoder figures use
    noise, _, found = edit_methods.encoder_inputs(*encode(photos))  # as /api/edit reads the encoder
    columns, titles, labels = [photos, generate(noise, found)], [first_title, "rebuild"], [None, None]
    for name in edit_attributes(attributes):
        j, edited = attributes.index(name), found.copy()
        edited[:, j] = 1.0 - edited[:, j]
        columns.append(generate(noise, edited))
        titles.append(name)
        labels.append(["on" if v else "off" for v in edited[:, j]])  # the state the edit asked for
    _edit_sheet(columns, titles, labels, size).save(model_dir / "edits.png")
    return "edits.png"


def _edit_sheet(columns, titles, labels, size):
    """columns: uint8 [rows, size, size, 3] each, with a title above and optional labels[column][row] below tiles."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", edit_sheet_size(len(columns[0]), len(columns), size), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (tiles, title) in enumerate(zip(columns, titles)):
        x, _ = edit_tile_origin(0, c, size)
        draw.text((x, 1), title[:max(4, size // 5)], fill="black")  # the default font is about 5 px a character
        for r, tile in enumerate(tiles):
            x, y = edit_tile_origin(r, c, size)
            sheet.paste(Image.fromarray(tile), (x, y))
            if labels[c]:
                draw.text((x, y + size), labels[c][r], fill="black")
    return sheet


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


ENCODER_METRICS = ("encoder_attributes", "encoder_reconstruction", "encoder_edit")  # what evaluate writes
# (title, metric, keys into it, what the figure means); the figures are those of training/quality.py.
ENCODER_ROWS = [
    ("attribute reading, balanced accuracy (mean)", "encoder_attributes", ("mean_balanced",),
     "How often the encoder's attribute head reads a held-out photo's labelled attributes right, balanced over "
     "photos with each attribute on and off (0.5 is chance), averaged over the attributes."),
    ("rebuild PSNR, dB (higher is closer)", "encoder_reconstruction", ("psnr",),
     "Pixel closeness of each photo to its rebuild, the generator fed the encoded noise and the attributes as found."),
    ("rebuild PSNR with the true attributes", "encoder_reconstruction", ("psnr_true_attributes",),
     "The same, with the photo's labelled attributes instead of those the encoder found."),
    ("PSNR from random noise, same attributes", "encoder_reconstruction", ("psnr_random_code",),
     "The same attributes with random noise instead of the encoded noise: what the rebuild PSNR must beat for the "
     "noise to carry anything of the photo."),
    ("rebuild feature distance / two different photos'", "encoder_reconstruction", ("feature_ratio",),
     "The classifier-feature distance between photo and rebuild over that between two different photos: 0 is the "
     "same picture, 1 is as far apart as two strangers."),
    ("edit: flipped attribute changed", "encoder_edit", ("changed",),
     "Share of edits (one attribute flipped from what the encoder found) where the classifier sees the flipped "
     "attribute in its new state, averaged over the edited attributes."),
    ("edit: other attributes kept", "encoder_edit", ("kept",),
     "Of the attributes not asked to change, the share whose classifier decision on the edit equals that on the "
     "rebuild."),
    ("edit success", "encoder_edit", ("success",),
     "Share of edits that changed the flipped attribute and kept every other one at once."),
    ("identity: edit vs rebuild", "encoder_edit", ("identity", "edit_rebuild"),
     "Cosine of classifier features (centred on the real photos' mean) of edit and rebuild: 1 is the same face; "
     "compare with two different photos' below."),
    ("identity: edit vs photo", "encoder_edit", ("identity", "edit_photo"),
     "The same cosine between the edit and the original photo."),
    ("identity: rebuild vs photo", "encoder_edit", ("identity", "rebuild_photo"),
     "The same cosine between the rebuild and the original photo."),
    ("identity: two different photos", "encoder_edit", ("identity", "different_photos"),
     "The same cosine between two different people's photos: what a stranger scores."),
]


def _pick(report, *keys):
    for key in keys:
        report = report.get(key) if isinstance(report, dict) else None
    return report


def _encoder_cell(metrics: dict, metric: str, keys) -> str:
    """A figure, or why there is none: evaluate never ran it, or ran it and skipped it (the reason is listed)."""
    if metric not in metrics:
        return "not evaluated"
    if "skipped" in metrics[metric]:
        return "skipped"
    return _f(_pick(metrics[metric], *keys))


def _encoder_figures(metrics: dict, baseline: dict | None, name: str, baseline_name: str) -> list:
    head = f"| figure | {name} |" + (f" {baseline_name} |" if baseline is not None else "") + " what it means |"
    out = [head, "| --- | --- |" + (" --- |" if baseline is not None else "") + " --- |"]
    for title, metric, keys, meaning in ENCODER_ROWS:
        line = f"| {title} | {_encoder_cell(metrics, metric, keys)} |"
        if baseline is not None:
            line += f" {_f(_pick(baseline, metric, *keys))} |"
        out.append(line + f" {meaning} |")
    out.append("")
    skipped = [f"{metric} was skipped: {metrics[metric]['skipped']}." for metric in ENCODER_METRICS
               if "skipped" in metrics.get(metric, {})]
    return out + ([" ".join(skipped), ""] if skipped else [])


def _encoder_per_attribute(metrics: dict, baseline: dict | None, baseline_name: str) -> list:
    reading = _pick(metrics, "encoder_attributes", "per_attribute") or {}
    edits = _pick(metrics, "encoder_edit", "per_attribute") or {}
    if not reading and not edits:
        return []
    base_reading = _pick(baseline, "encoder_attributes", "per_attribute") or {}
    base_edits = _pick(baseline, "encoder_edit", "per_attribute") or {}
    head = "| attribute | reading | classifier ceiling | changed | to on | to off | kept | success |"
    if baseline is not None:
        head += f" {baseline_name} reading | {baseline_name} success |"
    out = ["*reading*: the encoder's balanced accuracy on the photos' labels, beside the classifier's on the same "
           "attribute (its ceiling). *changed*, *to on*, *to off*, *kept*, *success*: the edit figures above for this "
           "attribute alone (to on / to off: the edits that switched it on / off).", "",
           head, "| --- " * (8 + 2 * (baseline is not None)) + "|"]
    for attribute in list(reading) + [a for a in edits if a not in reading]:
        r, e = reading.get(attribute) or {}, edits.get(attribute) or {}
        line = (f"| {attribute} | {_f(r.get('balanced'))} | {_f(r.get('ceiling'))} | {_f(e.get('changed'))} "
                f"| {_f(e.get('to_on'))} | {_f(e.get('to_off'))} | {_f(e.get('kept'))} | {_f(e.get('success'))} |")
        if baseline is not None:
            line += (f" {_f(_pick(base_reading, attribute, 'balanced'))} "
                     f"| {_f(_pick(base_edits, attribute, 'success'))} |")
        out.append(line)
    return out + [""]


def _encoder_section(manifest: dict, metrics: dict, pictures: list, baseline: dict | None, baseline_name: str,
                     edits_note: str | None) -> list:
    """"Editing photos (the encoder)": its figures, per attribute, and edits.png (or why it is missing)."""
    out = ["## Editing photos (the encoder)", "",
           "The model has an encoder: a photo (framed as the manifest's encoder.framing says) becomes noise and "
           "attribute probabilities; the generator rebuilds it from the noise and the attributes as found "
           "(probability at least 0.5), and edits it by flipping attributes over the same noise.", ""]
    if not any(metric in metrics for metric in ENCODER_METRICS):
        out += ["Encoder figures: not evaluated. Run `python -m training evaluate --model <this folder> --data "
                "<cache>`: it measures the encoder on the cache's held-out photos.", ""]
    else:
        samples = metrics.get("samples") or {}
        out += [f"Measured on {samples.get('encoded', '?')} held-out photos ({samples.get('encoded_from', '?')}).", ""]
        out += _encoder_figures(metrics, baseline, manifest["name"], baseline_name)
        out += _encoder_per_attribute(metrics, baseline, baseline_name)
    if "edits.png" in pictures and (edits_note or "").startswith(LICENSED):
        out += ["**Edits of generated faces: the face, its rebuild through the encoder, then one attribute flipped "
                "per column from what the encoder found (under each edit, the state asked for).** Not photos: "
                f"{edits_note[len(LICENSED):].strip()}.", "", "![edits.png](edits.png)", ""]
    elif "edits.png" in pictures:
        out += [f"**Held-out photos ({edits_note}): the photo, its rebuild, then one attribute flipped per column "
                "from what the encoder found (under each edit, the state asked for)**", "",
                "![edits.png](edits.png)", ""]
    else:
        out += [f"No edits.png: {edits_note or 'no held-out photos were given (`card --data CACHE`)'}.", ""]
    return out + identity_section(metrics.get("identity"))


def identity_section(report: dict | None) -> list:
    """"Identity": metrics.identity (training/identity.py, dlib's face-recognition network) as two small tables:
    the framed ceiling, the rebuilds and the stranger floor; then each edit by method (same person, and where a
    classifier judged them, the flipped attribute read as asked and the others kept)."""
    out = ["### Identity: is the edited photo still the person? (dlib face recognition)", ""]
    if not report or "framed" not in report:
        return out + ["Not measured. Run `python -m training.identity --model <this folder> --data <cache> --photos "
                      "<the cache's photo folder> --write` (needs dlib and face_recognition_models).", ""]
    out += [f"On {report['photos']} held-out photos ({report.get('partition', 'test')} partition): the share dlib's "
            f"face-recognition ResNet calls the same person as the photo (distance < {report['same_person_below']}) "
            "and the mean distance.", "",
            "| compared with the photo | same person | mean distance |", "|---|---|---|"]
    rows = [("the framed input (the ceiling)", report["framed"]), ("the encoder's rebuild", report["rebuilt"])]
    rows += [(f"the rebuild after inversion ({name})", figures)
             for name, figures in (report.get("rebuilt_by_inversion") or {}).items()]
    rows.append(("another person's photo (the floor)", report["stranger"]))
    out += [f"| {label} | {_f(figures['same_person'])} | {_f(figures['mean_distance'])} |" for label, figures in rows]
    out += ["", "| edit | method | same person | mean distance | changed as asked | others kept | others kept, "
            "unconfounded | read changed most often |", "|---|---|---|---|---|---|---|---|"]
    for attribute, entry in report.get("edits", {}).items():
        for method, figures in entry.items():
            most = ", ".join(f"{name} {share:.2f}" for name, share in (figures.get("flipped_most") or {}).items())
            known = edit_methods.METHODS.get(method)
            out.append(f"| {attribute} | {method}{f' ({known.summary})' if known else ''} | "
                       f"{_f(figures['same_person'])} | {_f(figures['mean_distance'])} | "
                       f"{_f(figures.get('changed'))} | {_f(figures.get('kept'))} | "
                       f"{_f(figures.get('kept_unconfounded'))} | {most or '-'} |")
    judge = report.get("judge") or {}
    if judge.get("confounded"):
        out += ["", "The attribute judge learned CelebA's correlations as well as its attributes (on held-out real "
                "photos with the same label it reads an attribute at a rate that moves with the edited one by more "
                f"than {judge['confound_shift']:g}): \"unconfounded\" leaves those out of the others kept. Left out: " +
                "; ".join(f"{name}: {', '.join(others) or 'none'}" for name, others in judge["confounded"].items()) +
                "."]
    for inverted, key in model_folder.EDIT_GAIN_KEYS.items():
        methods = " and ".join(edit_methods.with_inversion(inverted))
        if report.get(key):
            out += ["", f"Edit gains (the manifest's encoder.{key}, served with these figures): each edited "
                    f"attribute pushed this many times as far in the generator's input, methods {methods}: " +
                    ", ".join(f"{name} {gain:g}" for name, gain in report[key].items()) + "; 1 for the rest."]
    timing = report.get("seconds_per_photo_median_by_method") or {}
    if timing:
        out += ["", "Median seconds per photo (detection to edited faces, in-process, on the machine and under the "
                "load the figures were measured with: compare the methods, not the absolute times): " +
                ", ".join(f"{method} {seconds:.2f}" for method, seconds in timing.items()) + "."]
    if report.get("command"):
        out += ["", f"Command: `{portable_command(report['command'])}`"]
    return out + [""]


def portable_path(path) -> str:
    """A path a run or an evaluation recorded, as a card shows it: relative to the repository where it lies inside
    it (relative paths count from the repository's root, where the commands run), else a placeholder naming only
    the file or folder (``<celeba-hq-64.npz>``). A card is shipped: it never shows the machine it was made on."""
    given = Path(str(path)).expanduser()
    absolute = Path(REPO / given).resolve() if not given.is_absolute() else given.resolve()
    if absolute.is_relative_to(REPO):
        return absolute.relative_to(REPO).as_posix() or "."
    return f"<{given.name or absolute.name or 'path'}>"


def portable_command(command: str) -> str:
    """A recorded command line with every path in it (a word or a --flag=value holding a '/' or starting with
    '~') made portable_path."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command

    def portable(word):
        if word.startswith("--") and "=" in word:
            flag, value = word.split("=", 1)
            return f"{flag}={portable(value)}"
        return portable_path(word) if ("/" in word or word.startswith("~")) and "://" not in word else word

    return " ".join(portable(word) for word in words)


def _source_text(data: dict) -> str:
    """Where the training photos came from: the data folder (portable_path) and its layout."""
    source = data.get("source")
    if not source:
        return "not recorded"
    return f"`{portable_path(source)}`" + (f" ({data['layout']} layout)" if data.get("layout") else "")


def _split_text(split) -> str:
    """How the held-out faces the figures use were kept apart from the training faces."""
    if not split:
        return "not recorded"
    counts = " / ".join(f"{n:,}" for n in (split.get("counts") or {}).values())
    if split.get("kind") == "celeba-official":
        through = f" through {split['mapping']}" if split.get("mapping") else ""
        return (f"CelebA's official {split.get('file')}{through} (identity-disjoint): {counts} "
                "train / validation / test")
    if split.get("kind") == "seeded":
        return f"seeded {split.get('fractions')} (seed {split.get('seed')}, not identity-disjoint): {counts}"
    return f"{split.get('kind')}: {counts}"


def render_card(manifest: dict, pictures: list, baseline: dict | None = None, baseline_name: str = "baseline",
                baseline_training: dict | None = None, notes: str = "", edits_note: str | None = None) -> str:
    """MODEL_CARD.md's text, section by section. ``edits_note``: where edits.png's photos came from, or why it was
    not drawn."""
    metrics = manifest.get("metrics") or {}
    out = _summary_section(manifest)
    out += _data_section(manifest)
    out += _training_section(manifest, baseline_name, baseline_training)
    out += _quality_section(manifest["name"], metrics, baseline, baseline_name)
    if manifest.get("encoder") is not None:
        out += _encoder_section(manifest, metrics, pictures, baseline, baseline_name, edits_note)
    out += _pictures_section([picture for picture in pictures if picture != "edits.png"])  # edits: the encoder's
    if notes.strip():
        out += [notes.strip(), ""]
    return "\n".join(out)


def _summary_section(manifest: dict) -> list:
    """The title, what the generator makes, and what it was trained on (synthetic faces, or real people's photos and
    their terms)."""
    data = manifest.get("dataset", {})
    out = [f"# Model card: {manifest['name']}", ""]
    kind = "conditional" if manifest.get("conditional") else "unconditional"
    out += [f"A {kind} GAN generator ({manifest.get('architecture', '?')}, {manifest.get('parameters', 0):,} "
            f"parameters) making {manifest['resolution']}x{manifest['resolution']} RGB faces from "
            f"{manifest['latent_size']} noise values"
            + (f" and {len(manifest['attributes'])} attributes." if manifest["attributes"] else "."), ""]
    if data.get("synthetic"):
        note = data.get("note", "the training data set is synthetic").rstrip(".")
        out += [f"**Trained on synthetic faces:** {note}. The faces it makes look like those renderings, "
                "not like photographs.", ""]
    elif data.get("licence"):
        out += [f"**Trained on photographs of real people** ({data.get('name', '?')}). Terms: {data['licence']}. "
                "The faces it makes are not those people, but they come from their photographs.", ""]
    return out


def _data_section(manifest: dict) -> list:
    data = manifest.get("dataset", {})
    return ["## Data", "", "| | |", "| --- | --- |",
            f"| data set | {data.get('name', '?')}{' (synthetic)' if data.get('synthetic') else ''} |",
            f"| training images | {data.get('images', '?'):,} (of {data.get('total_images', data.get('images', 0)):,}; "
            f"partition 0) |" if isinstance(data.get("images"), int) else f"| training images | {data.get('images')} |",
            f"| resolution | {data.get('resolution', manifest['resolution'])} px, crop {data.get('crop')} |",
            f"| source | {_source_text(data)} |",
            f"| split | {_split_text(data.get('split'))} |",
            f"| licence | {data.get('licence', 'not recorded')} |", ""]


def _training_section(manifest: dict, baseline_name: str, baseline_training: dict | None) -> list:
    training = manifest.get("training", {})
    config = training.get("config", {})
    seconds = training.get("train_seconds")
    out = ["## Training", "", "| | |", "| --- | --- |",
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
           f"{config.get('spectral_norm', '?')} |"]
    out += _stage_rows(training.get("upsampler")) + [""]
    if baseline_training:
        bt = baseline_training
        out += [f"Baseline ({baseline_name}): {bt.get('steps', '?')} steps in "
                f"{_f((bt.get('train_seconds') or 0) / 60, 1)} minutes on the same machine, "
                f"{bt.get('generator_parameters', 0):,} generator parameters.", ""]
    return out


def _stage_rows(stage: dict | None) -> list:
    """The upsampling stage's rows (training/upsample.py) for a model exported with one: the rows above are its
    base generator's training."""
    if not stage:
        return []
    config = stage.get("config", {})
    adversarial = config.get("adversarial") or 0
    return [f"| upsampling stage | {stage.get('steps', '?'):,} steps of batch {config.get('batch_size', '?')}, "
            f"{_f((stage.get('cpu_seconds') or 0) / 3600, 2)} CPU hours, behind {stage.get('base', '?')}'s generator "
            f"(the rows above are its training) |",
            f"| stage network | {config.get('blocks', '?')} residual blocks of {config.get('width', '?')} channels at "
            f"{config.get('small', '?')} px, sub-pixel output added to the bilinear enlargement; "
            f"{stage.get('loss', 'L1')}" + (f", plus {adversarial:g} x a patch critic's loss" if adversarial else "")
            + " |"]


def _quality_section(name: str, metrics: dict, baseline: dict | None, baseline_name: str) -> list:
    """evaluate's figures beside the baseline's, how they were measured, and attribute control per attribute."""
    out = ["## Quality", ""]
    if not metrics:
        return out + ["No figures yet: run `python -m training evaluate --model <this folder> --data <cache>`.", ""]
    head = "| figure | " + name + " |" + (f" {baseline_name} |" if baseline is not None else "")
    out += [head, "| --- | --- |" + (" --- |" if baseline is not None else "")]
    out += _metric_rows(metrics, baseline)
    out += ["", f"Measured with `{portable_command(metrics.get('command', 'evaluate'))}` on {metrics.get('date', '?')}: "
            f"{metrics.get('samples', {}).get('generated', '?')} generated faces against "
            f"{metrics.get('samples', {}).get('real', '?')} held-out real ones; the attribute classifier was "
            f"trained on {metrics.get('classifier', {}).get('trained_images', '?')} real training images and "
            f"tested on {metrics.get('classifier', {}).get('held_out_images', '?')} held-out ones (its accuracy "
            f"there is the ceiling).", ""]
    return out + _attribute_control(metrics, baseline, baseline_name)


def _attribute_control(metrics: dict, baseline: dict | None, baseline_name: str) -> list:
    per = (metrics.get("attribute_accuracy") or {}).get("per_attribute") or {}
    if not per:
        return []
    base_per = ((baseline or {}).get("attribute_accuracy") or {}).get("per_attribute") or {}
    real_rows = (metrics.get("attribute_accuracy_real_rows") or {}).get("per_attribute") or {}
    head = "| attribute | accuracy | on | off | on real rows | classifier ceiling |"
    head += f" {baseline_name} |" if baseline is not None else ""
    out = ["### Attribute control", "",
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
    return out + [""]


PICTURE_CAPTIONS = {"samples.png": "Seeds 0-63 as the service serves them (attributes sampled per seed)",
                    "attributes.png": "Each row one attribute, off then on, for the same seeds",
                    "loss_curves.png": "Training losses", "training.gif": "The fixed-seed sample grid during training"}


def _pictures_section(pictures: list) -> list:
    if not pictures:
        return []
    out = ["## Pictures", ""]
    for picture in pictures:
        out += [f"**{PICTURE_CAPTIONS.get(picture, picture)}**", "", f"![{picture}]({picture})", ""]
    return out
