"""What marking costs per encoded face, in-process: the PNG encoder before the marks, with them (XMP + the watermark
from 128 px), and with C2PA signing too (a development certificate), interleaved in one run.

    python bench/provenance_cost.py [--repeat 200]

The faces are the default model's (seeds 0..15), resized by the service's own to_image to each size it offers;
"before" is the bare encoder (Pillow PNG with app/faces.py's PNG_OPTIONS, no text chunk), "marked" and "signed" go
through app/faces.py's encode_png. ``--png-options '{"compress_level": 6}'`` measures other Pillow settings for all
three (the settings the service had before are in BENCHMARKS.md). Reports the median CPU milliseconds (the encoding thread's own time, so other jobs on the machine do not count) per
face and the ratios to "before".
"""

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (64, 128, 256, 512)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="encodings per variant and size (default 200)")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--png-options", type=json.loads, default=None, metavar="JSON",
                        help="Pillow PNG save options in place of the service's (JSON object)")
    args = parser.parse_args()

    from app import faces
    from app.faces import FaceRequest, encode_png, face_mark, render_faces, to_image

    if args.png_options is not None:
        faces.PNG_OPTIONS = {"optimize": False, **args.png_options}
    print(f"PNG options: {faces.PNG_OPTIONS}")
    from app.models import load_model
    from facegen import provenance
    from facegen.model_folder import read_default

    model = load_model(args.models / read_default(args.models))
    requests = [FaceRequest.resolving(model, seed) for seed in range(16)]
    pixels = render_faces(requests)
    chain, key, _ = provenance.development_credentials()
    signer = provenance.CredentialSigner(chain, key, "bench")

    def before(image, request):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", **faces.PNG_OPTIONS)
        return buffer.getvalue()

    def marked(image, request):
        provenance.use_signer(None)
        return encode_png(image, face_mark(request))

    def signed(image, request):
        provenance.use_signer(signer)
        try:
            return encode_png(image, face_mark(request))
        finally:
            provenance.use_signer(None)

    variants = {"before": before, "marked": marked, "signed": signed}
    print(f"median CPU ms per face over {args.repeat} encodings (ratio to before); bytes per face", flush=True)
    for size in SIZES:
        images = [to_image(p, size) for p in pixels]
        times = {name: [] for name in variants}
        sizes = {name: 0 for name in variants}
        for index in range(args.repeat):  # interleaved, so drifting background load weighs on every variant alike
            image, request = images[index % 16], requests[index % 16]
            for name, encode in variants.items():
                started = time.thread_time()
                data = encode(image, request)
                times[name].append(time.thread_time() - started)
                sizes[name] = len(data)
        base = statistics.median(times["before"])
        print(f"{size:4d} px: " + ", ".join(
            f"{name} {statistics.median(t) * 1000:.2f} ms ({statistics.median(t) / base:.2f}x, {sizes[name]} B)"
            for name, t in times.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
