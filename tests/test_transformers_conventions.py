"""What transformers' common model tests check, applied here: the model behaves like the library's own."""

import warnings

import pytest
import torch
from model_tester import GREEDY, VARIANT_IDS, VARIANTS, ModelTester
from transformers import DynamicCache, EncoderDecoderCache

from scratchformer.modeling.compat_scratchformer import CACHE_FIELD
from scratchformer.modeling.modeling_scratchformer import BaseModelOutput

tester = ModelTester(attn_implementation="sdpa")  # what ScratchformerForConditionalGeneration(config) picks


@pytest.mark.parametrize("scale_embedding", [True, False])
def test_inputs_embeds_equal_input_ids(scale_embedding):
    """inputs_embeds = get_input_embeddings()(ids) gives the output of input_ids: the sqrt(d) scale is in there."""
    model = tester.build(scale_embedding=scale_embedding)
    inputs = tester.prepare_inputs(model.config)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        by_ids = model(**inputs).logits
        by_embeds = model(
            inputs_embeds=embed(inputs["input_ids"]),
            attention_mask=inputs["attention_mask"],
            decoder_inputs_embeds=embed(inputs["decoder_input_ids"]),
        ).logits
    torch.testing.assert_close(by_embeds, by_ids)


def test_output_embeddings_are_the_lm_head():
    model = tester.build()
    assert model.get_output_embeddings() is model.lm_head
    assert model.get_input_embeddings() is model.model.shared


def test_precomputed_encoder_outputs_are_used_as_is():
    model = tester.build()
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        full = model(**inputs).logits
        encoder_outputs = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        reused = model(
            encoder_outputs=encoder_outputs,
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=inputs["decoder_input_ids"],
        ).logits
        as_tuple = model(
            encoder_outputs=(encoder_outputs.last_hidden_state,),
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=inputs["decoder_input_ids"],
        ).logits
    assert isinstance(encoder_outputs, BaseModelOutput)
    torch.testing.assert_close(reused, full)
    torch.testing.assert_close(as_tuple, full)


@pytest.mark.parametrize("name", ["cache", "past_key_values"])  # transformers >= 5.24 | before
@pytest.mark.parametrize("variant", VARIANTS[::7], ids=VARIANT_IDS[::7])
def test_forward_step_by_step_with_cache_equals_one_full_forward(variant, name):
    """Feeding decoder tokens one at a time with the cache, under either of its names, gives the logits of
    one causal pass; the output returns it under the running release's name."""
    model = tester.build(**variant)
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        full = model(**inputs, use_cache=False).logits
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        steps = []
        # the old name warns where transformers deprecates it (from 5.24 on), as its own models do
        old_name_warns = name == "past_key_values" and CACHE_FIELD == "cache"
        for t in range(tester.tgt_len):
            with (
                pytest.warns(FutureWarning, match="`past_key_values` is deprecated")
                if old_name_warns
                else (warnings.catch_warnings(action="error", category=FutureWarning))
            ):
                out = model(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    decoder_input_ids=inputs["decoder_input_ids"][:, t : t + 1],
                    **{name: cache},
                    use_cache=True,
                )
            cache = getattr(out, CACHE_FIELD)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)
    assert cache.get_seq_length() == tester.tgt_len


def test_hidden_states_and_attentions_are_returned_when_set_in_the_config():
    """Flags in the config give what the same flags give at call time, with the same weights."""
    model = tester.build(output_hidden_states=True, output_attentions=True)
    plain = tester.build()
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        out = model(**inputs)
        asked = plain(**inputs, output_hidden_states=True, output_attentions=True)
        silent = plain(**inputs)
    assert silent.encoder_hidden_states is None and silent.cross_attentions is None
    for key in (
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_attentions",
        "decoder_attentions",
        "cross_attentions",
    ):
        for got, expected in zip(out[key], asked[key], strict=True):
            torch.testing.assert_close(got, expected, msg=key)
    tester.create_and_check_model_outputs(model, inputs, ask=False)  # every shape, from the config's flags alone


def test_hidden_states_keep_gradients():
    """The returned hidden states and attention weights are the graph's own tensors: the gradient reaching the
    first hidden state equals the gradient with respect to inputs_embeds (hidden_states[0] = inputs_embeds +
    positions), and the one reaching the first cross-attention weights A' is dL/dA'[i, j] = dL/do_i . v_j, from
    the gradient of that sublayer's output o = A' V (before W^O) and its values V = W^v (encoder output)."""
    model = tester.build(dropout=0.0).train()
    inputs = tester.prepare_inputs(model.config)
    cross = model.model.decoder.layers[0].encoder_attn
    captured = []
    hook = cross.out_proj.register_forward_hook(lambda module, args, output: captured.append(args[0]))
    try:
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
    finally:
        hook.remove()
    (context,) = captured  # o before W^O, (b, i, h * d): the heads side by side
    for tensor in (out.encoder_hidden_states[0], out.cross_attentions[0], context):
        tensor.retain_grad()
    out.logits.sum().backward()
    embeds = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_()
    reference = model(
        inputs_embeds=embeds, attention_mask=inputs["attention_mask"], decoder_input_ids=inputs["decoder_input_ids"]
    ).logits.sum()
    (expected,) = torch.autograd.grad(reference, embeds)
    torch.testing.assert_close(out.encoder_hidden_states[0].grad, expected)
    b, i, h = context.shape[0], context.shape[1], model.config.decoder_attention_heads
    with torch.no_grad():
        values = cross.kv_proj(out.encoder_last_hidden_state).chunk(2, -1)[1]  # (b, j, h * d)
        values = values.view(b, values.shape[1], h, -1)
        grad_weights = torch.einsum("bihd,bjhd->bhij", context.grad.view(b, i, h, -1), values)
    torch.testing.assert_close(out.cross_attentions[0].grad, grad_weights, atol=1e-5, rtol=1e-4)


def test_different_encoder_and_decoder_depths_generate_with_cache():
    """1 encoder layer, 3 decoder layers (3 self- and 3 cross-attention cache layers): generate() and a chunked
    forward through the cache give what recomputing without it gives."""
    model = tester.build(encoder_layers=1, decoder_layers=3, encoder_attention_heads=2)
    inputs = tester.prepare_inputs(model.config)
    tester.create_and_check_generate_with_cache_equals_without(model, inputs, new_tokens=4, modes=(GREEDY,))
    tester.create_and_check_decoder_model_past_large_inputs(model, inputs)
