"""BART's ModelTester, re-created (transformers' test mixins are not in the wheel): tiny configs and inputs."""

import itertools

import torch

from scratchformer import ScratchformerConfig
from scratchformer.configuration.configuration_scratchformer import CHOICES


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
    short = {"attention_score": "score", "attention_normalizer": "norm", "attention_pattern": "pattern",
             "position_encoding": "pos", "norm_placement": "ln"}
    return "-".join(f"{short[k]}={v}" for k, v in variant.items() if k in short)


VARIANTS = list(variant_grid())
VARIANT_IDS = [variant_id(v) for v in VARIANTS]


class ModelTester:
    batch_size, src_len, tgt_len, vocab_size = 3, 7, 5, 99

    def get_config(self, **overrides):
        """Tiny, deterministic, shared by every head."""
        base = dict(vocab_size=self.vocab_size, d_model=16, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32,
                    max_position_embeddings=64, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                    classifier_dropout=0.0, num_labels=3)
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
