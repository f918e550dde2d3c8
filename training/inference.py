"""Saved folders: the one loader, and what runs on a loaded model (evaluate a split, predict texts).

A folder written by `scratchformer train`, `save_pretrained` or the Hub export holds config.json (its
`architectures` names the head), the weights, usually the tokenizer, and, from training, training_args.json
(which names the task and its data). `scratchformer evaluate`, `predict`, `attention`, `export` and `push`
all load through `load_saved`.
"""

import json
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, HfArgumentParser

import scratchformer

from . import ctranslate2_export
from .args import DataArguments
from .data import load_task, tokenize
from .evaluation import evaluate
from .noising import Noise
from .tasks import Task, get_task, task_of_architecture

TRAINING_ARGS = "training_args.json"


@dataclass
class SavedModel:
    model: object  # a Scratchformer head, in eval mode
    tokenizer: object | None  # None when the folder has no tokenizer files
    task: Task | None  # None for the bare ScratchformerModel / ScratchformerEncoderModel
    training_args: dict = field(default_factory=dict)  # training_args.json, by dataclass name

    def require_task(self, what: str) -> Task:
        if self.task is None or self.tokenizer is None:
            missing = "a task head" if self.task is None else "tokenizer files"
            raise ValueError(
                f"{what} needs a folder with {missing}; this one holds {type(self.model).__name__}"
                + ("" if self.tokenizer is not None else " and no tokenizer")
            )
        return self.task


def load_saved(model_dir) -> SavedModel:
    """The head that config.json names, its tokenizer, and its task (training_args.json's, else the head's)."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not a saved model folder: it has no config.json "
            "(pass a folder written by `scratchformer train` or save_pretrained)"
        )
    config = AutoConfig.from_pretrained(folder)
    architecture = (config.architectures or ["ScratchformerForConditionalGeneration"])[0]
    heads = {model_class.__name__: model_class for model_class in scratchformer.AUTO_CLASSES.values()}
    if architecture not in heads:
        raise ValueError(f"{folder}/config.json names architecture {architecture!r}; allowed: {', '.join(heads)}")
    model = heads[architecture].from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder) if (folder / "tokenizer_config.json").is_file() else None
    saved = json.loads((folder / TRAINING_ARGS).read_text()) if (folder / TRAINING_ARGS).is_file() else {}
    if "task" in saved.get("DataArguments", {}):
        task = get_task(saved["DataArguments"]["task"])
    else:
        task = task_of_architecture(architecture)
    return SavedModel(model, tokenizer, task, saved)


def data_arguments(saved: SavedModel, overrides: dict[str, str] | None) -> DataArguments:
    """The saved run's data arguments with `overrides` (strings, converted as the command line would)."""
    allowed = [f.name for f in fields(DataArguments)]
    unknown = sorted(set(overrides or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unknown data argument(s) {unknown}; allowed: {', '.join(allowed)}")
    parser = HfArgumentParser(DataArguments)
    parser.set_defaults(**saved.training_args.get("DataArguments", {"task": saved.task.name}))
    flags = [item for name, value in (overrides or {}).items() for item in (f"--{name}", str(value))]
    (data_args,) = parser.parse_args_into_dataclasses(flags, look_for_args_file=False)
    return data_args


def evaluate_saved(
    model_dir, data_overrides: dict | None = None, split="test", batch_size=256, num_beams=None, max_samples=None
) -> dict:
    """Score a saved model on a split of its task's data (or of other files given as overrides)."""
    saved = load_saved(model_dir)
    task = saved.require_task("evaluate")
    data_args = data_arguments(saved, data_overrides)
    data = load_task(data_args, saved.training_args.get("TrainArguments", {}).get("seed", 42))
    if split not in data.raw:
        raise ValueError(f"split={split!r}; this data has {list(data.raw)}")
    data.raw = type(data.raw)({split: data.raw[split]})
    model, tokenizer = saved.model, saved.tokenizer
    if data.label_list is not None:  # the saved model's label ids
        data.label_list = [model.config.id2label[i] for i in range(model.config.num_labels)]
    limit = model.config.max_position_embeddings
    features = tokenize(
        data,
        tokenizer,
        data_args.max_source_length or limit,
        data_args.max_target_length or limit,
        data_args.too_long,
        data_args.label_all_subwords,
        Noise.of(data_args, saved.training_args.get("TrainArguments", {}).get("seed", 42)),
    )[split]
    raw = data.raw[split]
    if max_samples:
        keep = range(min(max_samples, len(features)))
        features, raw = features.select(keep), raw.select(keep)
    if num_beams and task.seq2seq:
        model.generation_config.num_beams = num_beams
    scores, _ = evaluate(model, tokenizer, task, features, raw, None, batch_size, data.label_list, desc=split)
    return {"task": task.name, "split": split, "rows": len(features), **scores}


def ctranslate2_generator(model_dir) -> ctranslate2_export.CTranslate2Generator:
    """A CTranslate2 export folder as it is, or a saved run converted into a temporary one."""
    if (Path(model_dir) / ctranslate2_export.MODEL_FILE).is_file():
        return ctranslate2_export.CTranslate2Generator(model_dir)
    saved = load_saved(model_dir)
    with tempfile.TemporaryDirectory(prefix="scratchformer-ct2-") as folder:
        ctranslate2_export.export_ctranslate2(saved.model, saved.tokenizer, folder)
        return ctranslate2_export.CTranslate2Generator(folder)  # loaded into memory: the folder may go


def predict(model_dir, texts: list[str], num_beams=None, engine="torch") -> tuple[Task, list]:
    """(the task, its output for each text): phonemes or a translation, a (label, probability), or (word, tag)s.
    engine="ctranslate2": a seq2seq model decoded by CTranslate2 (its export folder, or the saved run converted)."""
    if engine == "ctranslate2":
        outputs = ctranslate2_generator(model_dir).generate(texts, num_beams)
        return task_of_architecture(ctranslate2_export.HEAD), outputs
    if engine != "torch":
        raise ValueError(f"engine={engine!r}; allowed: torch, ctranslate2")
    saved = load_saved(model_dir)
    task = saved.require_task("predict")
    if saved.model.config.input_features_dim:
        raise ValueError(
            f"{model_dir} reads vectors of {saved.model.config.input_features_dim} numbers, not text: call the model "
            "with inputs_embeds (see the README's 'Any vector set as input')"
        )
    graph = saved.training_args.get("DataArguments", {}).get("attention_graph", "none")
    if graph != "none":
        raise ValueError(
            f"{model_dir} was trained with attention_graph={graph!r}: it needs each sentence's tree, which plain "
            "text does not give; score CoNLL-U files with `scratchformer evaluate` instead"
        )
    return task, task.predict(saved.model, saved.tokenizer, texts, num_beams)


__all__ = ["SavedModel", "evaluate_saved", "load_saved", "predict"]
