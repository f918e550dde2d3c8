"""Tasks through `datasets`: load, check, tokenize, batch.

Every task is loaded with ``datasets.load_dataset`` (a Hub name or local json/jsonl/csv/tsv/parquet files;
CoNLL-U / CoNLL files are read as text and grouped into sentences) and renamed to standard columns:

    g2p / translation         train: source, target            validation/test: source, references (list)
    token-classification      tokens (list[str]), tags (list[str])
    sequence-classification   text, label (str)

Problems are reported before training: unknown task, missing columns (naming the ones that exist), empty
splits, labels outside the label list, and sequences longer than the model allows (truncated with a warning
that counts them, or an error with ``too_long="error"``).
"""

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset

from .args import SEQ2SEQ_TASKS, TASKS, DataArguments
from .g2p import load_cmudict, load_g014b2b
from .tokenizers import encode_phonemes, encode_texts, train_g2p_tokenizer, train_text_tokenizer

logger = logging.getLogger(__name__)

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text"}
CONLL = (".conllu", ".conll")


@dataclass
class TaskData:
    task: str
    raw: DatasetDict  # standard columns, see module docstring
    label_list: list[str] | None = None


# ----------------------------------------------------------------------------------------------- loading
def file_kind(path: str) -> str:
    suffixes = [s for s in Path(path).suffixes if s != ".gz"]
    suffix = suffixes[-1].lower() if suffixes else ""
    if suffix in CONLL:
        return suffix
    if suffix not in BUILDERS:
        raise ValueError(f"{path}: unknown file type {suffix!r}; allowed: {', '.join(list(BUILDERS) + list(CONLL))} (optionally .gz)")
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


def load_raw(args: DataArguments) -> DatasetDict:
    """The task's splits as loaded, before renaming (G2P sources are already standard)."""
    if args.task == "g2p" and not (args.dataset_name or args.train_file):
        return load_g014b2b(args.data_dir) if args.data_dir else load_cmudict(keep_stress=args.g2p_keep_stress)
    if args.dataset_name:
        return load_dataset(args.dataset_name, args.dataset_config)
    files = {s: f for s, f in (("train", args.train_file), ("validation", args.validation_file),
                               ("test", args.test_file)) if f}
    if "train" not in files:
        raise ValueError(f"task={args.task!r} needs data: --dataset_name (Hub) or --train_file (local file)")
    return load_files(files)


def require_columns(split: str, dataset: Dataset, columns: dict[str, str]):
    """columns: argument name -> column name; raise naming the missing ones and the columns that exist."""
    missing = {arg: col for arg, col in columns.items() if col not in dataset.column_names}
    if missing:
        wanted = ", ".join(f"--{arg} {col!r}" for arg, col in missing.items())
        raise ValueError(f"{split} split: column(s) not found: {wanted}; the columns are {dataset.column_names}")


def standardise(task: str, split: str, dataset: Dataset, args: DataArguments) -> Dataset:
    """Rename/convert the columns of one split to the standard ones of its task."""
    if task in SEQ2SEQ_TASKS:
        if {"source", "references"} <= set(dataset.column_names) or {"source", "target"} == set(dataset.column_names):
            pass  # already standard (the G2P loaders)
        elif args.source_lang:
            require_columns(split, dataset, {"translation_column": args.translation_column})
            langs = (args.source_lang, args.target_lang)
            first = dataset[0][args.translation_column] if len(dataset) else {}
            absent = [lang for lang in langs if lang not in first]
            if absent:
                raise ValueError(f"{split} split: languages {absent} not in column {args.translation_column!r} "
                                 f"(it has {sorted(first)}); set --source_lang/--target_lang")
            pairs = dataset[args.translation_column][:]
            dataset = Dataset.from_dict({"source": [p[langs[0]] for p in pairs], "target": [p[langs[1]] for p in pairs]})
        else:
            require_columns(split, dataset, {"source_column": args.source_column, "target_column": args.target_column})
            dataset = Dataset.from_dict({"source": dataset[args.source_column][:], "target": dataset[args.target_column][:]})
        if split != "train" and "references" not in dataset.column_names:
            dataset = dataset.map(lambda row: {"references": [row["target"]]}, remove_columns=["target"])
        return dataset
    if task == "token-classification":
        require_columns(split, dataset, {"tokens_column": args.tokens_column, "tags_column": args.tags_column})
        tags = dataset[args.tags_column][:]
        feature = dataset.features[args.tags_column]
        names = getattr(getattr(feature, "feature", None), "names", None)  # Sequence(ClassLabel) on the Hub
        if names:
            tags = [[names[t] for t in sentence] for sentence in tags]
        return Dataset.from_dict({"tokens": dataset[args.tokens_column][:], "tags": [[str(t) for t in s] for s in tags]})
    require_columns(split, dataset, {"text_column": args.text_column, "label_column": args.label_column})
    labels = dataset[args.label_column][:]
    feature = dataset.features[args.label_column]
    if isinstance(feature, ClassLabel):
        labels = [feature.names[y] for y in labels]
    return Dataset.from_dict({"text": dataset[args.text_column][:], "label": [str(y) for y in labels]})


def load_task(args: DataArguments, seed: int = 42) -> TaskData:
    """Load, check and standardise a task's train/validation/test splits."""
    if args.task not in TASKS:
        raise ValueError(f"task={args.task!r}; allowed: {', '.join(TASKS)}")
    raw = load_raw(args)
    if "train" not in raw:
        raise ValueError(f"no 'train' split; the splits are {list(raw)}")
    if "validation" not in raw and "dev" in raw:
        raw["validation"] = raw.pop("dev")
    splits = {}
    for split in ("train", "validation", "test"):
        if split in raw:
            splits[split] = standardise(args.task, split, raw[split], args)
    if "validation" not in splits:  # hold out part of train, by a seeded shuffle
        held = splits["train"].train_test_split(test_size=args.validation_split_per_mille / 1000, seed=seed)
        splits["train"] = held["train"]
        splits["validation"] = standardise(args.task, "validation", held["test"], args) if args.task in SEQ2SEQ_TASKS else held["test"]
        logger.info("validation: %d rows held out of train (validation_split_per_mille=%d)", len(held["test"]),
                    args.validation_split_per_mille)
    if args.max_train_samples:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {split} split is empty")
    label_list = check_labels(args, splits)
    return TaskData(args.task, DatasetDict(splits), label_list)


def check_labels(args: DataArguments, splits: dict[str, Dataset]) -> list[str] | None:
    """The label list (given, or sorted from train); any label outside it is an error naming the labels."""
    if args.task in SEQ2SEQ_TASKS:
        return None
    column = "tags" if args.task == "token-classification" else "label"

    def labels_of(dataset):
        values = dataset[column][:]
        return {t for row in values for t in row} if column == "tags" else set(values)

    label_list = list(args.label_names) if args.label_names else sorted(labels_of(splits["train"]))
    for split, dataset in splits.items():
        unknown = sorted(labels_of(dataset) - set(label_list))
        if unknown:
            raise ValueError(f"{split} split: labels {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not in the "
                             f"label list {label_list} (set --label_names to the full list)")
    if len(label_list) < 2:
        raise ValueError(f"{column}: found {len(label_list)} distinct label(s) {label_list}; classification needs at least 2")
    return label_list


# ---------------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(data: TaskData, args: DataArguments, model_max_length: int | None = None):
    """Train the task's tokenizer on its train split only."""
    train = data.raw["train"]
    if data.task == "g2p":
        return train_g2p_tokenizer(train["source"][:], train["target"][:], model_max_length)
    if data.task == "translation":  # one joint vocabulary for both sides (the embeddings are shared)
        texts = (t for pair in zip(train["source"][:], train["target"][:]) for t in pair)
    elif data.task == "token-classification":
        texts = (" ".join(tokens) for tokens in train["tokens"][:])
    else:
        texts = iter(train["text"][:])
    return train_text_tokenizer(texts, args.tokenizer_type, args.vocab_size, model_max_length)


# ----------------------------------------------------------------------------------------------- features
def cut(ids: list[int], limit: int, keep_last: bool = True) -> list[int]:
    """Truncate to `limit` ids, keeping the final </s> when keep_last."""
    if len(ids) <= limit:
        return ids
    return ids[: limit - 1] + ids[-1:] if keep_last else ids[:limit]


def check_lengths(name: str, lengths: list[int], limit: int, too_long: str, split: str, argument: str):
    """Warn with a count (truncate) or raise (error) about sequences over `limit` tokens."""
    over = sum(n > limit for n in lengths)
    if not over:
        return
    message = (f"{split} split: {over} of {len(lengths)} {name} sequences are longer than {limit} tokens "
               f"(longest {max(lengths)}; limit from --{argument} / the model's max_position_embeddings)")
    if too_long == "error":
        raise ValueError(message + "; shorten them, raise the limit, or pass --too_long truncate")
    logger.warning(message + "; they are truncated (too_long=truncate)")


def tokenize(data: TaskData, tokenizer, max_source_length: int, max_target_length: int, too_long: str,
             label_all_subwords: bool = False, num_proc: int | None = None) -> DatasetDict:
    """Token ids and labels for every split; the raw columns are kept only where evaluation needs them."""
    label_to_id = {label: i for i, label in enumerate(data.label_list or [])}
    features = {}
    for split, dataset in data.raw.items():
        if data.task in SEQ2SEQ_TASKS:
            sources = encode_texts(tokenizer, dataset["source"][:])
            targets = dataset["target"][:] if split == "train" else [refs[0] for refs in dataset["references"][:]]
            if data.task == "g2p":
                vocab = tokenizer.get_vocab()
                labels = [encode_phonemes(tokenizer, t, vocab) for t in targets]
            else:
                labels = encode_texts(tokenizer, targets)
            check_lengths("source", [len(s) for s in sources], max_source_length, too_long, split, "max_source_length")
            check_lengths("target", [len(t) for t in labels], max_target_length, too_long, split, "max_target_length")
            columns = {"input_ids": [cut(s, max_source_length) for s in sources],
                       "labels": [cut(t, max_target_length) for t in labels]}
        elif data.task == "token-classification":
            encoded = tokenizer(dataset["tokens"][:], is_split_into_words=True)
            input_ids, labels = [], []
            for i, tags in enumerate(dataset["tags"][:]):
                previous, row = None, []
                for word in encoded.word_ids(i):
                    if word is None:
                        row.append(-100)
                    elif word != previous or label_all_subwords:
                        row.append(label_to_id[tags[word]])
                    else:
                        row.append(-100)
                    previous = word
                input_ids.append(encoded["input_ids"][i])
                labels.append(row)
            check_lengths("token", [len(s) for s in input_ids], max_source_length, too_long, split, "max_source_length")
            columns = {"input_ids": [cut(s, max_source_length) for s in input_ids],
                       "labels": [cut(t, max_source_length) for t in labels]}
        else:
            input_ids = encode_texts(tokenizer, dataset["text"][:])
            check_lengths("text", [len(s) for s in input_ids], max_source_length, too_long, split, "max_source_length")
            columns = {"input_ids": [cut(s, max_source_length) for s in input_ids],
                       "labels": [label_to_id[y] for y in dataset["label"][:]]}
        features[split] = Dataset.from_dict(columns)
    return DatasetDict(features)


# ---------------------------------------------------------------------------------------------- batching
class Collator:
    """Pad a list of {input_ids, labels} rows: ids with pad_token_id, list labels with -100; add attention_mask."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        def pad(seqs, value):
            width = max(len(s) for s in seqs)
            return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs], dtype=torch.long)

        ids = [r["input_ids"] for r in rows]
        batch = {"input_ids": pad(ids, self.pad_token_id),
                 "attention_mask": pad([[1] * len(s) for s in ids], 0)}
        if "labels" in rows[0]:
            labels = [r["labels"] for r in rows]
            batch["labels"] = pad(labels, -100) if isinstance(labels[0], list) else torch.tensor(labels)
        return batch


def row_lengths(dataset: Dataset, seq2seq: bool) -> list[int]:
    """Cost of a row in padded tokens: source length, plus target length for seq2seq."""
    lengths = [len(x) for x in dataset["input_ids"][:]]
    if seq2seq:
        lengths = [a + len(y) for a, y in zip(lengths, dataset["labels"][:])]
    return lengths


class LengthGroupedBatchSampler:
    """Shuffled batches of similar-length rows, reproducible from (seed, epoch).

    Each epoch: permute the rows (torch.Generator seeded with seed + epoch), sort windows of 100 batches by
    length, cut batches of `batch_size` rows or of at most `max_tokens` padded tokens, then shuffle the batch
    order. It draws nothing from the global RNG, so a resumed run sees exactly the same batches.
    """

    def __init__(self, lengths: list[int], batch_size: int = 64, max_tokens: int | None = None, seed: int = 0,
                 shuffle: bool = True):
        self.lengths, self.batch_size, self.max_tokens = lengths, batch_size, max_tokens
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.batches = self.make_batches()

    def set_epoch(self, epoch: int):
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = self.make_batches()

    def make_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist() if self.shuffle else list(range(len(self.lengths)))
        window = 100 * (self.batch_size if self.max_tokens is None else max(1, self.max_tokens // 8))
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: self.lengths[i])
            batch, longest = [], 0
            for i in chunk:
                longest_if_added = max(longest, self.lengths[i])
                full = (len(batch) >= self.batch_size if self.max_tokens is None
                        else longest_if_added * (len(batch) + 1) > self.max_tokens)
                if batch and full:
                    batches.append(batch)
                    batch, longest_if_added = [], self.lengths[i]
                batch.append(i)
                longest = longest_if_added
            if batch:
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Deterministic eval batches of rows sorted by length (less padding, faster generation)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def steps_per_epoch(sampler: LengthGroupedBatchSampler, accumulation: int, num_processes: int = 1) -> int:
    """Optimiser steps in one pass over the batches (each process takes every num_processes-th batch)."""
    return max(1, math.ceil(len(sampler) / num_processes) // accumulation)


__all__ = ["Collator", "LengthGroupedBatchSampler", "TaskData", "check_labels", "eval_batches", "load_files", "load_task",
           "read_conll", "row_lengths", "steps_per_epoch", "tokenize", "train_tokenizer"]
