"""transformers' static cache (`cache_implementation="static"`) and a fullgraph-compiled decoding forward give
what the dynamic cache and no cache give, for every variant; linear attention keeps its constant-size state."""

import pytest
import torch
from model_tester import VARIANT_IDS, VARIANTS, ModelTester
from transformers.cache_utils import StaticCache

from scratchformer import ScratchformerForConditionalGeneration, decoding_compile_config
from scratchformer.modeling.attention_scratchformer import LinearAttentionState
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD

NEW_TOKENS = 6
tester = ModelTester(attn_implementation="sdpa")


def generate(model, inputs, **kwargs):
    out = model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    return out.sequences, torch.stack(out.scores).nan_to_num(neginf=-1e9), getattr(out, CACHE_FIELD)


def padded_inputs(config):
    inputs = tester.prepare_inputs(config)  # the last sequence ends in padding
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("search", [{}, {"num_beams": 3}], ids=["greedy", "beam"])
def test_static_cache_equals_the_dynamic_cache(variant, search):
    model = tester.build(ScratchformerForConditionalGeneration, **variant)
    inputs = padded_inputs(model.config)
    tokens, scores, _ = generate(model, inputs, **search)
    static_tokens, static_scores, cache = generate(model, inputs, cache_implementation="static", **search)
    assert torch.equal(static_tokens, tokens)
    torch.testing.assert_close(static_scores, scores, rtol=1e-5, atol=1e-5)
    layers = cache.self_attention_cache.layers
    if variant["attention_pattern"] == "linear":  # S = sum phi(k) v^T, z = sum phi(k): no slot per token
        assert all(isinstance(layer, LinearAttentionState) for layer in layers)
        head_dim = model.config.d_model // model.config.decoder_attention_heads
        assert all(layer.keys.shape[-2:] == (head_dim, head_dim) for layer in layers)
    else:  # the static cache's preallocated slots: one per decoding position
        assert isinstance(cache.self_attention_cache, StaticCache)
        assert all(layer.keys.shape[-2] == layer.max_cache_len >= NEW_TOKENS for layer in layers)


@pytest.mark.parametrize("batch", ["padded batch", "one sequence"])
@pytest.mark.parametrize("pattern", ["full", "window", "linear"])
def test_compiled_static_decoding_equals_decoding_without_cache(pattern, batch):
    """generate() with a static cache compiles the decoding forward with fullgraph=True (any graph break
    is an error); its tokens equal those of decoding without any cache. One sequence: the step's one-row
    matmuls become inductor loops (decoding_compile_config's decompose_mm_pass)."""
    overrides = {"attention_pattern": pattern} | ({"attention_window": 2} if pattern == "window" else {})
    model = tester.build(ScratchformerForConditionalGeneration, **overrides)
    inputs = padded_inputs(model.config)
    if batch == "one sequence":
        inputs = {name: x[-1:] for name, x in inputs.items()}  # the padded one
    torch.compiler.reset()
    compiled, _, _ = generate(
        model, inputs, cache_implementation="static", compile_config=decoding_compile_config("cpu")
    )
    assert hasattr(model, "_compiled_call")  # the compiled forward ran
    uncached, _, _ = generate(model, inputs, use_cache=False)
    assert torch.equal(compiled, uncached)


@pytest.mark.parametrize("policy", ["PASSIVE", "ACTIVE", None])
def test_decoding_compile_config_sizes_its_thread_chunks_by_the_wait_policy(monkeypatch, policy):
    """Sleeping OpenMP threads (OMP_WAIT_POLICY=PASSIVE) cost more to wake: larger chunks per thread."""
    from scratchformer.modeling.modeling_scratchformer import DECODING_MIN_CHUNK

    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy.lower())
    options = decoding_compile_config("cpu").options
    assert options["cpp.min_chunk_size"] == DECODING_MIN_CHUNK["PASSIVE" if policy == "PASSIVE" else "otherwise"]
    assert options["post_grad_fusion_options"] == {"decompose_mm_pass": {}}
    assert decoding_compile_config("cuda").options is None
