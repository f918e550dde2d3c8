"""The model family against independent references, for every variant of the lecture notes.

References used: perturbed inputs (causality, padding), permuted inputs (no positions), the sdpa kernel
vs the eager one, cached vs uncached generation, saved vs reloaded models, transformers' own behaviour.
Per-formula naive loops for the attention kernels live in test_attention.py.
"""

import math

import pytest
import torch
from model_tester import VARIANT_IDS, VARIANTS, ModelTester, cross_entropy_by_hand
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from scratchformer import (
    ScratchformerConfig,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
    ScratchformerModel,
)
from scratchformer.modeling.modeling_scratchformer import ScratchformerEncoderModel, add_dropout, dropout

tester = ModelTester()  # eager kernel: the from-scratch one
HEADS = [
    ScratchformerModel,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
]


# ------------------------------------------------------------------------------------ every variant


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_shapes_causality_and_padding(variant):
    """Output shapes (and logits = LM head on the last decoder state); a future decoder token cannot move
    earlier outputs; a padded batch gives what each sequence gives alone."""
    model = tester.build(**variant)
    inputs = tester.prepare_inputs(model.config)
    n = tester.src_len
    out = tester.create_and_check_model_outputs(model, inputs)

    # causality: change the last decoder token, positions before it must not move
    changed = dict(inputs, decoder_input_ids=inputs["decoder_input_ids"].clone())
    changed["decoder_input_ids"][:, -1] = (changed["decoder_input_ids"][:, -1] + 1) % tester.vocab_size
    with torch.no_grad():
        moved = model(**changed).logits
    torch.testing.assert_close(moved[:, :-1], out.logits[:, :-1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved[:, -1], out.logits[:, -1])

    tester.create_and_check_padding_invariance(model, inputs)

    if variant["attention_normalizer"] == "softmax" and variant["attention_pattern"] != "linear":
        for weights in out.encoder_attentions + out.decoder_attentions + out.cross_attentions:
            torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    if variant["attention_pattern"] == "window":  # truncated: nothing outside |i - j| <= w
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        assert (out.encoder_attentions[0][..., (i - j).abs() > 2] == 0).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_generate_with_cache_equals_without(variant):
    """generate() with the KV cache (or the linear-attention state) == recomputing everything, greedy and beam:
    token for token and score for score (the cache must reach every step under the running release's name);
    a forward over the last 3 decoder tokens through the cache == one forward over all of them without it."""
    model = tester.build(**variant)
    inputs = tester.prepare_inputs(model.config)
    tester.create_and_check_generate_with_cache_equals_without(model, inputs)
    tester.create_and_check_decoder_model_past_large_inputs(model, inputs)


@pytest.mark.parametrize(
    "variant",
    [
        v
        for v in VARIANTS
        if v["attention_score"] == "dot"
        and v["attention_normalizer"] == "softmax"
        and v["attention_pattern"] != "linear"
    ],
    ids=[
        i
        for v, i in zip(VARIANTS, VARIANT_IDS)
        if v["attention_score"] == "dot"
        and v["attention_normalizer"] == "softmax"
        and v["attention_pattern"] != "linear"
    ],
)
def test_eager_equals_sdpa(variant):
    """torch's fused scaled_dot_product_attention and the from-scratch kernel agree, forward and backward."""
    results = []
    for implementation in ("eager", "sdpa"):
        model = tester.build(attn_implementation=implementation, **variant).train()
        assert model.config._attn_implementation == implementation
        inputs = tester.prepare_inputs(model.config)
        out = model(**inputs, labels=tester.prepare_lm_labels())
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (eager_logits, eager_grads), (sdpa_logits, sdpa_grads) = results
    torch.testing.assert_close(sdpa_logits, eager_logits, atol=1e-5, rtol=1e-4)
    for name in eager_grads:
        torch.testing.assert_close(sdpa_grads[name], eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_positions_none_encoder_is_permutation_equivariant():
    """Self-attention alone has no order: permuting the input tokens permutes the encoder outputs."""
    model = tester.build(ScratchformerModel, position_encoding="none")
    ids = torch.randint(4, tester.vocab_size, (2, 9))
    permutation = torch.randperm(9)
    with torch.no_grad():
        out = model.encoder(input_ids=ids).last_hidden_state
        permuted = model.encoder(input_ids=ids[:, permutation]).last_hidden_state
    torch.testing.assert_close(permuted, out[:, permutation], atol=1e-5, rtol=1e-5)
    # ... and with sinusoidal positions it is not
    model = tester.build(ScratchformerModel, position_encoding="sinusoidal")
    with torch.no_grad():
        out = model.encoder(input_ids=ids).last_hidden_state
        permuted = model.encoder(input_ids=ids[:, permutation]).last_hidden_state
    assert not torch.allclose(permuted, out[:, permutation], atol=1e-3)


def test_window_decoder_limits_how_far_back_a_token_looks():
    """With w = 2 and one layer, decoder output t depends on decoder inputs t-2..t only."""
    model = tester.build(attention_pattern="window", attention_window=2, decoder_layers=1)
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        out = model(**inputs).logits
        changed = dict(inputs, decoder_input_ids=inputs["decoder_input_ids"].clone())
        changed["decoder_input_ids"][:, 1] += 1
        moved = model(**changed).logits
    torch.testing.assert_close(moved[:, :1], out[:, :1], atol=1e-5, rtol=1e-5)  # causal: before the change
    torch.testing.assert_close(moved[:, 4:], out[:, 4:], atol=1e-5, rtol=1e-5)  # 4 - 1 > w
    for t in (1, 2, 3):  # within the window of the changed token: every one of them moves
        assert not torch.allclose(moved[:, t], out[:, t]), t


# ------------------------------------------------------------------------------------- every head


@pytest.mark.parametrize("model_class", HEADS, ids=lambda c: c.__name__)
def test_save_and_auto_from_pretrained(model_class, tmp_path):
    """save_pretrained (safetensors) -> AutoModel*.from_pretrained gives identical outputs."""
    auto = {
        ScratchformerModel: AutoModel,
        ScratchformerForConditionalGeneration: AutoModelForSeq2SeqLM,
        ScratchformerForSequenceClassification: AutoModelForSequenceClassification,
        ScratchformerForTokenClassification: AutoModelForTokenClassification,
    }[model_class]
    model = tester.build(model_class, position_encoding="sinusoidal")
    _, inputs = tester.prepare_config_and_inputs(model_class)
    tester.create_and_check_save_load(model, inputs, tmp_path, auto_class=auto)


def test_checkpoint_keeps_separate_qkv_projections(tmp_path):
    """On disk: BART's q_proj / k_proj / v_proj. A checkpoint written by hand in that layout (plain
    safetensors, no save_pretrained) loads into the fused qkv_proj / kv_proj as the stacked rows, and
    save_pretrained writes the same layout back."""
    from safetensors.torch import load_file, save_file

    model = tester.build()
    model.save_pretrained(tmp_path / "saved")
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert not [key for key in saved if "qkv_proj" in key or "kv_proj" in key]
    torch.manual_seed(1)
    by_hand = {key: torch.randn_like(value) for key, value in saved.items()}
    (tmp_path / "by_hand").mkdir()
    model.config.save_pretrained(tmp_path / "by_hand")
    save_file(by_hand, tmp_path / "by_hand" / "model.safetensors", metadata={"format": "pt"})
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "by_hand")
    for i, layer in enumerate(loaded.model.decoder.layers):
        prefix = f"model.decoder.layers.{i}"
        for tensor in ("weight", "bias"):
            expected = torch.cat([by_hand[f"{prefix}.self_attn.{p}_proj.{tensor}"] for p in "qkv"])
            torch.testing.assert_close(getattr(layer.self_attn.qkv_proj, tensor), expected, atol=0, rtol=0)
            expected = torch.cat([by_hand[f"{prefix}.encoder_attn.{p}_proj.{tensor}"] for p in "kv"])
            torch.testing.assert_close(getattr(layer.encoder_attn.kv_proj, tensor), expected, atol=0, rtol=0)
            torch.testing.assert_close(
                getattr(layer.encoder_attn.q_proj, tensor),
                by_hand[f"{prefix}.encoder_attn.q_proj.{tensor}"],
                atol=0,
                rtol=0,
            )
    loaded.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert set(again) == set(by_hand)
    for key in by_hand:
        torch.testing.assert_close(again[key], by_hand[key], atol=0, rtol=0)


def test_classification_heads_hold_no_decoder_weights():
    """A classifier's parameters are the seq2seq base model's minus its decoder (under ``model.``), plus its head."""
    body = {name for name, _ in tester.build(ScratchformerModel).named_parameters() if not name.startswith("decoder.")}
    heads = {
        ScratchformerForSequenceClassification: {
            f"classification_head.{layer}.{tensor}" for layer in ("dense", "out_proj") for tensor in ("weight", "bias")
        },
        ScratchformerForTokenClassification: {"classifier.weight", "classifier.bias"},
    }
    for model_class, head in heads.items():
        names = {name for name, _ in tester.build(model_class).named_parameters()}
        assert names == {f"model.{name}" for name in body} | head, model_class


def test_encoder_of_a_seq2seq_checkpoint_loads_into_a_classifier(tmp_path):
    """Every encoder weight of a seq2seq checkpoint lands in the classifier's body, which then encodes as the
    seq2seq model's encoder does."""
    seq2seq = tester.build()
    seq2seq.save_pretrained(tmp_path)
    classifier = ScratchformerForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    expected = {name: tensor for name, tensor in seq2seq.model.state_dict().items() if not name.startswith("decoder.")}
    got = classifier.model.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    _, inputs = tester.prepare_config_and_inputs(ScratchformerEncoderModel)
    with torch.no_grad():
        torch.testing.assert_close(
            classifier.model(**inputs).last_hidden_state,
            seq2seq.get_encoder()(**inputs).last_hidden_state,
            atol=0,
            rtol=0,
        )


def test_config_json_round_trip(tmp_path):
    config = tester.get_config(
        attention_score="additive",
        attention_normalizer="sigmoid",
        attention_pattern="window",
        attention_window=3,
        position_encoding="rotary",
        norm_placement="pre",
        label_smoothing=0.1,
    )
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is ScratchformerConfig
    first, second = config.to_dict(), reloaded.to_dict()
    assert second.pop("_name_or_path") == str(tmp_path) and first.pop("_name_or_path") == ""
    assert second == first
    saved = (tmp_path / "config.json").read_text()
    reloaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "config.json").read_text() == saved  # the JSON itself round trips exactly


def test_return_dict_false_gives_the_same_tuples():
    """return_dict=False: the ModelOutput's fields, in order, as a plain tuple (every tensor the same)."""
    model = tester.build()
    inputs = tester.prepare_inputs(model.config)
    flags = dict(use_cache=False, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        as_dict = model(**inputs, **flags)
        as_tuple = model(**inputs, **flags, return_dict=False)
    assert type(as_tuple) is tuple and len(as_tuple) == len(as_dict) == 7  # logits, 2 x 3 hidden states/attentions
    torch.testing.assert_close(as_tuple, as_dict.to_tuple(), atol=0, rtol=0)


def test_seq2seq_loss_is_cross_entropy_on_shifted_labels_ignoring_minus_100():
    model = tester.build(label_smoothing=0.0)
    inputs = tester.prepare_inputs(model.config)
    labels = tester.prepare_lm_labels()
    labels[0, -2:] = -100
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels)
        decoder_input_ids = torch.cat(
            [
                torch.full((tester.batch_size, 1), model.config.decoder_start_token_id),
                labels[:, :-1].masked_fill(labels[:, :-1] == -100, 0),
            ],
            1,
        )
        explicit = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_input_ids
        ).logits
    torch.testing.assert_close(out.loss, cross_entropy_by_hand(explicit, labels))
    smoothed = tester.build(label_smoothing=0.1)
    with torch.no_grad():
        loss = smoothed(input_ids=inputs["input_ids"], labels=labels).loss
        logits = smoothed(input_ids=inputs["input_ids"], decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(loss, cross_entropy_by_hand(logits, labels, label_smoothing=0.1))


def test_sequence_classification_losses_follow_transformers_conventions():
    _, inputs = tester.prepare_config_and_inputs(ScratchformerForSequenceClassification)
    model = tester.build(ScratchformerForSequenceClassification, num_labels=3)
    labels = torch.tensor([0, 2, 1])
    out = model(**inputs, labels=labels)
    torch.testing.assert_close(out.loss, cross_entropy_by_hand(out.logits, labels))
    assert model.config.problem_type == "single_label_classification"
    regression = tester.build(ScratchformerForSequenceClassification, num_labels=1)
    targets = torch.tensor([0.5, -1.0, 2.0])
    out = regression(**inputs, labels=targets)
    assert out.logits.shape == (3, 1) and regression.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, ((out.logits[:, 0] - targets) ** 2).mean())


@pytest.mark.parametrize("model_class", HEADS + [ScratchformerEncoderModel], ids=lambda c: c.__name__)
def test_every_head_ignores_padding(model_class):
    """Every head's outputs: the shapes the sizes give, the head's formula on the last hidden state, and for a
    padded batch what each sequence gives alone (the sentence classifier pools real tokens only)."""
    model = tester.build(model_class)
    _, inputs = tester.prepare_config_and_inputs(model_class)
    tester.create_and_check_model_outputs(model, inputs)
    tester.create_and_check_padding_invariance(model, inputs)


def test_token_classification_one_label_per_token():
    model = tester.build(ScratchformerForTokenClassification, num_labels=5)
    _, inputs = tester.prepare_config_and_inputs(ScratchformerForTokenClassification)
    labels = torch.randint(0, 5, (tester.batch_size, tester.src_len))
    labels[-1, -2:] = -100
    out = tester.create_and_check_model_outputs(model, inputs)  # (b, n, 5): the classifier on every token vector
    torch.testing.assert_close(model(**inputs, labels=labels).loss, cross_entropy_by_hand(out.logits, labels))


# -------------------------------------------------------------------------- transformers' features


def test_tied_embeddings_share_one_tensor():
    model = tester.build()
    shared = model.model.shared.weight
    assert model.lm_head.weight is shared
    assert model.model.encoder.embed_tokens.weight is shared and model.model.decoder.embed_tokens.weight is shared
    untied = tester.build(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.model.shared.weight


@pytest.mark.parametrize("tie", [True, False])
def test_untied_and_tied_models_round_trip(tie, tmp_path):
    model = tester.build(tie_word_embeddings=tie)
    # untied, the head holds other values than the embeddings: a reload that tied them would show
    assert torch.equal(model.lm_head.weight, model.model.shared.weight) == tie
    reloaded = tester.create_and_check_save_load(
        model, tester.prepare_inputs(model.config), tmp_path, auto_class=AutoModelForSeq2SeqLM
    )
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight, atol=0, rtol=0)


def test_resize_token_embeddings():
    model = tester.build()
    inputs = tester.prepare_inputs(model.config)
    with torch.no_grad():
        before = model(**inputs).logits
    model.resize_token_embeddings(tester.vocab_size + 13)
    assert model.config.vocab_size == tester.vocab_size + 13
    assert model.model.shared.weight.shape[0] == tester.vocab_size + 13
    assert model.lm_head.weight is model.model.shared.weight
    assert model.model.encoder.embed_tokens is model.model.shared
    with torch.no_grad():
        after = model(**inputs).logits
    assert after.shape[-1] == tester.vocab_size + 13
    torch.testing.assert_close(after[..., : tester.vocab_size], before, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tester.build().train()
        if checkpointing:  # transformers 5.24 renamed gradient_checkpointing_enable to activation_checkpointing_enable
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable()
            else:
                model.gradient_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.model.encoder.layers)
        inputs = tester.prepare_inputs(model.config)
        model(**inputs, labels=tester.prepare_lm_labels()).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_generate_modes_greedy_beam_sampling():
    model = tester.build()
    inputs = tester.prepare_inputs(model.config)
    kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=5)
    greedy = model.generate(**kwargs)
    # greedy == argmax of a manual loop over the full model
    decoder_ids = torch.full((tester.batch_size, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(greedy.shape[1] - 1):
            logits = model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_ids
            ).logits
            decoder_ids = torch.cat([decoder_ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    finished = (decoder_ids == model.config.eos_token_id).cumsum(1).roll(1, 1)
    finished[:, 0] = 0
    assert torch.equal(greedy.masked_fill(finished > 0, 0), decoder_ids.masked_fill(finished > 0, 0))
    assert torch.equal(model.generate(**kwargs, num_beams=1), greedy)  # a beam of one is greedy search
    beams = model.generate(
        **kwargs, num_beams=4, num_return_sequences=2, return_dict_in_generate=True, output_scores=True
    )
    assert beams.sequences.shape[0] == 2 * tester.batch_size
    best = model.generate(**kwargs, num_beams=4)  # the first of the returned beams is the one beam search returns
    assert torch.equal(beams.sequences[::2, : best.shape[1]], best)
    scores = beams.sequences_scores.view(tester.batch_size, 2)
    assert (scores[:, 0] >= scores[:, 1]).all()  # best first
    # each beam's score = its summed token log-probs (one full forward over the beam) / its length
    repeated = {k: inputs[k].repeat_interleave(2, 0) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        log_probs = model(**repeated, decoder_input_ids=beams.sequences[:, :-1]).logits.log_softmax(-1)
    tokens = beams.sequences[:, 1:]
    is_eos = (tokens == model.config.eos_token_id).long()
    generated = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first eos
    token_log_probs = log_probs.gather(-1, tokens[..., None])[..., 0] * generated
    torch.testing.assert_close(beams.sequences_scores, token_log_probs.sum(1) / generated.sum(1), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    sampled = model.generate(**kwargs, do_sample=True, top_k=10, temperature=0.7)
    torch.manual_seed(0)
    assert torch.equal(sampled, model.generate(**kwargs, do_sample=True, top_k=10, temperature=0.7))
    # every sampled token is one of the 10 most likely after its prefix; top_k=1 sampling is greedy search
    with torch.no_grad():
        logits = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=sampled[:, :-1]
        ).logits
    top_10 = logits.topk(10, -1).indices
    drawn = sampled[:, 1:]
    is_eos = (drawn == model.config.eos_token_id).long()
    live = (is_eos.cumsum(1) - is_eos) == 0  # after a sequence's eos come padding tokens, not draws
    assert ((top_10 == drawn[..., None]).any(-1) | ~live).all()
    assert torch.equal(model.generate(**kwargs, do_sample=True, top_k=1), greedy)


def test_too_long_input_is_a_clear_error():
    model = tester.build(max_position_embeddings=8)
    with pytest.raises(ValueError, match="longer than max_position_embeddings=8"):
        model(input_ids=torch.ones(1, 9, dtype=torch.long), decoder_input_ids=torch.ones(1, 2, dtype=torch.long))
    # without position vectors there is no limit: 9 tokens give what a model with room for 64 gives
    unlimited = tester.build(max_position_embeddings=8, position_encoding="none")
    roomy = tester.build(max_position_embeddings=64, position_encoding="none")
    roomy.load_state_dict(unlimited.state_dict())
    ids = dict(
        input_ids=torch.randint(4, tester.vocab_size, (1, 9)), decoder_input_ids=torch.ones(1, 2, dtype=torch.long)
    )
    with torch.no_grad():
        torch.testing.assert_close(unlimited(**ids).logits, roomy(**ids).logits, atol=0, rtol=0)


def test_auto_from_config_as_in_the_readme():
    config = ScratchformerConfig(
        vocab_size=40, d_model=32, encoder_layers=1, decoder_layers=1, attention_score="additive"
    )
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config)
    torch.manual_seed(0)
    direct = ScratchformerForConditionalGeneration(config)
    assert type(model) is ScratchformerForConditionalGeneration
    expected = direct.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())
    input_ids = torch.randint(4, 40, (2, 6))
    out = model.eval().generate(input_ids, num_beams=4, max_new_tokens=4)
    assert torch.equal(out, direct.eval().generate(input_ids, num_beams=4, max_new_tokens=4))
    assert (out[:, 0] == config.decoder_start_token_id).all()  # decoder start, then the 4 new tokens
    assert out.shape == (2, 1 + 4) or (out == config.eos_token_id).any()  # (fewer only if every beam ended)


def test_bf16_loss_and_gradients_match_fp32():
    """The same weights in bf16 give the fp32 loss and gradients to within bf16's precision (8 bits of
    mantissa: relative error ~1e-2 after a few layers)."""
    inputs = tester.prepare_inputs(tester.get_config())
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        model = tester.build().to(dtype).train()
        loss = model(**inputs, labels=inputs["decoder_input_ids"]).loss
        loss.backward()
        results.append((loss.float(), model.lm_head.weight.grad.float()))
    (loss32, grad32), (loss16, grad16) = results
    assert loss16.dtype == torch.float32  # the loss is computed in fp32
    torch.testing.assert_close(loss16, loss32, rtol=2e-2, atol=0)
    torch.testing.assert_close(grad16, grad32, rtol=5e-2, atol=5e-3)


# ------------------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_is_inverted_dropout_with_independent_decisions(p):
    """The definition (Srivastava et al. 2014, F.dropout's contract): each element zeroed independently
    with probability p, the others scaled by 1 / (1 - p); checked by binomial statistics within 6 sigma,
    per 16-bit lane of the 64-bit draws and for neighbours cut from the same draw."""
    torch.manual_seed(0)
    x = torch.rand(999, 1001, dtype=torch.float64) + 0.5  # numel not a multiple of 4: the last draw is cut
    torch.manual_seed(1)
    out = dropout(x, p)
    dropped = out == 0
    n = x.numel()

    def close_to(fraction, expected, count):
        return abs(fraction - expected) < 6 * math.sqrt(expected * (1 - expected) / count) + 2**-16

    assert close_to(dropped.double().mean().item(), p, n)
    lanes = dropped.flatten()[: n // 4 * 4].view(-1, 4)  # the four 16-bit lanes of each 64-bit draw
    for lane in range(4):
        assert close_to(lanes[:, lane].double().mean().item(), p, lanes.shape[0])
    both = (lanes[:, 0] & lanes[:, 1]).double().mean().item()  # independent: P(both dropped) = p^2
    assert close_to(both, p * p, lanes.shape[0])
    torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p), rtol=1e-4, atol=0)  # p rounded to 2^-16
    torch.manual_seed(1)
    assert torch.equal(dropout(x, p), out)  # the seed decides the mask


def test_dropout_gradient_identity_and_edge_cases():
    x = torch.randn(7, 13, requires_grad=True)
    out = dropout(x, 0.3)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, (out != 0).float() / (1 - 0.3), rtol=1e-4, atol=0)  # d out / dx = mask / (1 - p)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert not dropout(x, 1.0).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_dropout_is_x_plus_dropout(dtype):
    """add_dropout(x, y, p) = x + dropout(y, p) under the same seed (the residual sublayers' fused form); the kept
    values of y and of its gradient are scaled by the exact 1 / (1 - p): their mean ratio is within 1e-4 of it in
    bf16 too, where a scale rounded to bf16 would be 0.16% off; the gradient of x is the upstream one."""
    p, shape = 0.1, (200, 512)
    scale = 2**16 / (2**16 - round(p * 2**16))
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    y = (torch.rand(shape, dtype=torch.float64) + 1).to(dtype).requires_grad_()  # in [1, 2]: roundings unbiased
    torch.manual_seed(3)
    fused = add_dropout(x, y, p)
    torch.manual_seed(3)
    dropped_y = dropout(y.detach().double(), p)  # the same decisions: they depend on the seed and the size only
    kept = dropped_y != 0
    assert 0.08 < (~kept).double().mean() < 0.12
    tolerance = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 1e-2}
    torch.testing.assert_close(fused.double(), x.detach().double() + dropped_y, **tolerance)
    torch.manual_seed(3)
    alone = add_dropout(torch.zeros_like(x), y, p)  # y * m * s, rounded once
    assert abs((alone.double()[kept] / y.double()[kept]).mean().item() / scale - 1) < 1e-4
    assert not alone[~kept].any()
    upstream = (torch.rand(shape, dtype=torch.float64) + 1).to(dtype)
    grad_x, grad_y = torch.autograd.grad(fused, (x, y), upstream)
    assert torch.equal(grad_x, upstream)
    assert grad_y.dtype == dtype and not grad_y[~kept].any()
    assert abs((grad_y.double()[kept] / upstream.double()[kept]).mean().item() / scale - 1) < 1e-4
    assert torch.equal(add_dropout(x, y, p, training=False), x + y)
