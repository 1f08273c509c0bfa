"""A tiny CelebAMask-HQ-layout folder, made by the test itself (no image is ever copied from real data).

    ROOT/CelebA-HQ-img/0.jpg ...           square JPEGs (any size)
    ROOT/CelebAMask-HQ-attribute-anno.txt  line 1 the count, line 2 the names, then "N.jpg v v ..." (1/-1, ragged
                                           spacing as in the release)
    ROOT/CelebA-HQ-to-CelebA-mapping.txt   optional: "idx orig_idx orig_file" header, then "i  k-1  k.jpg"
    ROOT/list_eval_partition.txt           optional: CelebA's, keyed by CelebA file name, with decoy rows

HQ image i maps to the CelebA file celeba_name(i) (far from i, so a lookup that skips the mapping finds a decoy row
with another partition) whose official partition is hq_partition(i).
"""

from pathlib import Path

import numpy as np
from PIL import Image

HQ_NAMES = ["Eyeglasses", "Male", "Smiling", "Young", "Blond_Hair"]
HQ_N = 20


def hq_colour(i):
    return (40 + 53 * i % 200, 200 - 29 * i % 160, 90 + 71 * i % 150)


def celeba_name(i):
    """The CelebA original of HQ image i."""
    return f"{(i * 7919 + 1000) % 202599 + 1:06d}.jpg"


def hq_partition(i):
    """CelebA's official partition of HQ image i's original: 3, 8, 13, 18 validation; 4, 9, 14, 19 test."""
    return 1 if i % 5 == 3 else (2 if i % 5 == 4 else 0)


def hq_attribute_rows(n=HQ_N):
    """-1/1 [n, 5]: Male where i is even, Eyeglasses where i % 3 == 0, the rest a fixed pattern."""
    rows = np.where((np.arange(n)[:, None] + np.arange(len(HQ_NAMES))[None, :]) % 3 == 0, 1, -1)
    rows[:, HQ_NAMES.index("Male")] = np.where(np.arange(n) % 2 == 0, 1, -1)
    rows[:, HQ_NAMES.index("Eyeglasses")] = np.where(np.arange(n) % 3 == 0, 1, -1)
    return rows


def make_celebahq(root: Path, n=HQ_N, size=96, mapping=True, partition=True, skip_images=(), image=None):
    """Write the folder; ``image(i)`` -> a PIL image for HQ image i (default: a solid hq_colour(i) square).

    Returns (image folder, HQ file names).
    """
    root = Path(root)
    image_dir = root / "CelebA-HQ-img"
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        if i not in skip_images:
            picture = image(i) if image is not None else Image.new("RGB", (size, size), hq_colour(i))
            picture.save(image_dir / name, format="JPEG", quality=95)
    spacing = ["  ", " "]  # the release separates values by one or more spaces
    lines = [str(n), " ".join(HQ_NAMES) + " "]
    lines += [name + " " + spacing[i % 2].join(str(v) for v in row) for i, (name, row) in
              enumerate(zip(names, hq_attribute_rows(n)))]
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    if mapping:
        rows = ["idx         orig_idx    orig_file   "]
        for i in range(n):
            original = celeba_name(i)
            rows.append(f"{i:<12}{int(original[:6]) - 1:<12}{original:<12}")
        (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(rows) + "\n")
    if partition:
        table = {celeba_name(i): hq_partition(i) for i in range(n)}
        for k in range(1, n + 40):  # decoys: what a lookup of i's own number (000001.jpg...) would find
            table.setdefault(f"{k:06d}.jpg", 2 - hq_partition(k) if k % 5 else 1)
        (root / "list_eval_partition.txt").write_text("".join(f"{m} {p}\n" for m, p in sorted(table.items())))
    return image_dir, names
