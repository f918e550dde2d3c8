"""What transformers' common model tests check, applied here: the model behaves like the library's own."""

import warnings

import pytest
import torch
from transformers import DynamicCache, EncoderDecoderCache

from scratchformer import ScratchformerForConditionalGeneration
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD
from scratchformer.modeling.modeling_scratchformer import BaseModelOutput

from model_tester import VARIANT_IDS, VARIANTS, ModelTester

tester = ModelTester()


def build(**overrides):
    torch.manual_seed(0)
    return ScratchformerForConditionalGeneration(tester.get_config(**overrides)).eval()


@pytest.mark.parametrize("scale_embedding", [True, False])
def test_inputs_embeds_equal_input_ids(scale_embedding):
    """inputs_embeds = get_input_embeddings()(ids) gives the output of input_ids: the sqrt(d) scale is in there."""
    model = build(scale_embedding=scale_embedding)
    inputs = tester.prepare_inputs(model.config)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        by_ids = model(**inputs).logits
        by_embeds = model(inputs_embeds=embed(inputs["input_ids"]), attention_mask=inputs["attention_mask"],
                          decoder_inputs_embeds=embed(inputs["decoder_input_ids"])).logits
    torch.testing.assert_close(by_embeds, by_ids)


def test_output_embeddings_are_the_lm_head():
    model = build()
    assert model.get_output_embeddings() is model.lm_head
    assert model.get_input_embeddings() is model.model.shared


def test_precomputed_encoder_outputs_are_used_as_is():
    model = build()
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        full = model(**inputs).logits
        encoder_outputs = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        reused = model(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                       decoder_input_ids=inputs["decoder_input_ids"]).logits
        as_tuple = model(encoder_outputs=(encoder_outputs.last_hidden_state,),
                         attention_mask=inputs["attention_mask"],
                         decoder_input_ids=inputs["decoder_input_ids"]).logits
    assert isinstance(encoder_outputs, BaseModelOutput)
    torch.testing.assert_close(reused, full)
    torch.testing.assert_close(as_tuple, full)


@pytest.mark.parametrize("name", ["cache", "past_key_values"])  # transformers >= 5.24 | before
@pytest.mark.parametrize("variant", VARIANTS[::7], ids=VARIANT_IDS[::7])
def test_forward_step_by_step_with_cache_equals_one_full_forward(variant, name):
    """Feeding decoder tokens one at a time with the cache, under either of its names, gives the logits of
    one causal pass; the output returns it under the running release's name."""
    model = build(**variant)
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        full = model(**inputs, use_cache=False).logits
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        steps = []
        # the old name warns where transformers deprecates it (from 5.24 on), as its own models do
        old_name_warns = name == "past_key_values" and CACHE_FIELD == "cache"
        for t in range(tester.tgt_len):
            with pytest.warns(FutureWarning, match="`past_key_values` is deprecated") if old_name_warns else (
                    warnings.catch_warnings(action="error", category=FutureWarning)):
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            decoder_input_ids=inputs["decoder_input_ids"][:, t : t + 1], **{name: cache},
                            use_cache=True)
            cache = getattr(out, CACHE_FIELD)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)
    assert cache.get_seq_length() == tester.tgt_len


def test_hidden_states_and_attentions_are_returned_when_set_in_the_config():
    """Flags in the config give what the same flags give at call time, with the same weights."""
    model = build(output_hidden_states=True, output_attentions=True)
    plain = build()
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        out = model(**inputs)
        asked = plain(**inputs, output_hidden_states=True, output_attentions=True)
        silent = plain(**inputs)
    assert silent.encoder_hidden_states is None and silent.cross_attentions is None
    assert len(out.encoder_hidden_states) == model.config.encoder_layers + 1
    assert len(out.decoder_attentions) == len(out.cross_attentions) == model.config.decoder_layers
    for key in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                "cross_attentions"):
        for got, expected in zip(out[key], asked[key], strict=True):
            torch.testing.assert_close(got, expected, msg=key)
    torch.testing.assert_close(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    b, h, i, j = tester.batch_size, model.config.decoder_attention_heads, tester.tgt_len, tester.src_len
    assert out.cross_attentions[0].shape == (b, h, i, j)


def test_hidden_states_keep_gradients():
    """The returned hidden states are the graph's own tensors: the gradient reaching the first one equals
    the gradient with respect to inputs_embeds (hidden_states[0] = inputs_embeds + positions)."""
    model = build(dropout=0.0).train()
    inputs = tester.prepare_inputs(model.config)
    out = model(**inputs, output_hidden_states=True, output_attentions=True)
    out.encoder_hidden_states[0].retain_grad()
    out.cross_attentions[0].retain_grad()
    out.logits.sum().backward()
    embeds = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_()
    reference = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"],
                      decoder_input_ids=inputs["decoder_input_ids"]).logits.sum()
    (expected,) = torch.autograd.grad(reference, embeds)
    torch.testing.assert_close(out.encoder_hidden_states[0].grad, expected)
    assert out.cross_attentions[0].grad.abs().sum() > 0  # the weights are in the graph, not a detached copy


def test_different_encoder_and_decoder_depths_generate_with_cache():
    model = build(encoder_layers=1, decoder_layers=3, encoder_attention_heads=2)
    inputs = tester.prepare_inputs(model.config)
    kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=4,
                  min_new_tokens=4)
    assert torch.equal(model.generate(**kwargs), model.generate(**kwargs, use_cache=False))
