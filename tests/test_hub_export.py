"""export_for_hub: the folder layout, sharded weights, no side effects on the model, clear errors."""

import json

import pytest
import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration
from scratchformer.training.export import export_for_hub
from scratchformer.training.inference import load_saved

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import TEXTS, build_model, build_tokenizer  # noqa: E402


def test_sharded_export_loads_back(tmp_path):
    """Weights above max_shard_size are split into shards plus an index; from_pretrained reassembles them."""
    model, tokenizer = build_model("seq2seq"), build_tokenizer()
    folder = export_for_hub(model, tmp_path / "sharded", max_shard_size="20KB")  # no tokenizer: no picture
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    assert sorted(set(index["weight_map"].values())) == shards
    saved = load_saved(folder)
    loaded, no_tokenizer = saved.model, saved.tokenizer
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    decoder_input_ids = torch.tensor([[1, 4, 5], [1, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(**inputs, decoder_input_ids=decoder_input_ids).logits,
            model(**inputs, decoder_input_ids=decoder_input_ids).logits,
        )
    assert no_tokenizer is None


def test_export_leaves_the_model_config_alone(tmp_path):
    model = build_model("seq_cls")
    folder = export_for_hub(model, tmp_path / "out")  # no tokenizer: no attention picture, still a card
    assert "auto_map" not in model.config.to_dict()  # only the exported config.json has it
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoConfig"] == (
        "configuration_scratchformer.ScratchformerConfig"
    )
    assert (folder / "README.md").is_file() and not (folder / "attention_map.png").exists()
    assert not (folder / "tokenizer_config.json").exists()


def test_export_refuses_other_models(tmp_path):
    class Other(ScratchformerForConditionalGeneration):
        pass

    with pytest.raises(
        ValueError,
        match="cannot export Other; allowed model classes: ScratchformerModel, ScratchformerForConditionalGeneration",
    ):
        export_for_hub(
            Other(
                ScratchformerConfig(
                    vocab_size=20, d_model=8, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=8, decoder_ffn_dim=8
                )
            ),
            tmp_path / "x",
        )


def test_load_saved_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_saved(tmp_path / "missing")
    folder = tmp_path / "odd"
    folder.mkdir()
    config = ScratchformerConfig(vocab_size=20, d_model=8, encoder_ffn_dim=8, decoder_ffn_dim=8)
    config.architectures = ["ScratchformerForCausalLM"]
    config.save_pretrained(folder)
    with pytest.raises(
        ValueError,
        match="'ScratchformerForCausalLM'; allowed: ScratchformerModel, ScratchformerForConditionalGeneration",
    ):
        load_saved(folder)
