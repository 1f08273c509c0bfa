"""The half-resolution reference with a learned enlargement: held-out real photos as the 64 px cache holds them,
enlarged to 128 px by an upsampling run's stage (training/upsample.py), against the service's Lanczos enlargement of
the same photos, judged as `evaluate`'s frechet_distance.half_sample judges (the same real halves, the same seed).

    python bench/upsampler_reference.py --run runs/up128 --small data/celeba-hq-64.npz --large data/celeba-hq-128.npz

It says how much of the 64 px model's distance to 128 px photos the stage could remove at best: the gap between the
Lanczos and the stage figures here is the part that resolution accounts for.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--small", type=Path, required=True)
    parser.add_argument("--large", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from facegen.model_folder import from_uint8, resize_face, to_uint8
    from training.classifier import obtain_classifier
    from training.evaluate import real_rows
    from training.quality import frechet_distance_of, real_halves
    from training.upsample import load_upsampler, paired_caches

    small, large, _ = paired_caches(args.small, args.large)
    classifier = obtain_classifier(large, None, progress=False, input_size=128)
    held = real_rows(args, large)  # evaluate's held-out photos and halves, drawn as it draws them
    real = classifier.features(np.asarray(large.images[held]))
    in_held_a, part_b = real_halves(len(held), args.seed)
    part_a, half = held[in_held_a], len(in_held_a)
    stage, meta, _ = load_upsampler(args.run)
    lanczos = np.stack([resize_face(resize_face(np.asarray(large.images[i]), 64), 128) for i in part_a])
    learned = np.concatenate([to_uint8(stage.predict_on_batch(from_uint8(np.asarray(small.images[part_a[s:s + 64]]))))
                              for s in range(0, half, 64)])
    cache_lanczos = np.stack([resize_face(np.asarray(small.images[i]), 128) for i in part_a])
    print(f"stage {args.run} at step {meta['step']} ({meta.get('cpu_seconds')} CPU-s); {half} vs {half} held-out photos")
    for name, images in (("real 128 downsized to 64 by the service, Lanczos-enlarged (evaluate's reference)", lanczos),
                         ("the 64 px cache's photo, Lanczos-enlarged", cache_lanczos),
                         ("the 64 px cache's photo, enlarged by the stage", learned)):
        print(f"  {frechet_distance_of(classifier.features(images), real[part_b]):.3f}  {name}")
    print(f"  {frechet_distance_of(real[in_held_a], real[part_b]):.3f}  real vs real (the floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
