"""The model card: rendered from model_card.md, parsed back by huggingface_hub, metadata valid; the template
ships inside the package (editable and wheel installs)."""

import importlib.resources
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import transformers
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from scratchformer.configuration.configuration_scratchformer import CHOICES
from scratchformer.modeling.compat_scratchformer import TESTED_TRANSFORMERS
from scratchformer.training.export import CardInfo, load_template, render_model_card

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import HEADS, build_model, card_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_TAGS = {
    "seq2seq": "text2text-generation",
    "seq_cls": "text-classification",
    "token_cls": "token-classification",
}
SECTIONS = ["## How to use", "## Architecture", "## Training details", "## Evaluation results", "## Limitations"]


@pytest.fixture(scope="module")
def models():
    return {head: build_model(head) for head in HEADS}


def render(model, info, **pictures):
    return render_model_card(model, info, pictures)


@pytest.mark.parametrize("head", list(HEADS))
def test_card_metadata_parses_and_validates(models, head):
    info = card_info(head, "someone/tiny")
    card = ModelCard(render(models[head], info))  # parses the YAML into ModelCardData (raises if invalid)
    data = card.data
    assert isinstance(data, ModelCardData)
    assert data.library_name == "transformers" and data.pipeline_tag == PIPELINE_TAGS[head]
    assert data.license == "apache-2.0" and data.datasets == [info.dataset] and data.language == ["en"]
    assert data.metrics == list(info.metrics)
    assert {"scratchformer", "custom_code"} <= set(data.tags)
    # model-index: one result per evaluated metric, round-tripped through huggingface_hub's own converters
    assert data.model_name == "tiny"
    results = {r.metric_type: r for r in data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == info.metrics
    assert all(
        isinstance(r, EvalResult)
        and r.task_type == PIPELINE_TAGS[head]
        and r.dataset_type == info.dataset
        and r.dataset_name == info.dataset_name
        and r.dataset_split == "test"
        for r in results.values()
    )
    raw = yaml.safe_load(card.content.split("---")[1])
    assert raw["model-index"] == eval_results_to_model_index("tiny", data.eval_results)
    assert model_index_to_eval_results(raw["model-index"])[0] == "tiny"
    ModelCardData(**raw)  # the metadata as a dict validates too


@pytest.mark.parametrize("head", list(HEADS))
def test_card_body(models, head):
    model, info = models[head], card_info(head, "someone/tiny")
    text = render(model, info, loss_curve="loss_curve.png", attention_map="attention_map.png")
    body = ModelCard(text).text
    assert [s for s in SECTIONS if s in body] == SECTIONS
    assert "![loss curve](loss_curve.png)" in body and "![attention maps](attention_map.png)" in body
    for field in CHOICES:  # every variant choice in the architecture table
        assert re.search(rf"^\| `{field}` \| {getattr(model.config, field)} \|", body, flags=re.M), field
    assert f"| parameters | {model.num_parameters():,} |" in body
    for metric, value in info.metrics.items():
        assert f"| {metric} | {value:.4g} |" in body
    snippet = re.search(r"```python\n(.*?)```", body, flags=re.S).group(1)
    compile(snippet, "snippet", "exec")  # valid Python; test_hub.py runs it against the loopback Hub
    assert '"someone/tiny"' in snippet and "trust_remote_code=True" in snippet
    oldest, newest = TESTED_TRANSFORMERS  # the range the shipped code was tested on, and the exporting release
    assert f"tested on **transformers {oldest} to {newest}**" in body
    assert f"written with transformers {transformers.__version__}" in body
    assert "{{" not in text and "{%" not in text  # nothing left unrendered


def test_card_without_results_or_repo(models):
    model = models["seq2seq"]
    card = ModelCard(render_model_card(model, CardInfo(), {}, repo_ref="g2p-model"))
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "This checkpoint was not evaluated." in card.text
    assert "No training hyper-parameters were recorded" in card.text
    assert 'from_pretrained("g2p-model"' in card.text and "scratchformer push g2p-model" in card.text
    assert "![" not in card.text


def test_card_info_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown fields \['bleu'\]; allowed: .*metrics"):
        CardInfo.from_dict({"bleu": 1.0})


def test_template_is_the_package_resource():
    """training/model_card.md links to the repo root's template, which importlib.resources reads."""
    root_template = (ROOT / "model_card.md").read_text(encoding="utf-8")
    assert load_template() == root_template
    assert importlib.resources.files("scratchformer.training").joinpath("model_card.md").read_text() == root_template
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "model_card.md" in pyproject["tool"]["setuptools"]["package-data"]["scratchformer.training"]
    assert "jinja2" in " ".join(pyproject["project"]["dependencies"]).lower()  # ModelCard.from_template needs it


def test_wheel_ships_the_template(tmp_path):
    """Build a wheel from a copy of the sources (symlinks kept): the template is inside, as a plain file."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "model_card.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("src", "configuration", "modeling", "training"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    assert (source / "training" / "model_card.md").is_symlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("scratchformer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("scratchformer/training/model_card.md").decode() == (ROOT / "model_card.md").read_text()
