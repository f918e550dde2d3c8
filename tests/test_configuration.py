"""Every invalid setting is refused at construction (and on from_pretrained) with a message naming
the field, the value and what is allowed."""

import json

import pytest

from scratchformer import ScratchformerConfig
from scratchformer.configuration.configuration_scratchformer import CHOICES

INVALID = [
    (dict(d_model=30, encoder_attention_heads=4), "encoder_attention_heads=4 .* divisor of d_model=30"),
    (dict(d_model=32, decoder_attention_heads=5), "decoder_attention_heads=5 .* divisor of d_model=32"),
    (dict(attention_score="cosine"), "attention_score='cosine' .* 'dot', 'additive'"),
    (dict(attention_normalizer="tanh"), "attention_normalizer='tanh' .* 'softmax', 'relu', 'sigmoid'"),
    (dict(attention_pattern="sparse"), "attention_pattern='sparse' .* 'full', 'window', 'linear'"),
    (dict(position_encoding="alibi"), "position_encoding='alibi' .* 'sinusoidal', 'learned', 'rotary', 'none'"),
    (dict(norm_placement="sandwich"), "norm_placement='sandwich' .* 'post', 'pre'"),
    (dict(attention_pattern="window"), "attention_window=None .* integer >= 1"),
    (dict(attention_pattern="window", attention_window=0), "attention_window=0 .* integer >= 1"),
    (dict(attention_pattern="window", attention_window=2.5), "attention_window=2.5 .* integer >= 1"),
    (dict(attention_window=4), "attention_window=4 .* None unless attention_pattern='window'"),
    (dict(attention_pattern="linear", attention_score="additive"), "attention_pattern='linear' .* needs"),
    (dict(attention_pattern="linear", attention_normalizer="relu"), "attention_pattern='linear' .* needs"),
    (dict(activation_function="swishy"), "activation_function='swishy' .* 'relu'"),
    (dict(d_model=0), "d_model=0 .* integer >= 1"),
    (dict(encoder_layers=-1), "encoder_layers=-1 .* integer >= 0"),
    (dict(vocab_size=12.0), "vocab_size=12.0 .* integer >= 1"),
    (dict(dropout=1.5), "dropout=1.5 .* probability"),
    (dict(label_smoothing=-0.1), "label_smoothing=-0.1 .* probability"),
    (dict(lm_loss="chunked"), "lm_loss=.chunked. .* .logits., .fused."),
    (
        dict(d_model=24, encoder_attention_heads=8, decoder_attention_heads=8, position_encoding="rotary"),
        "even head size",
    ),
    (dict(init_std=0.0), "init_std"),
]


@pytest.mark.parametrize("overrides,message", INVALID, ids=[m.split(" ")[0] for _, m in INVALID])
def test_invalid_config_is_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        ScratchformerConfig(**overrides)


def test_invalid_config_json_is_refused_on_load(tmp_path):
    ScratchformerConfig().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["attention_pattern"] = "diagonal"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="attention_pattern='diagonal'"):
        ScratchformerConfig.from_pretrained(tmp_path)


def test_every_choice_is_accepted():
    for field, allowed in CHOICES.items():
        for value in allowed:
            extra = {"attention_window": 3} if value == "window" else {}
            assert getattr(ScratchformerConfig(**{field: value}, **extra), field) == value


def test_aliases_point_at_the_decoder_for_generation():
    config = ScratchformerConfig(d_model=64, encoder_layers=2, decoder_layers=5, decoder_attention_heads=8)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 5, 8)
