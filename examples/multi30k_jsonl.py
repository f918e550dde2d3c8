"""Multi30k Task 1 as jsonl files with `source`/`target` columns, for `--preset m30k-en-de`.

    python examples/multi30k_jsonl.py ../shared/data/multi30k outputs/m30k          # English -> German
    python examples/multi30k_jsonl.py ../shared/data/multi30k outputs/m30k-de-en --source de --target en

Writes train.jsonl (29,000 pairs), validation.jsonl (val, 1,014) and test.jsonl (test_2016_flickr, 1,000: the
standard "Multi30k test"). The raw text is kept as it is: cased, untokenized (scoring is the metric's job).
"""

import argparse
import gzip
import json
from pathlib import Path

SPLITS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the multi30k folder (train.en.gz, val.de.gz, ...)")
    parser.add_argument("out_dir", type=Path, help="a new folder for train/validation/test.jsonl")
    parser.add_argument("--source", default="en", choices=("en", "de"))
    parser.add_argument("--target", default="de", choices=("en", "de"))
    args = parser.parse_args()
    if args.source == args.target:
        raise SystemExit(f"--source and --target are both {args.source!r}; pass two languages")
    if args.out_dir.exists():
        raise SystemExit(f"{args.out_dir} exists; pass a new folder")
    splits = {}
    for split, stem in SPLITS.items():  # every split read and checked before anything is written
        sources = read_lines(args.data_dir / f"{stem}.{args.source}.gz")
        targets = read_lines(args.data_dir / f"{stem}.{args.target}.gz")
        if len(sources) != len(targets):
            raise SystemExit(f"{stem}: {len(sources)} {args.source} lines but {len(targets)} {args.target} lines")
        splits[split] = (stem, sources, targets)
    args.out_dir.mkdir(parents=True)
    for split, (stem, sources, targets) in splits.items():
        with open(args.out_dir / f"{split}.jsonl", "w", encoding="utf-8") as out:
            for source, target in zip(sources, targets):
                out.write(json.dumps({"source": source, "target": target}, ensure_ascii=False) + "\n")
        print(f"{split}: {len(sources):,} pairs from {stem}.{args.source}/{args.target}")


if __name__ == "__main__":
    main()
