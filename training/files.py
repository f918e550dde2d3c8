"""Local data files through `datasets`: json/jsonl/csv/tsv/parquet/txt by ``datasets.load_dataset``, and
CoNLL-U / CoNLL read as text and grouped into sentences (optionally .gz)."""

import csv
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text"}
CONLL = (".conllu", ".conll")


def file_kind(path: str) -> str:
    suffixes = [s for s in Path(path).suffixes if s != ".gz"]
    suffix = suffixes[-1].lower() if suffixes else ""
    if suffix in CONLL:
        return suffix
    if suffix not in BUILDERS:
        raise ValueError(
            f"{path}: unknown file type {suffix!r}; allowed: {', '.join(list(BUILDERS) + list(CONLL))} (optionally .gz)"
        )
    return suffix


def read_conll(path: str) -> Dataset:
    """CoNLL-U (word form in column 2, UPOS in column 4; comments, multi-word ranges and empty nodes skipped)
    or CoNLL (whitespace columns, token first, tag last; -DOCSTART- skipped); blank lines end sentences."""
    conllu = file_kind(path) == ".conllu"
    lines = load_dataset("text", data_files={"train": path}, split="train")["text"][:]
    sentences, tokens, tags = [], [], []
    for number, line in enumerate(lines + [""], 1):
        line = line.rstrip("\n")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        if conllu:
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise ValueError(f"{path}:{number}: a CoNLL-U line has 10 tab-separated columns, found {len(cols)}")
            if "-" in cols[0] or "." in cols[0]:
                continue
            tokens.append(cols[1])
            tags.append(cols[3])
        else:
            cols = line.split()
            if cols[0] == "-DOCSTART-":
                continue
            if len(cols) < 2:
                raise ValueError(f"{path}:{number}: a CoNLL line needs a token and a tag, found {line!r}")
            tokens.append(cols[0])
            tags.append(cols[-1])
    return Dataset.from_dict({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})


def load_files(files: dict[str, str]) -> DatasetDict:
    """Local files by split, all of one kind, through datasets.load_dataset."""
    kinds = {file_kind(p) for p in files.values()}
    if len(kinds) > 1:
        raise ValueError(f"train/validation/test files must be of one kind, got {sorted(kinds)}")
    kind = kinds.pop()
    if kind in CONLL:
        return DatasetDict({split: read_conll(path) for split, path in files.items()})
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == ".tsv" else {}  # tsv: quotes are text
    if kind in (".csv", ".tsv"):
        kwargs["keep_default_na"] = False  # the words NA, NULL, NONE stay strings
    try:
        return load_dataset(BUILDERS[kind], data_files=files, **kwargs)
    except ValueError as error:  # datasets: 'Instruction "validation" corresponds to no data!'
        empty = [split for split in files if f'"{split}"' in str(error)]
        if "corresponds to no data" in str(error) and empty:
            raise ValueError(f"the {empty[0]} split is empty ({files[empty[0]]})") from error
        raise


__all__ = ["BUILDERS", "CONLL", "file_kind", "load_files", "read_conll"]
