"""A task's data through `datasets`: load, check, tokenize, batch.

Each task record (tasks.py) loads its splits (a Hub dataset, local files, or the G2P dictionaries) and renames
them to its standard columns; this module runs the steps every task shares:

    load_task        splits -> standard columns, a validation split held out of train if there is none, the
                     label list; problems are reported before training: missing columns (naming the ones that
                     exist), empty splits, labels outside the label list
    train_tokenizer  the task's tokenizer, trained on the train split only
    tokenize         input_ids + labels of every split; sequences longer than the model allows are truncated
                     with a warning that counts them, or are an error with ``too_long="error"``
    Collator, LengthGroupedBatchSampler, eval_batches    padding and batching
"""

import logging
from dataclasses import dataclass, field

import torch
from datasets import Dataset, DatasetDict

from .files import LINE, data_files
from .graphs import graph_attention_mask
from .tasks import Task, get_task

logger = logging.getLogger(__name__)


@dataclass
class TaskData:
    task: Task
    raw: DatasetDict  # the task's standard columns (tasks.py), and the source line of each row where known
    label_list: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)  # split -> the file its rows come from

    def where(self, split: str, rows: list[int], most: int = 3) -> str:
        """'train.tsv:12, train.tsv:40 (and 3 more)': the places of `rows` of a split, lines where known."""
        dataset, file = self.raw[split], self.files.get(split)
        if file and LINE in dataset.column_names:
            lines = dataset[LINE][:]
            places = [f"{file}:{lines[i]}" for i in rows[:most]]
        else:
            places = [f"{split} split row {i + 1}" + (f" of {file}" if file else "") for i in rows[:most]]
        return ", ".join(places) + (f" (and {len(rows) - most} more)" if len(rows) > most else "")


def source_files(args) -> dict[str, str]:
    """split -> where its rows come from: the local file, or the Hub dataset."""
    if args.dataset_name:
        return {split: args.dataset_name for split in ("train", "validation", "test")}
    files = data_files(args)
    return files | ({"validation": args.train_file} if args.train_file and not args.validation_file else {})


# ----------------------------------------------------------------------------------------------- loading
def load_task(args, seed: int = 42) -> TaskData:
    """Load, check and standardise a task's train/validation/test splits (`args`: DataArguments)."""
    task = get_task(args.task)
    raw = task.load_raw(args)
    if "train" not in raw:
        raise ValueError(f"no 'train' split; the splits are {list(raw)}")
    if "validation" not in raw and "dev" in raw:
        raw["validation"] = raw.pop("dev")

    def standardised(split, dataset):
        out = task.standardise(split, dataset, args)
        if LINE in dataset.column_names and LINE not in out.column_names:  # rows map one to one
            out = out.add_column(LINE, dataset[LINE][:])
        return out

    splits = {split: standardised(split, raw[split]) for split in ("train", "validation", "test") if split in raw}
    if "validation" not in splits:  # hold out part of train, by a seeded shuffle
        held = splits["train"].train_test_split(test_size=args.validation_split_per_mille / 1000, seed=seed)
        splits["train"] = held["train"]
        splits["validation"] = task.evaluation_split(held["test"])
        logger.info(
            "validation: %d rows held out of train (validation_split_per_mille=%d)",
            len(held["test"]),
            args.validation_split_per_mille,
        )
    if args.max_train_samples:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {split} split is empty")
    data = TaskData(task, DatasetDict(splits), files=source_files(args))
    check_empty(data)
    check_vectors(data)
    data.label_list = check_labels(data, args.label_names)
    return data


def check_empty(data: TaskData):
    """An empty text (or token, or reference) is an error naming where it is: it would train on nothing."""
    for split, dataset in data.raw.items():
        for column in data.task.text_columns:
            if column not in dataset.column_names:
                continue
            values = dataset[column][:]
            empty = [
                i
                for i, v in enumerate(values)
                if (not v.strip() if isinstance(v, str) else not v or any(not str(t).strip() for t in v))
            ]
            if empty:
                raise ValueError(
                    f"{data.where(split, empty)}: empty {column!r} ({len(empty)} of {len(values)} "
                    f"{split} rows); remove those rows or fill them in"
                )


def check_labels(data: TaskData, label_names: list[str] | None) -> list[str] | None:
    """The label list (given, or sorted from train); any label outside it is an error naming the labels and
    where they are."""
    task = data.task
    if task.label_column is None:
        return None
    label_list = list(label_names) if label_names else sorted(task.labels_of(data.raw["train"]))
    for split, dataset in data.raw.items():
        unknown = sorted(task.labels_of(dataset) - set(label_list))
        if unknown:
            rows = [
                i
                for i, labels in enumerate(dataset[task.label_column][:])
                if set(labels if isinstance(labels, list) else [labels]) - set(label_list)
            ]
            raise ValueError(
                f"{data.where(split, rows)}: labels {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not in "
                f"the label list {label_list} (set --label_names to the full list)"
            )
    if len(label_list) < 2:
        raise ValueError(
            f"{task.label_column}: found {len(label_list)} distinct label(s) {label_list}; "
            "classification needs at least 2"
        )
    return label_list


# ---------------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(data: TaskData, args, model_max_length: int | None = None):
    """Train the task's tokenizer on its train split only."""
    return data.task.train_tokenizer(data.raw["train"], args, model_max_length)


# ----------------------------------------------------------------------------------------------- features
def tokenize(
    data: TaskData,
    tokenizer,
    max_source_length: int,
    max_target_length: int,
    too_long: str,
    label_all_subwords: bool = False,
    noise=None,
) -> DatasetDict:
    """input_ids and labels for every split (the raw columns stay in data.raw, where evaluation reads them);
    `noise`: the pretraining tasks' corruption settings (noising.Noise)."""
    label_to_id = {label: i for i, label in enumerate(data.label_list or [])}
    special = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}  # a masked token stands for a real one
    features = {}
    for split, dataset in data.raw.items():
        limits = dict(
            max_source_length=max_source_length,
            max_target_length=max_target_length,
            too_long=too_long,
            label_all_subwords=label_all_subwords,
            noise=noise,
            where=lambda rows, split=split: data.where(split, rows),
        )
        columns = data.task.encode(split, dataset, tokenizer, limits, label_to_id)
        for name in [n for n in (("input_ids", "labels") if data.task.seq2seq else ("input_ids",)) if n in columns]:
            # a row of special tokens only (a text of '<pad>'s) trains on nothing
            rows = [
                i
                for i, ids in enumerate(columns[name])
                if isinstance(ids, list) and all(t in special for t in ids if t != -100)
            ]
            if rows:
                raise ValueError(
                    f"{data.where(split, rows)}: the {'input' if name == 'input_ids' else 'target'} has "
                    f"no token but special ones {tokenizer.all_special_tokens}; remove those rows"
                )
        features[split] = Dataset.from_dict(columns)
    return DatasetDict(features)


# ---------------------------------------------------------------------------------------------- batching
class Collator:
    """Pad a list of {input_ids, labels} rows: ids with pad_token_id, list labels with -100; add attention_mask.

    Rows with word_ids and word_edges (--attention_graph) get the (b, 1, n, n) mask of graphs.py instead."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def set_epoch(self, epoch: int):
        """Nothing here depends on the epoch (the pretraining tasks' NoisingCollator does)."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        def pad(seqs, value, dtype=torch.long):
            width = max(len(s) for s in seqs)
            return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs], dtype=dtype)

        if "inputs_embeds" in rows[0]:  # vectors: padded with zero vectors (masked out)
            vectors = [r["inputs_embeds"] for r in rows]
            zero = [0.0] * len(vectors[0][0])
            batch = {"inputs_embeds": pad(vectors, zero, torch.float32)}
        else:
            vectors = [r["input_ids"] for r in rows]
            batch = {"input_ids": pad(vectors, self.pad_token_id)}
        batch["attention_mask"] = pad([[1] * len(s) for s in vectors], 0)
        if "labels" in rows[0]:
            labels = [r["labels"] for r in rows]
            batch["labels"] = pad(labels, -100) if isinstance(labels[0], list) else torch.tensor(labels)
        if "word_ids" in rows[0]:
            width = batch["input_ids"].shape[1]
            masks = [graph_attention_mask(r["word_ids"], r["word_edges"], width) for r in rows]
            batch["attention_mask"] = torch.stack(masks)[:, None]
        return batch


def input_column(features: Dataset) -> str:
    """input_ids, or inputs_embeds for a task read from vectors."""
    return "inputs_embeds" if "inputs_embeds" in features.column_names else "input_ids"


def vector_width(dataset: Dataset) -> int | None:
    """The width of a standardised split's vectors (--features_column), None for text."""
    return len(dataset["features"][0][0]) if "features" in dataset.column_names else None


def check_vectors(data: TaskData):
    """Vector inputs (--features_column) have one width in every split: the width the model is built for."""
    widths = {split: vector_width(d) for split, d in data.raw.items() if vector_width(d) is not None}
    if len(set(widths.values())) > 1:
        raise ValueError(f"features_column: the vectors' widths differ between splits: {widths}")


def row_lengths(dataset: Dataset, seq2seq: bool) -> list[int]:
    """Cost of a row in padded tokens: source length (tokens or vectors), plus target length for seq2seq."""
    lengths = [len(x) for x in dataset[input_column(dataset)][:]]
    if seq2seq:
        lengths = [a + len(y) for a, y in zip(lengths, dataset["labels"][:])]
    return lengths


class LengthGroupedBatchSampler:
    """Shuffled batches of similar-length rows, reproducible from (seed, epoch), cut for `num_processes`.

    Each epoch: permute the rows (torch.Generator seeded with seed + epoch), sort windows of 100 global
    batches by length, cut global batches of `batch_size` rows or of at most `max_tokens` padded tokens *per
    process*, shuffle their order, and split each global batch into `num_processes` pieces (rows k, k + P,
    ... go to piece k), yielded one after the other. Under `accelerate launch`, accelerate's BatchSamplerShard
    hands process r the pieces at positions r, r + P, ... (``batch_size = None`` tells it that the pieces vary
    in length), so every step process r trains on piece r of the same global batch, and one process with P
    times the batch trains on the whole of it. It draws nothing from the global RNG, so a resumed run sees
    exactly the same batches.
    """

    batch_size = None  # for accelerate: pieces of varying length (the rows per piece are `rows_per_process`)

    def __init__(
        self,
        lengths: list[int],
        batch_size: int = 64,
        max_tokens: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_processes: int = 1,
    ):
        if len(lengths) < num_processes:
            raise ValueError(f"{len(lengths)} training rows cannot feed {num_processes} processes")
        self.lengths, self.rows_per_process, self.max_tokens = lengths, batch_size, max_tokens
        self.seed, self.shuffle, self.epoch, self.num_processes = seed, shuffle, 0, num_processes
        self.batches = self.make_batches()

    def set_epoch(self, epoch: int):
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = self.make_batches()

    def global_batches(self, generator) -> list[list[int]]:
        """Batches of all processes together: at most P * batch_size rows or P * max_tokens padded tokens,
        and at least P rows (a short last batch of a window joins the one before it)."""
        processes = self.num_processes
        order = (
            torch.randperm(len(self.lengths), generator=generator).tolist()
            if self.shuffle
            else list(range(len(self.lengths)))
        )
        rows, tokens = self.rows_per_process * processes, self.max_tokens and self.max_tokens * processes
        window = 100 * (rows if tokens is None else max(1, tokens // 8))
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            window_batches, batch, longest = [], [], 0
            for i in chunk:
                longest_if_added = max(longest, self.lengths[i])
                full = len(batch) >= rows if tokens is None else longest_if_added * (len(batch) + 1) > tokens
                if len(batch) >= processes and full:
                    window_batches.append(batch)
                    batch, longest_if_added = [], self.lengths[i]
                batch.append(i)
                longest = longest_if_added
            if len(batch) < processes and window_batches:
                window_batches[-1] += batch
            elif batch:
                window_batches.append(batch)
            batches += window_batches
        if len(batches[-1]) < processes:  # the last window alone was too short: it joins the one before
            batches[-2] += batches.pop()
        return batches

    def make_batches(self) -> list[list[int]]:
        """The pieces, process by process: [batch 0 piece 0, ..., batch 0 piece P-1, batch 1 piece 0, ...]."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = self.global_batches(generator)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return [batch[k :: self.num_processes] for batch in batches for k in range(self.num_processes)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Deterministic eval batches of rows sorted by length (less padding, faster generation)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def steps_per_epoch(sampler: LengthGroupedBatchSampler, accumulation: int) -> int:
    """Optimiser steps in one pass over the global batches."""
    return max(1, len(sampler) // sampler.num_processes // accumulation)


__all__ = [
    "Collator",
    "LengthGroupedBatchSampler",
    "TaskData",
    "check_labels",
    "eval_batches",
    "input_column",
    "load_task",
    "row_lengths",
    "steps_per_epoch",
    "tokenize",
    "train_tokenizer",
    "vector_width",
]
