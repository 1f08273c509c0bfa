"""How often a served attribute vector is one that real faces have: independent draws (before issue 11) vs the table.

Reads a CelebA-format attribute file in place (never copies it), keeps the training split and the model's
attributes, builds the manifest's attribute table from those rows exactly as training does
(facegen.model_folder.attribute_table) and draws 1,000 seeds' attribute vectors per query with the serving rules
(facegen.attributes.seed_face), then counts the vectors that occur in the training rows.

    python bench/attribute_sampling.py --data /work/shared/data/celeba-hq-128

Rules compared for each query:
  before     what serving did before the table: no attrs -> each attribute Bernoulli(frequency); attrs -> the
             named ones on, every other one off
  independent  the new query rules on a model without a table: named ones fixed, the rest Bernoulli(frequency)
  table      the new rules with the table: a whole training row agreeing with the named ones (nearest if none)
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facegen import attributes, model_folder  # noqa: E402
from training.config import DEFAULT_ATTRIBUTES  # noqa: E402

ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
PARTITION_FILE = "list_eval_partition.txt"
QUERIES = ["", "Smiling", "Male", "Eyeglasses", "-Male,Smiling", "Blond_Hair,Male", "-Male,-No_Beard", "-Male,Mustache",
           "Bald,Bangs"]


def read_attribute_file(path: Path):
    """CelebA's format: a count line, a names line, then 'FILE v1 .. vA' with -1/1 values -> (files, names, 0/1)."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    files, rows = [], []
    for line in lines[2:]:
        fields = line.split()
        if fields:
            files.append(fields[0])
            rows.append([1 if v == "1" else 0 for v in fields[1:]])
    return files, names, np.array(rows, np.uint8)


def training_split(data: Path, files):
    """Bool mask of the HQ images whose CelebA original is in CelebA's official training partition (0)."""
    mapping = {}
    for line in (data / MAPPING_FILE).read_text().splitlines()[1:]:
        fields = line.split()
        if fields:
            mapping[int(fields[0])] = fields[2]
    partition = dict(line.split() for line in (data / PARTITION_FILE).read_text().splitlines() if line.strip())
    return np.array([partition.get(mapping.get(int(Path(f).stem)), "") == "0" for f in files])


def old_rule(seed, latent_size, frequencies, query, names):
    """Serving before issue 11: no attrs -> independent draws; attrs -> named on, the rest off."""
    if not query:
        return model_folder.seed_inputs(seed, latent_size, frequencies)[1]
    on = set(attributes.parse_constraints(query, names))
    return np.array([1.0 if a in on else 0.0 for a in names], np.float32)


def measure(rows, names, seeds, latent_size):
    table_field = model_folder.attribute_table(rows)  # what export writes into the manifest
    table = attributes.AttributeTable.from_manifest(table_field, names)
    frequencies = rows.mean(axis=0)
    results = []
    for query in QUERIES:
        constraints = attributes.parse_constraints(query, names)
        fixed, values = attributes.constraint_arrays(constraints, names)
        agreeing = int(table.counts[(table.rows[:, fixed] == values[fixed]).all(axis=1)].sum())
        old_applies = not any(c.startswith(attributes.OFF) for c in constraints)  # '-Name' did not exist before
        before = independent = in_table = nearest = 0
        for seed in seeds:
            if old_applies:
                before += table.contains(old_rule(seed, latent_size, frequencies, query, names))
            independent += table.contains(attributes.seed_face(seed, latent_size, 1.0, frequencies, None,
                                                               constraints, names)[1])
            _, vector, matched = attributes.seed_face(seed, latent_size, 1.0, frequencies, table, constraints, names)
            in_table += table.contains(vector)
            nearest += matched == attributes.NEAREST
        count = len(seeds)
        results.append({"attrs": query, "training_faces_agreeing": agreeing,
                        "before": before / count if old_applies else None, "independent": independent / count,
                        "table": in_table / count, "nearest": nearest / count})
    return table_field, table, frequencies, results


def timing(table, frequencies, names, latent_size, query, repeats=2000):
    constraints = attributes.parse_constraints(query, names)
    started = time.perf_counter()
    for seed in range(repeats):
        attributes.seed_face(seed, latent_size, 1.0, frequencies, table, constraints, names)
    return (time.perf_counter() - started) / repeats * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/celeba-hq-128"),
                        help=f"folder with {ATTRIBUTE_FILE} (and {MAPPING_FILE} + {PARTITION_FILE} for the split)")
    parser.add_argument("--all-rows", action="store_true", help="use all rows, not CelebA's training partition")
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--latent-size", type=int, default=128, help="the model's (the stream draws noise first)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    files, all_names, all_rows = read_attribute_file(args.data / ATTRIBUTE_FILE)
    columns = [all_names.index(a) for a in DEFAULT_ATTRIBUTES]
    rows, names = all_rows[:, columns], list(DEFAULT_ATTRIBUTES)
    split = "all rows"
    if not args.all_rows:
        keep = training_split(args.data, files)
        rows, split = rows[keep], "CelebA's official training partition (via the HQ-to-CelebA mapping)"
    seeds = range(args.seeds)
    table_field, table, frequencies, results = measure(rows, names, seeds, args.latent_size)
    manifest_bytes = len(json.dumps({"attribute_table": table_field}, indent=2))

    print(f"data: {args.data / ATTRIBUTE_FILE}, {split}: {len(rows)} of {len(all_rows)} rows")
    print(f"attributes ({len(names)}): {', '.join(names)}")
    print(f"table: {len(table)} distinct rows, {manifest_bytes / 1024:.0f} KiB in the manifest (indent=2)")
    print(f"seeds 0..{args.seeds - 1}, latent size {args.latent_size}\n")
    print("| attrs | training faces agreeing | before | independent | table | table: nearest |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        before = "n/a" if r["before"] is None else f"{r['before']:.1%}"
        print(f"| `{r['attrs'] or '(none)'}` | {r['training_faces_agreeing']} | {before} | {r['independent']:.1%} | "
              f"{r['table']:.1%} | {r['nearest']:.1%} |")
    print()
    # The cost of seed -> inputs per face; most of it is constructing RandomState(seed), table or not.
    for query in ("", "Smiling", "-Male,Mustache"):
        print(f"seed_face, attrs={query or '(none)'}: independent "
              f"{timing(None, frequencies, names, args.latent_size, query):.0f} us, table "
              f"{timing(table, frequencies, names, args.latent_size, query):.0f} us per face")
    if args.json:
        args.json.write_text(json.dumps({"split": split, "rows": len(rows), "distinct_rows": len(table),
                                         "seeds": args.seeds, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
