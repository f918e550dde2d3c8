"""The unlabelled English text of the benchmark data, one text per line, for `--task masked-lm` / `denoising`.

    python examples/pretraining_corpus.py ../shared/data corpus.txt

Train splits only (no validation or test text, labelled or not, is seen in pretraining):
SST-2 (GLUE train: 67,349 sentences and phrases, lower-cased PTB tokens), UD English EWT train (12,544 sentences,
the `# text` lines), Multi30k train English side (29,000 captions). Duplicate lines are written once.
"""

import argparse
import gzip
from pathlib import Path


def sst2(data: Path):
    with gzip.open(data / "sst2/glue/train.tsv.gz", "rt", encoding="utf-8") as f:
        next(f)  # header: sentence<TAB>label
        for line in f:
            yield line.rsplit("\t", 1)[0].strip()


def ewt(data: Path):
    with gzip.open(data / "ud-english-ewt/en_ewt-ud-train.conllu.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("# text = "):
                yield line[len("# text = ") :].strip()


def multi30k(data: Path):
    with gzip.open(data / "multi30k/train.en.gz", "rt", encoding="utf-8") as f:
        for line in f:
            yield line.strip()


SOURCES = {"sst2": sst2, "ud-english-ewt": ewt, "multi30k": multi30k}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the benchmark data folder (sst2/, ud-english-ewt/, multi30k/)")
    parser.add_argument("out", type=Path, help="the text file to write")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; pass a new file")
    seen, counts = set(), {}
    with open(args.out, "w", encoding="utf-8") as out:
        for name, source in SOURCES.items():
            counts[name] = 0
            for text in source(args.data_dir):
                if text and text not in seen:
                    seen.add(text)
                    out.write(text + "\n")
                    counts[name] += 1
    print(f"{args.out}: {sum(counts.values())} texts ({', '.join(f'{k} {v}' for k, v in counts.items())})")


if __name__ == "__main__":
    main()
