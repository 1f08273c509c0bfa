"""``python -m facegen verify IMAGE...``: the provenance marks each image carries, as JSON on stdout.

For each image: its XMP metadata (IPTC digital source type, model, seeds), its C2PA Content Credentials (present,
whether the signature and hashes verify, whether the signer is trusted: ``--trust-anchors`` or
FACEGEN_C2PA_TRUST_ANCHORS) and whether the watermark is found (facegen/provenance.py, facegen/watermark.py).
Exit status: 0 when every image carries at least one mark, 1 when one carries none, 2 for a usage error (an
unreadable file, not an image) with a one-line message naming the argument.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image

from facegen import provenance


def parser() -> argparse.ArgumentParser:
    described = argparse.ArgumentParser(prog="python -m facegen verify", description=__doc__.split("\n\n")[0],
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
    described.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="image files: PNG, GIF, WebP, JPEG")
    described.add_argument("--trust-anchors", metavar="PEM", type=Path,
                           help="CA certificates whose C2PA credentials count as trusted (default: the file named by "
                                f"{provenance.ENV_TRUST}, if any)")
    return described


def main(argv=None) -> int:
    arguments = parser().parse_args(argv)
    anchors = None
    if arguments.trust_anchors is not None:
        try:
            anchors = arguments.trust_anchors.read_bytes()
        except OSError as error:
            parser().error(f"--trust-anchors {arguments.trust_anchors}: {error.strerror}")
    reports = []
    for path in arguments.images:
        try:
            data = path.read_bytes()
        except OSError as error:
            parser().error(f"IMAGE {path}: {error.strerror}")
        try:
            image = Image.open(io.BytesIO(data))
            image.seek(0)
            image = image.convert("RGB")
        except Exception:  # noqa: BLE001 - Pillow raises many types for files that are not images
            parser().error(f"IMAGE {path}: not an image this tool can read (PNG, GIF, WebP, JPEG)")
        reports.append({"path": str(path), **provenance.verify(data, image=image, trust_anchors=anchors)})
    json.dump(reports, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if all(report["synthetic"] for report in reports) else 1
