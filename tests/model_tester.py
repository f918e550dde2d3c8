"""BART's ModelTester, re-created (transformers' test mixins are not in the wheel): tiny configs and inputs,
seeded models of them, and the checks that several test files share.

As in transformers' ``BartModelTester``: ``get_config`` / ``prepare_inputs`` / ``prepare_config_and_inputs``
make the tiny setting, ``build`` a seeded model of it, and each ``create_and_check_*`` runs one check on a
model. Every check compares the model with a value computed independently of the path under test: each
sequence run alone (padding), one forward without a cache (cached decoding), the model before saving
(save/load), the head's formula applied to the returned hidden states (outputs), the tester's own sizes
(shapes).
"""

import itertools
from pathlib import Path

import torch

from scratchformer import (
    ScratchformerConfig,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
)
from scratchformer.configuration.configuration_scratchformer import CHOICES
from scratchformer.modeling.attention_scratchformer import ATTENTION_CLASSES
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD, cache_field
from scratchformer.modeling.modeling_scratchformer import ScratchformerEncoderModel


def variant_grid():
    """Every valid combination of the variant axes in CHOICES, as config overrides with readable ids."""
    axes = list(CHOICES)
    for values in itertools.product(*CHOICES.values()):
        variant = dict(zip(axes, values))
        if variant["attention_pattern"] == "linear" and (
            (variant["attention_score"], variant["attention_normalizer"]) != ("dot", "softmax")
        ):
            continue  # linear attention has its own feature map instead of a score and a normalizer
        if variant["attention_pattern"] == "window":
            variant["attention_window"] = 2
        yield variant


def variant_id(variant):
    short = {
        "attention_score": "score",
        "attention_normalizer": "norm",
        "attention_pattern": "pattern",
        "position_encoding": "pos",
        "norm_placement": "ln",
    }
    return "-".join(f"{short[k]}={v}" for k, v in variant.items() if k in short)


VARIANTS = list(variant_grid())
VARIANT_IDS = [variant_id(v) for v in VARIANTS]

# Heads that read the encoder only (no decoder inputs, no decoder outputs).
ENCODER_ONLY = (ScratchformerEncoderModel, ScratchformerForSequenceClassification, ScratchformerForTokenClassification)
# generate() modes the cached-vs-uncached check runs.
GREEDY, BEAM = dict(do_sample=False), dict(num_beams=3, do_sample=False)


def cross_entropy_by_hand(logits, labels, label_smoothing=0.0, ignore_index=-100):
    """Mean over the kept labels of -(1 - e) log p(label) - e mean_v log p(v): written out, not F.cross_entropy
    (which the models call)."""
    log_probs = logits.float().log_softmax(-1)
    keep = labels != ignore_index
    nll = -log_probs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    uniform = -log_probs.mean(-1)
    return ((1 - label_smoothing) * nll + label_smoothing * uniform)[keep].mean()


def main_output(out):
    """The head's own output: logits, or the last hidden state of the bare models."""
    return out.logits if "logits" in out else out.last_hidden_state


class ModelTester:
    batch_size, src_len, tgt_len, vocab_size = 3, 7, 5, 99
    d_model, num_heads, num_layers, num_labels = 16, 4, 2, 3

    def __init__(self, attn_implementation="eager", seed=0):
        """attn_implementation: the kernel ``build`` asks for ("eager": the from-scratch one, the default
        here; "sdpa": what ``Model(config)`` picks); seed: the torch seed every model is built under."""
        self.attn_implementation, self.seed = attn_implementation, seed

    # ------------------------------------------------------------------------------- config and inputs

    def get_config(self, **overrides):
        """Tiny, deterministic, shared by every head."""
        base = dict(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            encoder_layers=self.num_layers,
            decoder_layers=self.num_layers,
            encoder_attention_heads=self.num_heads,
            decoder_attention_heads=self.num_heads,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=64,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            classifier_dropout=0.0,
            num_labels=self.num_labels,
        )
        return ScratchformerConfig(**(base | overrides))

    def prepare_inputs(self, config, pad_last=True):
        """Random ids avoiding the special tokens; the last sequence ends in 2 padding tokens."""
        generator = torch.Generator().manual_seed(1)
        input_ids = torch.randint(4, config.vocab_size, (self.batch_size, self.src_len), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        if pad_last:
            input_ids[-1, -2:] = config.pad_token_id
            attention_mask[-1, -2:] = 0
        decoder_input_ids = torch.randint(4, config.vocab_size, (self.batch_size, self.tgt_len), generator=generator)
        decoder_input_ids[:, 0] = config.decoder_start_token_id
        return dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)

    @staticmethod
    def inputs_for(model_class, inputs):
        """``inputs`` as ``model_class`` takes them: the encoder-only heads get no decoder ids."""
        if issubclass(model_class, ENCODER_ONLY):
            return {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
        return dict(inputs)

    def prepare_config_and_inputs(self, model_class=ScratchformerForConditionalGeneration, **overrides):
        config = self.get_config(**overrides)
        return config, self.inputs_for(model_class, self.prepare_inputs(config))

    def prepare_lm_labels(self, seed=2):
        """Random target ids (b, tgt_len), special tokens avoided."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(4, self.vocab_size, (self.batch_size, self.tgt_len), generator=generator)

    # ------------------------------------------------------------------------------------------ models

    def build(self, model_class=ScratchformerForConditionalGeneration, attn_implementation=None, **config_overrides):
        """A model of the tiny config (with ``config_overrides``), built under the tester's seed, in eval mode."""
        torch.manual_seed(self.seed)
        return model_class._from_config(
            self.get_config(**config_overrides), attn_implementation=attn_implementation or self.attn_implementation
        ).eval()

    def build_attention(
        self,
        pattern="full",
        *,
        causal=False,
        cross=False,
        implementation="eager",
        std=None,
        layer_idx=0,
        **config_overrides,
    ):
        """One attention module of the tiny config (``attention_pattern=pattern``); ``std``: redraw every
        parameter from N(0, std^2) (larger weights than the init, so the scores are far from uniform)."""
        config = self.get_config(attention_pattern=pattern, **config_overrides)
        config._attn_implementation = implementation
        torch.manual_seed(self.seed)
        module = ATTENTION_CLASSES[pattern](
            config, self.num_heads, is_causal=causal, is_cross_attention=cross, layer_idx=layer_idx
        )
        if std is not None:
            for parameter in module.parameters():
                torch.nn.init.normal_(parameter, std=std)
        return module

    # ---------------------------------------------------------------------------------------- checks

    def create_and_check_model_outputs(self, model, inputs, ask=True):
        """Every output the head returns has the shape the tester's sizes give, and the head's output is its
        formula applied to the returned last hidden state. ``ask``: pass output_attentions /
        output_hidden_states (else the config must set them). Returns the outputs."""
        config = model.config
        b, n = inputs["input_ids"].shape
        flags = dict(output_attentions=True, output_hidden_states=True) if ask else {}
        with torch.no_grad():
            out = model(**inputs, **flags)
        d, heads = config.d_model, config.encoder_attention_heads
        encoder_only = isinstance(model, ENCODER_ONLY)
        m = None if encoder_only else inputs["decoder_input_ids"].shape[1]
        hidden = out.hidden_states if encoder_only else out.encoder_hidden_states
        attentions = out.attentions if encoder_only else out.encoder_attentions
        assert [tuple(h.shape) for h in hidden] == [(b, n, d)] * (config.encoder_layers + 1)
        assert [tuple(a.shape) for a in attentions] == [(b, heads, n, n)] * config.encoder_layers
        if not encoder_only:
            heads = config.decoder_attention_heads
            assert [tuple(h.shape) for h in out.decoder_hidden_states] == [(b, m, d)] * (config.decoder_layers + 1)
            assert [tuple(a.shape) for a in out.decoder_attentions] == [(b, heads, m, m)] * config.decoder_layers
            assert [tuple(a.shape) for a in out.cross_attentions] == [(b, heads, m, n)] * config.decoder_layers
            torch.testing.assert_close(out.encoder_last_hidden_state, hidden[-1], atol=0, rtol=0)
            last = out.decoder_hidden_states[-1]
        else:
            last = hidden[-1]
        with torch.no_grad():
            if isinstance(model, ScratchformerForConditionalGeneration):  # p(y_t | ...) = softmax(W_lm h_t)
                expected, shape = last @ model.lm_head.weight.T, (b, m, config.vocab_size)
            elif isinstance(model, ScratchformerForTokenClassification):  # one linear classifier per token
                expected, shape = last @ model.classifier.weight.T + model.classifier.bias, (b, n, config.num_labels)
            elif isinstance(model, ScratchformerForSequenceClassification):  # mean over real tokens -> head
                mask = inputs["attention_mask"][..., None].float()
                head = model.classification_head
                pooled = (last * mask).sum(1) / mask.sum(1)
                expected = torch.tanh(pooled @ head.dense.weight.T + head.dense.bias) @ head.out_proj.weight.T
                expected, shape = expected + head.out_proj.bias, (b, config.num_labels)
            else:  # the bare models return the last hidden state itself
                expected, shape = last, (b, n if encoder_only else m, d)
        assert tuple(main_output(out).shape) == shape
        torch.testing.assert_close(main_output(out), expected, atol=1e-5, rtol=1e-5)
        return out

    def _real_outputs(self, model, inputs):
        """Per sequence, the outputs that padding must not move: {name: tensor}, padded source positions dropped."""
        with torch.no_grad():
            out = model(**inputs)
        keep = inputs["attention_mask"].bool()
        main = main_output(out)
        on_source = isinstance(model, (ScratchformerEncoderModel, ScratchformerForTokenClassification))
        rows = []
        for i, k in enumerate(keep):
            row = {"output": main[i, k] if on_source else main[i]}
            if out.get("encoder_last_hidden_state") is not None:
                row["encoder output"] = out.encoder_last_hidden_state[i, k]
            rows.append(row)
        return rows

    def create_and_check_padding_invariance(self, model, inputs, atol=1e-5, rtol=1e-5):
        """A padded batch gives, for every sequence, what that sequence gives alone without padding; other ids
        under the padding, or more padding, move no real output."""
        keep = inputs["attention_mask"].bool()
        assert not keep.all(), "the inputs hold no padding: the check would be vacuous"
        batch = self._real_outputs(model, inputs)
        for i, k in enumerate(keep):
            alone = {name: value[i : i + 1] for name, value in inputs.items()}
            alone["input_ids"], alone["attention_mask"] = alone["input_ids"][:, k], alone["attention_mask"][:, k]
            (expected,) = self._real_outputs(model, alone)
            for name in expected:
                torch.testing.assert_close(
                    batch[i][name],
                    expected[name],
                    atol=atol,
                    rtol=rtol,
                    msg=lambda m, i=i, name=name: f"sequence {i}, {name}: {m}",
                )
        repadded = dict(inputs, input_ids=inputs["input_ids"].masked_fill(~keep, 7))
        extra = torch.zeros_like(inputs["input_ids"][:, :3])
        padded = dict(
            inputs,
            input_ids=torch.cat([inputs["input_ids"], extra + model.config.pad_token_id], 1),
            attention_mask=torch.cat([inputs["attention_mask"], extra], 1),
        )
        for what, changed in (("other ids under the padding", repadded), ("3 more padding tokens", padded)):
            for i, row in enumerate(self._real_outputs(model, changed)):
                for name in row:
                    torch.testing.assert_close(
                        row[name],
                        batch[i][name],
                        atol=atol,
                        rtol=rtol,
                        msg=lambda m, i=i, name=name, what=what: f"{what}, {i}, {name}: {m}",
                    )

    def create_and_check_decoder_model_past_large_inputs(self, model, inputs, new_tokens=3):
        """BART's check: the decoder inputs fed in two chunks through the cache (the first ones, then the last
        ``new_tokens`` at once) give the outputs of one forward over all of them without a cache."""
        ids = inputs["decoder_input_ids"]
        source = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        with torch.no_grad():
            no_past = model(**source, decoder_input_ids=ids, use_cache=False)
            first = model(**source, decoder_input_ids=ids[:, :-new_tokens], use_cache=True)
            cache = getattr(first, CACHE_FIELD)
            assert cache.get_seq_length() == ids.shape[1] - new_tokens
            from_past = model(**source, decoder_input_ids=ids[:, -new_tokens:], use_cache=True, **cache_field(cache))
        assert getattr(no_past, CACHE_FIELD) is None
        assert getattr(from_past, CACHE_FIELD).get_seq_length() == ids.shape[1]
        torch.testing.assert_close(main_output(first), main_output(no_past)[:, :-new_tokens], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(main_output(from_past), main_output(no_past)[:, -new_tokens:], atol=1e-5, rtol=1e-4)

    def create_and_check_generate_with_cache_equals_without(self, model, inputs, new_tokens=6, modes=(GREEDY, BEAM)):
        """generate() with the cache == generate() recomputing every step, token for token and score for score;
        the returned cache went through every decoder input (all tokens but the last)."""
        kwargs = dict(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            return_dict_in_generate=True,
            output_scores=True,
        )
        for mode in modes:
            cached = model.generate(**kwargs, **mode, use_cache=True)
            uncached = model.generate(**kwargs, **mode, use_cache=False)
            assert tuple(cached.sequences.shape) == (inputs["input_ids"].shape[0], 1 + new_tokens), mode
            assert getattr(cached, CACHE_FIELD).get_seq_length() == new_tokens, mode
            assert getattr(uncached, CACHE_FIELD) is None, mode
            assert torch.equal(cached.sequences, uncached.sequences), mode
            torch.testing.assert_close(torch.stack(cached.scores), torch.stack(uncached.scores), atol=1e-5, rtol=1e-4)

    def create_and_check_save_load(self, model, inputs, directory, auto_class=None):
        """save_pretrained (safetensors only) -> ``auto_class`` (or the model's class).from_pretrained: the same
        class, the same tensors under the same names, the same tying, exactly the same outputs. Returns the
        reloaded model."""
        directory = Path(directory)
        model.save_pretrained(directory)
        files = {path.name for path in directory.iterdir()}
        assert "model.safetensors" in files and not [name for name in files if name.endswith(".bin")], files
        reloaded = (
            (auto_class or type(model))
            .from_pretrained(directory, attn_implementation=model.config._attn_implementation)
            .eval()
        )  # same kernel: exact
        assert type(reloaded) is type(model)
        expected_state, got_state = model.state_dict(), reloaded.state_dict()
        assert set(got_state) == set(expected_state)
        for name, tensor in expected_state.items():
            assert torch.equal(got_state[name], tensor), name
        if isinstance(model, ScratchformerForConditionalGeneration):
            tied = reloaded.lm_head.weight is reloaded.model.shared.weight
            assert tied == model.config.tie_word_embeddings == (model.lm_head.weight is model.model.shared.weight)
        with torch.no_grad():
            expected, got = model(**inputs), reloaded(**inputs)
        torch.testing.assert_close(main_output(got), main_output(expected), atol=0, rtol=0)
        return reloaded
