"""The dynamic cache's GrowingLayer (attention_scratchformer.py): in-place appends into doubling buffers give
the tensors that transformers' DynamicLayer (torch.cat) gives, through every operation generate() applies to a
cache, and decoding with it gives DynamicLayer's tokens and scores."""

import pytest
import torch
from model_tester import VARIANT_IDS, VARIANTS, ModelTester
from transformers.cache_utils import DynamicLayer

import scratchformer.modeling.attention_scratchformer as attention
from scratchformer import ScratchformerForConditionalGeneration
from scratchformer.modeling.attention_scratchformer import GrowingLayer, LinearAttentionState
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD

tester = ModelTester(attn_implementation="sdpa")


def step(batch, tokens, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, tokens, 3, generator=generator), torch.randn(batch, 2, tokens, 3, generator=generator)


def assert_same(growing, plain):
    assert growing.get_seq_length() == plain.get_seq_length()
    torch.testing.assert_close(growing.keys, plain.keys, rtol=0, atol=0)
    torch.testing.assert_close(growing.values, plain.values, rtol=0, atol=0)


def test_appends_reorders_crops_and_selections_equal_dynamic_layers():
    growing, plain = GrowingLayer(), DynamicLayer()
    operations = [
        ("update", 5),  # the prompt
        *[("update", 1)] * 7,  # decoding steps: the buffer grows 5 -> 10 -> 20
        ("reorder", torch.tensor([2, 0, 0, 1])),  # beam search
        ("update", 1),
        ("update", 3),
        ("crop", -2),  # assisted decoding rejects candidates
        ("update", 1),
        ("select", torch.tensor([0, 3])),
        ("update", 2),
        ("repeat", 2),
        ("update", 1),
    ]
    for seed, (name, argument) in enumerate(operations):
        if name == "update":
            key, value = step(growing.keys.shape[0] if growing.is_initialized else 4, argument, seed)
            returned = growing.update(key, value)
            expected = plain.update(key, value)
            for a, e in zip(returned, expected):
                torch.testing.assert_close(a, e, rtol=0, atol=0)
        elif name == "reorder":
            growing.reorder_cache(argument), plain.reorder_cache(argument)
        elif name == "crop":
            growing.crop(argument), plain.crop(argument)
        elif name == "select":
            growing.batch_select_indices(argument), plain.batch_select_indices(argument)
        else:
            growing.batch_repeat_interleave(argument), plain.batch_repeat_interleave(argument)
        assert_same(growing, plain)


def test_returned_and_assigned_tensors_are_never_written_into():
    layer = GrowingLayer()
    layer.update(*step(2, 3, 0))
    first_keys, _ = layer.update(*step(2, 1, 1))  # a view of the buffer, 4 positions
    kept = first_keys.clone()
    layer.update(*step(2, 1, 2))  # written after those 4 positions, in the same buffer
    torch.testing.assert_close(first_keys, kept, rtol=0, atol=0)
    mine = step(2, 6, 3)
    layer.keys, layer.values = mine[0], mine[1]
    copies = mine[0].clone(), mine[1].clone()
    layer.update(*step(2, 1, 4))
    assert layer.get_seq_length() == 7
    for tensor, copy in zip(mine, copies):
        torch.testing.assert_close(tensor, copy, rtol=0, atol=0)


def test_with_gradients_it_appends_as_dynamic_layer_does():
    layer = GrowingLayer()
    key, value = (t.requires_grad_() for t in step(1, 2, 0))
    layer.update(key, value)
    more = [t.requires_grad_() for t in step(1, 1, 1)]
    keys, values = layer.update(*more)
    (keys.sum() + values.sum()).backward()  # no in-place write on a tensor autograd saved
    assert torch.equal(key.grad, torch.ones_like(key)) and torch.equal(more[0].grad, torch.ones_like(more[0]))


def generate(model, inputs, **kwargs):
    out = model.generate(
        **inputs,
        max_new_tokens=7,
        min_new_tokens=7,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    return out.sequences, torch.stack(out.scores).nan_to_num(neginf=-1e9), getattr(out, CACHE_FIELD)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("search", [{}, {"num_beams": 3}], ids=["greedy", "beam"])
def test_decoding_equals_decoding_with_dynamic_layers(variant, search, monkeypatch):
    model = tester.build(ScratchformerForConditionalGeneration, **variant)
    config_inputs = tester.prepare_inputs(model.config)  # the last sequence ends in padding
    inputs = {"input_ids": config_inputs["input_ids"], "attention_mask": config_inputs["attention_mask"]}
    sequences, scores, cache = generate(model, inputs, **search)
    layers = cache.self_attention_cache.layers
    expected_kind = LinearAttentionState if model.config.attention_pattern == "linear" else GrowingLayer
    assert all(type(layer) is expected_kind for layer in layers)
    monkeypatch.setattr(attention, "growing_layer", lambda cache, layer_idx: None)  # transformers' DynamicLayer
    plain_sequences, plain_scores, plain_cache = generate(model, inputs, **search)
    if model.config.attention_pattern != "linear":
        assert all(type(layer) is DynamicLayer for layer in plain_cache.self_attention_cache.layers)
    torch.testing.assert_close(sequences, plain_sequences, rtol=0, atol=0)
    torch.testing.assert_close(scores, plain_scores)
    for layer, plain in zip(layers, plain_cache.self_attention_cache.layers):
        assert_same(layer, plain)
