"""Local data files through `datasets`: json/jsonl/csv/tsv/parquet/txt by ``datasets.load_dataset``, and
CoNLL-U / CoNLL read as text and grouped into sentences (optionally .gz).

Every text file is checked to be UTF-8 first (an error names the line and the byte). Each row keeps the line
it came from in a column LINE, so that later checks (an empty text, an unknown label, a sequence too long)
can name the file and the line: exact for CoNLL, tsv, jsonl and txt; for csv and json when every non-empty
line is one row (otherwise the row is named by its index).
"""

import csv
import gzip
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text"}
CONLL = (".conllu", ".conll")
LINE = "_line"  # the 1-based line of the file a row starts on
TEXT_KINDS = (".json", ".jsonl", ".csv", ".tsv", ".txt", *CONLL)


def data_files(args) -> dict[str, str]:
    """split -> local file of the data arguments (--train_file, --validation_file, --test_file) given."""
    splits = (("train", args.train_file), ("validation", args.validation_file), ("test", args.test_file))
    return {split: path for split, path in splits if path}


def require_empty_folder(out: Path):
    """An output folder must be new or empty: nothing there is overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; give a new or empty folder to export to")


def read_text(path: str) -> str:
    """The file as text; not UTF-8 is an error naming the line, the column and the byte."""
    data = Path(path).read_bytes()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x} at column {column}); "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def row_lines(text: str, kind: str, rows: int) -> list[int] | None:
    """The line each row starts on, when rows and lines correspond one to one (see the module docstring)."""
    lines = text.splitlines()
    if kind == ".txt":
        numbers = list(range(1, len(lines) + 1))
    else:
        first = 1 if kind in (".csv", ".tsv") else 0  # the header
        numbers = [i + 1 for i, line in enumerate(lines) if i >= first and line.strip()]
    return numbers if len(numbers) == rows else None


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
    or CoNLL (whitespace columns, token first, tag last; -DOCSTART- skipped); blank lines end sentences.

    CoNLL-U also gives a column `heads` (HEAD, column 7: the 1-based id of a word's head, 0 for the root) when
    every word of the file has an integer one; word ids must then be 1..n in each sentence and heads 0..n."""
    conllu = file_kind(path) == ".conllu"
    lines = read_text(path).splitlines()
    sentences, tokens, tags, heads, head_lines, start = [], [], [], [], [], None
    all_heads = conllu  # every word so far has an integer HEAD
    for number, line in enumerate(lines + [""], 1):
        if not line.strip():
            if tokens:
                if all_heads:
                    check_heads(path, heads, head_lines)
                sentences.append((tokens, tags, heads, start))
            tokens, tags, heads, head_lines, start = [], [], [], [], None
            continue
        if conllu:
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise ValueError(f"{path}:{number}: a CoNLL-U line has 10 tab-separated columns, found {len(cols)}")
            if "-" in cols[0] or "." in cols[0]:
                continue
            start = start or number
            tokens.append(cols[1])
            tags.append(cols[3])
            all_heads = all_heads and cols[6].isdigit()
            if all_heads:
                if cols[0] != str(len(tokens)):
                    raise ValueError(f"{path}:{number}: word id {cols[0]!r}, expected {len(tokens)} (ids run 1..n)")
                heads.append(int(cols[6]))
                head_lines.append(number)
        else:
            cols = line.split()
            if cols[0] == "-DOCSTART-":
                continue
            if len(cols) < 2:
                raise ValueError(f"{path}:{number}: a CoNLL line needs a token and a tag, found {line!r}")
            start = start or number
            tokens.append(cols[0])
            tags.append(cols[-1])
    columns = {"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]}
    if all_heads:
        columns["heads"] = [s[2] for s in sentences]
    return Dataset.from_dict(columns | {LINE: [s[3] for s in sentences]})


def check_heads(path: str, heads: list[int], lines: list[int]):
    """Every HEAD of a sentence is 0 (the root) or the id of one of its words; `lines`: where each word is."""
    for head, number in zip(heads, lines):
        if head > len(heads):
            raise ValueError(
                f"{path}:{number}: HEAD {head}, but the sentence has {len(heads)} words (HEAD is 0 for the root "
                "or the id of a word)"
            )


def load_files(files: dict[str, str]) -> DatasetDict:
    """Local files by split, all of one kind, through datasets.load_dataset."""
    kinds = {file_kind(p) for p in files.values()}
    if len(kinds) > 1:
        raise ValueError(f"train/validation/test files must be of one kind, got {sorted(kinds)}")
    kind = kinds.pop()
    if kind in CONLL:
        return DatasetDict({split: read_conll(path) for split, path in files.items()})
    texts = {split: read_text(path) for split, path in files.items() if kind in TEXT_KINDS}
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == ".tsv" else {}  # tsv: quotes are text
    if kind in (".csv", ".tsv"):
        kwargs["keep_default_na"] = False  # the words NA, NULL, NONE stay strings
    try:
        loaded = load_dataset(BUILDERS[kind], data_files=files, **kwargs)
    except ValueError as error:  # datasets: 'Instruction "validation" corresponds to no data!'
        empty = [split for split in files if f'"{split}"' in str(error)]
        if "corresponds to no data" in str(error) and empty:
            raise ValueError(f"the {empty[0]} split is empty ({files[empty[0]]})") from error
        raise
    for split, text in texts.items():
        lines = row_lines(text, kind, len(loaded[split]))
        if lines is not None:
            loaded[split] = loaded[split].add_column(LINE, lines)
    return loaded


__all__ = [
    "BUILDERS",
    "CONLL",
    "LINE",
    "data_files",
    "file_kind",
    "load_files",
    "read_conll",
    "read_text",
    "require_empty_folder",
    "row_lines",
]
