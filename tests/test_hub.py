"""Hub round trip through a real Hub-protocol server (olah on loopback): pull with and without the package.

Fresh processes (tests/hub_client.py) load every head by repo id over HTTP; their outputs must equal
those of the in-memory models that were exported.
"""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import HEADS, TEXTS, WORDS, client_env, local_outputs  # noqa: E402

pytest_plugins = ["hub_fixtures"]

MODES = ["remote_code", "package"]


@pytest.fixture(scope="module")
def local(hub_exports):
    return local_outputs(hub_exports)


@pytest.mark.parametrize("mode", MODES)
def test_pulled_code_comes_from_where_expected(pulled, mode):
    result = pulled[mode]
    assert set(result["modules"]) == {"seq2seq", "base", "seq_cls", "token_cls"}
    if mode == "remote_code":  # the Hub copy of the sources, cached by transformers, not the package
        assert not result["package_imported"]
        assert all(
            module.startswith("transformers_modules.") and module.endswith(".modeling_scratchformer")
            for module in result["modules"].values()
        ), result["modules"]
    else:
        assert set(result["modules"].values()) == {"scratchformer.modeling.modeling_scratchformer"}


@pytest.mark.parametrize("mode", MODES)
def test_pulled_outputs_equal_local(pulled, local, mode):
    result = pulled[mode]
    assert torch.equal(result["input_ids"], local["input_ids"])  # AutoTokenizer, no custom code
    for key in ("seq2seq_logits", "base_hidden", "seq_cls_logits", "token_cls_logits"):
        torch.testing.assert_close(result["outputs"][key], local[key], msg=lambda m, key=key: f"{key}: {m}")
    assert torch.equal(result["outputs"]["seq2seq_generated"], local["seq2seq_generated"])


@pytest.mark.parametrize("mode", MODES)
def test_pulled_generation_uses_its_cache(pulled, mode):
    """The pulled code decodes with this transformers' cache as without it, score for score: a cache that
    never reaches the forward (as when a release renames its argument) decodes each step from the last
    token alone, which changes the scores of every step after the first."""
    outputs = pulled[mode]["outputs"]
    assert outputs["seq2seq_scores"].shape[1] == outputs["seq2seq_generated"].shape[1] - 1 > 2
    torch.testing.assert_close(outputs["seq2seq_scores"], outputs["seq2seq_scores_uncached"])


def test_local_outputs_are_not_degenerate(local):
    """Guards the comparisons above: different inputs and heads give different numbers."""
    logits = local["seq_cls_logits"]
    assert not torch.allclose(logits[0], logits[1])
    assert local["token_cls_logits"].argmax(-1).unique().numel() > 1
    generated = local["seq2seq_generated"]
    assert generated.shape[1] > 2 and not torch.equal(generated[0], generated[1])


def test_card_snippets_run_as_written(pulled, hub_exports):
    """Each README's Python block, downloaded over HTTP, runs as is for a user without the package."""
    snippets = pulled["remote_code"]["snippets"]
    assert set(snippets) == set(HEADS)
    for head, snippet in snippets.items():
        assert f'"{hub_exports[head].repo_id}"' in snippet["code"]
        assert "trust_remote_code=True" in snippet["code"]

    seq2seq, tokenizer = hub_exports["seq2seq"].model, hub_exports["seq2seq"].tokenizer
    inputs = tokenizer([TEXTS[0]], return_tensors="pt")
    output_ids = seq2seq.generate(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=32
    )
    assert snippets["seq2seq"]["stdout"] == f"{tokenizer.batch_decode(output_ids, skip_special_tokens=True)}\n"

    with torch.no_grad():
        label = hub_exports["seq_cls"].model(**tokenizer(TEXTS[0], return_tensors="pt")).logits.argmax(-1).item()
    assert f"'label': '{hub_exports['seq_cls'].model.config.id2label[label]}'" in snippets["seq_cls"]["stdout"]
    from transformers import pipeline

    tagger = pipeline("token-classification", model=hub_exports["token_cls"].model, tokenizer=tokenizer)
    tags = tagger(TEXTS[0])
    assert tags and snippets["token_cls"]["stdout"] == f"{tags}\n"  # the card's pipeline == a local one


def test_fine_tuning_from_a_hub_id_loads_the_encoder_and_reports_it(hub_endpoint, hub_exports, tmp_path):
    """`scratchformer train --model_name_or_path ORG/NAME` in a user's process: weights and tokenizer come over
    HTTP from the loopback Hub; the classification head takes the seq2seq model's encoder."""
    rows = [{"text": " ".join(WORDS[i % 7 : i % 7 + 4]), "label": ["neg", "pos"][i % 2]} for i in range(40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    export = hub_exports["seq2seq"]
    command = [sys.executable, "-m", "scratchformer.training", "train", "--task", "sequence-classification",
               "--model_name_or_path", export.repo_id, "--train_file", str(tmp_path / "train.jsonl"),
               "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--eval_every", "2", "--save_every", "2",
               "--batch_tokens", "0", "--batch_size", "8", "--report_to", "none"]  # fmt: skip
    done = subprocess.run(command, env=client_env(hub_endpoint, tmp_path / "hf_home"), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "load_report.json").read_text())
    assert report["from"] == export.repo_id and report["saved_head"] == "ScratchformerForConditionalGeneration"
    assert {k.split(".")[0] for k in report["new"]} == {"classification_head"}
    assert {k.split(".")[1] for k in report["dropped"]} == {"decoder"}
    encoder = [k for k in report["loaded"] if k.startswith("model.encoder.layers.")]
    assert len(encoder) == sum(k.startswith("model.encoder.layers.") for k in export.model.state_dict())
    tokenizer = json.loads((tmp_path / "run" / "tokenizer.json").read_text())
    assert tokenizer == json.loads((export.folder / "tokenizer.json").read_text())  # the repo's tokenizer
    assert load_file(tmp_path / "run" / "model.safetensors")  # it trained and saved
