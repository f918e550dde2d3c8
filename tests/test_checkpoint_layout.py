"""The on-disk layout: model.safetensors holds BART's names (``checkpoint_conversion`` in modeling), memory
holds our modules (``ResidualNorm.layer_norm``, ``FeedForward.fc1/fc2``, fused ``qkv_proj``/``kv_proj``).

References: the file a ``transformers.BartForConditionalGeneration`` (and, pre-norm, an MBart) of the same sizes
writes, read with safetensors.safe_open; BART's own modules, reached by attribute, never by key name; BART's
encoder layer as the formula of one post-norm block.
"""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MBartConfig,
    MBartForConditionalGeneration,
)

from scratchformer import ScratchformerConfig
from scratchformer.modeling.modeling_scratchformer import (
    ScratchformerEncoderModel,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
    ScratchformerModel,
)

# 11 encoder layers: a two-digit layer index (layers.10.) goes through the renamings too.
SIZES = dict(
    vocab_size=64,
    d_model=16,
    encoder_layers=11,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=2,
    encoder_ffn_dim=24,
    decoder_ffn_dim=40,
    max_position_embeddings=32,
)
HEADS = [
    ScratchformerModel,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
    ScratchformerEncoderModel,
]
ENCODER_ONLY = (ScratchformerForSequenceClassification, ScratchformerForTokenClassification, ScratchformerEncoderModel)
# What BART's file has and ours does not (sinusoidal positions are a buffer, never saved): learned positions,
# the LayerNorm on the embeddings, the logits bias.
BART_ONLY = {
    "final_logits_bias",
    "model.encoder.embed_positions.weight",
    "model.encoder.layernorm_embedding.weight",
    "model.encoder.layernorm_embedding.bias",
    "model.decoder.embed_positions.weight",
    "model.decoder.layernorm_embedding.weight",
    "model.decoder.layernorm_embedding.bias",
}
# Pre-norm only: the LayerNorm at the end of each stack. BART has none; MBart (pre-norm) names it the same.
PRE_NORM_ONLY = {
    "model.encoder.layer_norm.weight",
    "model.encoder.layer_norm.bias",
    "model.decoder.layer_norm.weight",
    "model.decoder.layer_norm.bias",
}


def config(**overrides):
    return ScratchformerConfig(
        **SIZES,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        classifier_dropout=0.0,
        num_labels=3,
        **overrides,
    )


def build(model_class=ScratchformerForConditionalGeneration, **overrides):
    """Random values in every parameter (LayerNorms are not left at 1 / 0), so a swapped name shows."""
    torch.manual_seed(0)
    model = model_class._from_config(config(**overrides), attn_implementation="eager").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model


def saved(model, folder):
    """The tensors of ``model.save_pretrained(folder)``, read without transformers."""
    model.save_pretrained(folder)
    with safe_open(folder / "model.safetensors", "pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def reference(bart_class, config_class, tmp_path):
    torch.manual_seed(0)
    model = bart_class(config_class(**SIZES, activation_function="relu")).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model, saved(model, tmp_path / bart_class.__name__)


@pytest.fixture
def bart(tmp_path):
    return reference(BartForConditionalGeneration, BartConfig, tmp_path)


def layer_keys(keys):
    """Keys under a stack's layers, from ``encoder.`` / ``decoder.`` on (head prefixes dropped)."""
    return {key[key.index(stack) :] for key in keys for stack in ("encoder.layers.", "decoder.layers.") if stack in key}


@pytest.mark.parametrize("norm_placement", ["post", "pre"])
def test_saved_keys_are_barts(tmp_path, bart, norm_placement):
    ours = set(saved(build(norm_placement=norm_placement), tmp_path / "ours"))
    bart_keys = set(bart[1])
    assert bart_keys - ours == BART_ONLY
    assert ours - bart_keys == (PRE_NORM_ONLY if norm_placement == "pre" else set())


def test_pre_norm_keys_are_mbarts(tmp_path):
    """MBart is BART with pre-norm and a LayerNorm at the end of each stack: only BART_ONLY differs."""
    _, mbart = reference(MBartForConditionalGeneration, MBartConfig, tmp_path)
    ours = set(saved(build(norm_placement="pre"), tmp_path / "ours"))
    assert set(mbart) - ours == BART_ONLY and ours <= set(mbart)


@pytest.mark.parametrize("model_class", HEADS, ids=lambda c: c.__name__)
def test_every_head_writes_barts_layer_keys(tmp_path, bart, model_class):
    ours = layer_keys(saved(build(model_class), tmp_path / "ours"))
    expected = layer_keys(bart[1])
    if model_class in ENCODER_ONLY:
        expected = {key for key in expected if key.startswith("encoder.")}
    assert ours == expected


@pytest.mark.parametrize("norm_placement", ["post", "pre"])
@pytest.mark.parametrize("model_class", HEADS, ids=lambda c: c.__name__)
def test_round_trip_is_bit_identical(tmp_path, model_class, norm_placement):
    model = build(model_class, norm_placement=norm_placement)
    model.save_pretrained(tmp_path)
    reloaded, info = model_class.from_pretrained(tmp_path, attn_implementation="eager", output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    expected, got = model.state_dict(), reloaded.eval().state_dict()
    assert list(got) == list(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    inputs = dict(input_ids=torch.randint(4, SIZES["vocab_size"], (2, 6)))
    if model_class not in ENCODER_ONLY:
        inputs["decoder_input_ids"] = torch.randint(4, SIZES["vocab_size"], (2, 5))
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs)[0], model(**inputs)[0])
    # and the file written again is the same file
    assert_same_tensors(saved(reloaded, tmp_path / "again"), saved(model, tmp_path / "first"))


def assert_same_tensors(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def barts_values_in_our_file(tmp_path, bart):
    """A folder with our config and, written by hand (no save_pretrained), BART's tensors under the keys our
    post-norm file has: every one of them is a key of BART's file (test_saved_keys_are_barts)."""
    keys = set(saved(build(), tmp_path / "ours"))
    folder = tmp_path / "barts_values"
    folder.mkdir()
    config().save_pretrained(folder)
    save_file({key: bart[1][key] for key in keys}, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_barts_tensors_load_into_our_modules(tmp_path, bart):
    """A file written by hand with BART's tensors under BART's names loads each into the module that BART's
    layer calls by that name: self_attn_layer_norm -> self_attn_norm.layer_norm, fc1 -> ffn.fc1, ...,
    q/k/v_proj stacked into qkv_proj / kv_proj."""
    bart_model, _ = bart
    loaded, info = ScratchformerForConditionalGeneration.from_pretrained(
        barts_values_in_our_file(tmp_path, bart), output_loading_info=True
    )
    assert (info["missing_keys"], info["unexpected_keys"]) == (set(), set())
    for stack in ("encoder", "decoder"):
        for layer, theirs in zip(
            getattr(loaded.model, stack).layers, getattr(bart_model.model, stack).layers, strict=True
        ):
            same = [
                (layer.self_attn_norm.layer_norm, theirs.self_attn_layer_norm),
                (layer.final_norm.layer_norm, theirs.final_layer_norm),
                (layer.ffn.fc1, theirs.fc1),
                (layer.ffn.fc2, theirs.fc2),
                (layer.self_attn.out_proj, theirs.self_attn.out_proj),
            ]
            stacked = [
                (layer.self_attn.qkv_proj, [theirs.self_attn.q_proj, theirs.self_attn.k_proj, theirs.self_attn.v_proj])
            ]
            if stack == "decoder":
                same += [
                    (layer.encoder_attn_norm.layer_norm, theirs.encoder_attn_layer_norm),
                    (layer.encoder_attn.q_proj, theirs.encoder_attn.q_proj),
                    (layer.encoder_attn.out_proj, theirs.encoder_attn.out_proj),
                ]
                stacked += [(layer.encoder_attn.kv_proj, [theirs.encoder_attn.k_proj, theirs.encoder_attn.v_proj])]
            for tensor in ("weight", "bias"):
                for mine, bart_module in same:
                    assert torch.equal(getattr(mine, tensor), getattr(bart_module, tensor))
                for mine, parts in stacked:
                    assert torch.equal(getattr(mine, tensor), torch.cat([getattr(part, tensor) for part in parts]))


def test_loaded_encoder_layer_is_barts_block(tmp_path, bart):
    """Post-norm, BART's encoder layer is the same formula: with BART's tensors loaded by name, one of our
    encoder layers maps x as BART's does (so each norm sits where BART's of that name sits)."""
    bart_model, _ = bart
    loaded = ScratchformerForConditionalGeneration.from_pretrained(
        barts_values_in_our_file(tmp_path, bart), attn_implementation="eager"
    ).eval()
    bart_model.config._attn_implementation = "eager"
    x = torch.randn(2, 5, SIZES["d_model"])
    with torch.no_grad():
        for mine, theirs in zip(loaded.model.encoder.layers, bart_model.model.encoder.layers, strict=True):
            torch.testing.assert_close(mine(x)[0], theirs(x, attention_mask=None))


def test_memory_layout_file_loads_unchanged(tmp_path):
    """Keys already in the memory layout (``save_original_format=False``) are not renamed (no ``ffn.ffn.fc1``),
    and such a model saves that layout back whole, as transformers does for a layout it loaded: no renaming
    matched, so none is reverted (a file with BART's fc1 next to our norms would be neither layout)."""
    model = build(norm_placement="pre")
    model.save_pretrained(tmp_path / "memory", save_original_format=False)
    with safe_open(tmp_path / "memory" / "model.safetensors", "pt") as f:
        memory_keys = set(f.keys())
    assert {
        "model.encoder.layers.10.ffn.fc1.weight",
        "model.decoder.layers.1.final_norm.layer_norm.bias",
        "model.decoder.layers.1.encoder_attn.kv_proj.weight",
    } <= memory_keys
    reloaded, info = ScratchformerForConditionalGeneration.from_pretrained(
        tmp_path / "memory", output_loading_info=True
    )
    assert (info["missing_keys"], info["unexpected_keys"]) == (set(), set())
    assert_same_tensors(reloaded.state_dict(), model.state_dict())
    assert set(saved(reloaded, tmp_path / "again")) == memory_keys


# (exported head, remote class loaded from its folder, what of the head that class holds): the encoder-only
# body is not exported on its own; it loads from a classifier's folder, as in the package.
REMOTE_CASES = [(head, head, lambda model: model) for head in HEADS if head is not ScratchformerEncoderModel] + [
    (ScratchformerForSequenceClassification, ScratchformerEncoderModel, lambda model: model.model)
]


@pytest.mark.parametrize(
    ("exported", "remote_name", "part"), REMOTE_CASES, ids=[f"{e.__name__}-{r.__name__}" for e, r, _ in REMOTE_CASES]
)
def test_remote_code_copy_reads_the_layout(tmp_path, bart, exported, remote_name, part):
    """The exported sources (the Hub remote code, imported from the export folder as transformers does for
    trust_remote_code) register the same conversions: every tensor back in place from BART's keys, and the
    file it writes again is the same file."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from scratchformer.training.export import export_for_hub

    model = build(exported)
    folder = export_for_hub(model, tmp_path / "export")
    remote_class = get_class_from_dynamic_module(f"modeling_scratchformer.{remote_name.__name__}", folder)
    assert remote_class.__module__.startswith("transformers_modules.")
    remote, info = remote_class.from_pretrained(folder, output_loading_info=True)
    classifier_only = {key for key in saved(model, tmp_path / "first") if key.startswith("classification_head.")}
    assert info["missing_keys"] == set()
    assert info["unexpected_keys"] == (set() if remote_name is exported else classifier_only)
    assert_same_tensors(remote.state_dict(), part(model).state_dict())
    written = saved(remote, tmp_path / "again")
    assert layer_keys(written) <= layer_keys(bart[1])
    assert_same_tensors(written, saved(part(model), tmp_path / "reference"))
