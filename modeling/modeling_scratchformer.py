"""The scratchformer encoder-decoder ("Attention Is All You Need", built from the lecture notes' pieces).

Encoder block:  x = Norm(x, SelfAttention(x)),  x = Norm(x, FFN(x))
Decoder block:  x = Norm(x, MaskedSelfAttention(x)),  x = Norm(x, CrossAttention(x, encoder)),  x = Norm(x, FFN(x))
with Norm the residual + LayerNorm in the place ``config.norm_placement`` says:
    "post": x = LayerNorm(x + Sublayer(x))   (the paper)       "pre": x = x + Sublayer(LayerNorm(x))

The three output kinds of the notes are the three heads: one label per vector
(ScratchformerForTokenClassification), one label per sequence (ScratchformerForSequenceClassification)
and an output whose length the model decides (ScratchformerForConditionalGeneration, with generate()).
"""

import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import Concatenate, WeightConverter, WeightRenaming
from transformers.generation import CompileConfig, GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    MaskedLMOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import can_return_tuple

from ..configuration.configuration_scratchformer import ScratchformerConfig
from .attention_scratchformer import ATTENTION_CLASSES, AdditiveScore
from .compat_scratchformer import CACHE_FIELD, cache_field, the_cache
from .linear_scratchformer import Linear
from .loss_scratchformer import linear_cross_entropy
from .masks_scratchformer import padding_mask, self_attention_mask
from .positions_scratchformer import POSITIONS, RotaryPositionEncoding, SinusoidalPositionEncoding

# ---------------------------------------------------------------------------------------------- dropout


def keep_decisions(x, p, dtype=torch.bool):
    """Inverted dropout's random part on the CPU: a keep mask shaped like x (1 = keep, in ``dtype``), and the
    scale 1 / (1 - p).

    The keep/drop decisions are 16-bit uniform integers, cut four at a time from 64-bit draws of torch's
    generator, so p is rounded to a multiple of 2^-16 and the scale uses the rounded value: E[keep * scale] = 1
    exactly. torch's CPU F.dropout draws one random number per element through bernoulli_, which took 12% of a
    training step here; a quarter as many draws makes a call about twice as fast (benchmarks/bench.py,
    "dropout"; tests/test_modeling.py checks the statistics). The comparison writes the mask in ``dtype``
    directly: a bool mask cast afterwards costs one more pass over it.
    """
    dropped = round(p * 2**16)  # P(drop) = dropped / 2^16
    words = torch.randint(-(2**63), 2**63 - 1, (-(-x.numel() // 4),), dtype=torch.int64)  # ceil(numel / 4)
    bits = words.view(torch.int16)[: x.numel()].view(x.shape)  # uniform over [-2^15, 2^15)
    keep = torch.ge(bits, dropped - 2**15, out=torch.empty(x.shape, dtype=dtype, device=x.device))
    return keep, 2**16 / (2**16 - dropped)


def uses_keep_decisions(x, p):
    """Whether dropout of x goes through keep_decisions (CPU, 0 < p < 1) rather than F.dropout."""
    return x.device.type == "cpu" and 0.0 < p < 1.0


def dropout(x, p, training=True):
    """Inverted dropout: every element is zeroed with probability p, the rest scaled by 1 / (1 - p).

    On the CPU through keep_decisions; other devices use F.dropout, one fused kernel.
    """
    if not training or p == 0.0:
        return x
    if not uses_keep_decisions(x, p):
        return F.dropout(x, p, training=True)
    keep, scale = keep_decisions(x, p)
    return torch.where(keep, x * scale, 0.0)


class AddDropout(torch.autograd.Function):
    """x + y * m * s, m the keep mask (0 or 1, in y's dtype), s = 1 / (1 - p): one addcmul forward and one backward.

    The scale is addcmul's scalar, applied in fp32 inside the kernel, so a 16-bit result is rounded once and the
    scale itself never is (in bf16 1 / 0.9 would round to 1.109: a 0.2% bias). Autograd's own addcmul backward
    multiplies m by s in y's dtype first, which is why the backward is written here.
    """

    @staticmethod
    def forward(ctx, x, y, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.addcmul(x, y, keep, value=scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad, torch.addcmul(grad.new_zeros(()), grad, keep, value=ctx.scale), None, None


def add_dropout(x, y, p, training=True):
    """x + dropout(y), as a residual connection adds a sublayer's output: on the CPU one AddDropout, a pass fewer
    than the two ops forward and backward."""
    if training and uses_keep_decisions(y, p):
        keep, scale = keep_decisions(y, p, y.dtype)
        return AddDropout.apply(x, y, keep, scale)
    return x + dropout(y, p, training)


# --------------------------------------------------------------------------------------- residual + norm


@dataclass(frozen=True)
class NormPlacement:
    """Where the LayerNorm of a residual sublayer sits: before the sublayer, after the residual add, and
    whether the stack needs one more LayerNorm at its end (pre-norm leaves the residual stream unnormalised)."""

    before: bool
    after: bool
    final: bool


NORM_PLACEMENTS = {
    "post": NormPlacement(before=False, after=True, final=False),  # x = LayerNorm(x + f(x))
    "pre": NormPlacement(before=True, after=False, final=True),  # x = x + f(LayerNorm(x))
}


class ResidualNorm(nn.Module):
    """Residual connection + LayerNorm around one sublayer, placed as ``config.norm_placement`` says."""

    def __init__(self, config: ScratchformerConfig):
        super().__init__()
        placement = NORM_PLACEMENTS[config.norm_placement]
        self.before, self.after = placement.before, placement.after
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def sublayer_input(self, x):
        return self.layer_norm(x) if self.before else x

    def add(self, x, sublayer_output):
        x = add_dropout(x, sublayer_output, self.dropout, self.training)
        return self.layer_norm(x) if self.after else x


class FeedForward(nn.Module):
    """Position-wise FFN(x) = W_2 act(W_1 x + b_1) + b_2, applied to every token vector independently."""

    def __init__(self, config: ScratchformerConfig, ffn_dim):
        super().__init__()
        self.fc1 = Linear(config.d_model, ffn_dim)
        self.fc2 = Linear(ffn_dim, config.d_model)
        self.activation = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.relu = config.activation_function == "relu"

    def forward(self, x):
        if self.relu and type(self.fc1) is Linear and self.fc1.runs_plain():  # not wrapped (an adapter, say)
            x = self.fc1.forward_relu(x)  # act(W_1 x + b_1) in one kernel where linear_scratchformer fuses
        else:
            x = self.activation(self.fc1(x))
        if self.training and self.activation_dropout:
            x = dropout(x, self.activation_dropout)
        return self.fc2(x)


# ----------------------------------------------------------------------------------------------- layers


class ScratchformerEncoderLayer(GradientCheckpointingLayer):
    """Multi-head self-attention, then the feed-forward network, each wrapped in residual + LayerNorm."""

    def __init__(self, config: ScratchformerConfig, layer_idx):
        super().__init__()
        attention_class = ATTENTION_CLASSES[config.attention_pattern]
        self.self_attn = attention_class(config, config.encoder_attention_heads, layer_idx=layer_idx)
        self.self_attn_norm = ResidualNorm(config)
        self.ffn = FeedForward(config, config.encoder_ffn_dim)
        self.final_norm = ResidualNorm(config)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, output_attentions=False):
        attended, weights = self.self_attn(
            self.self_attn_norm.sublayer_input(hidden_states),
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            output_attentions=output_attentions,
        )
        hidden_states = self.self_attn_norm.add(hidden_states, attended)
        hidden_states = self.final_norm.add(hidden_states, self.ffn(self.final_norm.sublayer_input(hidden_states)))
        return hidden_states, weights


class ScratchformerDecoderLayer(GradientCheckpointingLayer):
    """Masked (causal) self-attention, cross-attention over the encoder output, then the FFN."""

    def __init__(self, config: ScratchformerConfig, layer_idx):
        super().__init__()
        attention_class = ATTENTION_CLASSES[config.attention_pattern]
        heads = config.decoder_attention_heads
        self.self_attn = attention_class(config, heads, is_causal=True, layer_idx=layer_idx)
        self.self_attn_norm = ResidualNorm(config)
        self.encoder_attn = attention_class(config, heads, is_cross_attention=True, layer_idx=layer_idx)
        self.encoder_attn_norm = ResidualNorm(config)
        self.ffn = FeedForward(config, config.decoder_ffn_dim)
        self.final_norm = ResidualNorm(config)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        position_embeddings=None,
        output_attentions=False,
    ):
        attended, self_weights = self.self_attn(
            self.self_attn_norm.sublayer_input(hidden_states),
            attention_mask=attention_mask,
            cache=cache,
            position_embeddings=position_embeddings,
            output_attentions=output_attentions,
        )
        hidden_states = self.self_attn_norm.add(hidden_states, attended)
        attended, cross_weights = self.encoder_attn(
            self.encoder_attn_norm.sublayer_input(hidden_states),
            key_value_states=encoder_hidden_states,
            attention_mask=encoder_attention_mask,
            cache=cache,
            output_attentions=output_attentions,
        )
        hidden_states = self.encoder_attn_norm.add(hidden_states, attended)
        hidden_states = self.final_norm.add(hidden_states, self.ffn(self.final_norm.sublayer_input(hidden_states)))
        return hidden_states, self_weights, cross_weights


# -------------------------------------------------------------------------------------- pretrained model


def checkpoint_conversion(*attentions):
    """Checkpoint layout (BART's names) <-> module layout, for the layers of one stack; ``attentions``: its
    attention sublayers ("self_attn", and "encoder_attn" in the decoder). Keys under ``layers.N.``:

        on disk (BART)                         in memory
        {sublayer}_layer_norm.{weight,bias}    {sublayer}_norm.layer_norm.*   (sublayer: each attention, "final")
        fc1.*, fc2.*                           ffn.fc1.*, ffn.fc2.*
        self_attn.{q,k,v}_proj.*               self_attn.qkv_proj.*           rows [W^q; W^k; W^v]
        encoder_attn.{k,v}_proj.*              encoder_attn.kv_proj.*         rows [W^k; W^v]

    Every other key has the same name in both. The norms and the FFN are renamings; the fused projections are
    converters: from_pretrained concatenates along the output dim, save_pretrained splits back (transformers
    runs every transform in reverse when saving). A renaming matches only a name right after the layer index:
    keys already in the memory layout (``layers.N.ffn.fc1``, from ``save_pretrained(save_original_format=False)``)
    match none, load unchanged and save back in that layout whole (transformers reverts only what matched)."""
    renamed = {f"{sublayer}_layer_norm": f"{sublayer}_norm.layer_norm" for sublayer in (*attentions, "final")}
    renamed |= {fc: f"ffn.{fc}" for fc in ("fc1", "fc2")}
    renamings = [
        WeightRenaming(
            source_patterns=r"(?<=\d)" + re.escape(f".{disk}."),  # right after layers.N
            target_patterns=re.escape(f".{memory}."),
        )
        for disk, memory in renamed.items()
    ]
    fused = {
        "self_attn": ("qkv_proj", ("q_proj", "k_proj", "v_proj")),
        "encoder_attn": ("kv_proj", ("k_proj", "v_proj")),
    }
    converters = [
        WeightConverter(
            source_patterns=[f"{module}.{part}.{tensor}" for part in fused[module][1]],
            target_patterns=f"{module}.{fused[module][0]}.{tensor}",
            operations=[Concatenate(dim=0)],
        )
        for module in attentions
        for tensor in ("weight", "bias")
    ]
    return renamings + converters


class ScratchformerPreTrainedModel(PreTrainedModel):
    config_class = ScratchformerConfig
    config: ScratchformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ScratchformerEncoderLayer", "ScratchformerDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]  # the name from transformers 5.24, and before
    _supports_sdpa = True
    _supports_flash_attn = False
    _can_compile_fullgraph = True  # static cache + torch.compile(fullgraph=True) of the decoding forward
    _supports_flex_attn = False

    def create_masks_for_generate(self, config, inputs_embeds, attention_mask, **kwargs):
        """generate() asks for a 4-D decoder mask when the cache is static; the decoder builds its own from the
        query positions and the cache's length (masks_scratchformer.py), so the 2-D padding mask passes as it is."""
        return attention_mask

    def _init_weights(self, module):
        """Normal(0, init_std) for weight matrices and embeddings (transformers' default), plus our own
        parameters, and the non-persistent tables that from_pretrained would otherwise leave uninitialised."""
        super()._init_weights(module)
        if isinstance(module, AdditiveScore):
            for parameter in (module.w_query, module.w_key, module.v):
                init.normal_(parameter, mean=0.0, std=self.config.init_std)
        elif isinstance(module, SinusoidalPositionEncoding):
            init.copy_(module.table, SinusoidalPositionEncoding(self.config, 1).table)
        elif isinstance(module, RotaryPositionEncoding):
            cos, sin = module.rotation_table(module.num_positions)
            init.copy_(module.cos, cos)
            init.copy_(module.sin, sin)


def check_length(config, num_positions):
    """Positions beyond the table would index out of range: say so instead."""
    if config.position_encoding != "none" and num_positions > config.max_position_embeddings:
        raise ValueError(
            f"sequence of {num_positions} positions is longer than max_position_embeddings="
            f"{config.max_position_embeddings} (position_encoding={config.position_encoding!r}); "
            "truncate the input or build the model with a larger max_position_embeddings"
        )


class ScaledEmbedding(nn.Embedding):
    """Token vectors a^i = s * W_e[x^i], with s = sqrt(d_model) when ``config.scale_embedding`` ("Attention Is
    All You Need", 3.4), else 1. The scale lives in the embedding module, as in BART, so that
    ``model(inputs_embeds=model.get_input_embeddings()(ids))`` equals ``model(input_ids=ids)``."""

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0

    def forward(self, input_ids):
        return super().forward(input_ids) * self.embed_scale


class ScratchformerStack(ScratchformerPreTrainedModel):
    """What encoder and decoder share: token embeddings a^i, + position vectors e^i, dropout."""

    def __init__(self, config: ScratchformerConfig, num_heads, embed_tokens=None):
        super().__init__(config)
        self.embed_tokens = embed_tokens if embed_tokens is not None else ScaledEmbedding(config)
        self.embed_positions = POSITIONS[config.position_encoding](config, num_heads)
        self.layer_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
            if NORM_PLACEMENTS[config.norm_placement].final
            else nn.Identity()
        )
        self.dropout = config.dropout

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def check_custom_mask(self, mask, name):
        """A 4-D mask (the caller's own, e.g. a graph's edges) where the attention pattern cannot apply one."""
        pattern = self.config.attention_pattern
        if mask is not None and mask.dim() == 4 and not ATTENTION_CLASSES[pattern].takes_custom_masks:
            raise ValueError(
                f"attention_pattern={pattern!r} cannot take a 4-D {name} (its sums run over every "
                "key); pass a 2-D padding mask, or use attention_pattern 'full' or 'window'"
            )

    def embed(self, input_ids, inputs_embeds, past_length=0):
        """a^i + e^i for the new tokens at positions past_length, past_length + 1, ...; ``inputs_embeds`` are
        the a^i themselves (any vectors). Also returns the rotary (cos, sin) of those positions, or None."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        length = inputs_embeds.shape[1]
        if not torch.compiler.is_compiling():  # a static cache counts its tokens in a tensor
            check_length(self.config, int(past_length) + length)
        position_ids = (torch.arange(length, device=inputs_embeds.device) + past_length)[None]
        positions = self.embed_positions(position_ids)
        hidden_states = inputs_embeds if positions is None else inputs_embeds + positions.to(inputs_embeds.dtype)
        hidden_states = dropout(hidden_states, self.dropout, self.training)
        return hidden_states, self.embed_positions.rotary(position_ids), position_ids[0]


class ScratchformerEncoder(ScratchformerStack):
    """A stack of encoder blocks: every token attends to every (unpadded) token, or to its window."""

    def __init__(self, config: ScratchformerConfig, embed_tokens=None):
        super().__init__(config, config.encoder_attention_heads, embed_tokens)
        features = config.input_features_dim
        self.input_projection = nn.Linear(features, config.d_model) if features else None  # W_in, b_in
        self.layers = nn.ModuleList(ScratchformerEncoderLayer(config, i) for i in range(config.encoder_layers))
        self.gradient_checkpointing = False
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        **kwargs,
    ) -> BaseModelOutput:
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        self.check_custom_mask(attention_mask, "attention_mask")
        if inputs_embeds is not None and self.input_projection is not None:  # vectors of input_features_dim
            inputs_embeds = self.input_projection(inputs_embeds)
        hidden_states, rotary, positions = self.embed(input_ids, inputs_embeds)
        keep = self_attention_mask(
            positions, positions, causal=False, window=self.config.attention_window, key_padding=attention_mask
        )
        all_hidden_states, all_attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            hidden_states, weights = layer(hidden_states, keep, rotary, output_attentions)
            all_attentions.append(weights)
        hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


class ScratchformerDecoder(ScratchformerStack):
    """A stack of decoder blocks: token t attends to tokens <= t (within the window) and to the encoder."""

    def __init__(self, config: ScratchformerConfig, embed_tokens=None):
        super().__init__(config, config.decoder_attention_heads, embed_tokens)
        self.layers = nn.ModuleList(ScratchformerDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.gradient_checkpointing = False
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """cache: the key/value cache, also accepted as ``past_key_values`` (its name before transformers 5.24)."""
        cache = the_cache(cache, past_key_values)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and use_cache:
            use_cache = False  # a cache written inside a checkpointed layer would be written twice
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            cache = None
        self.check_custom_mask(attention_mask, "decoder attention_mask")
        self.check_custom_mask(encoder_attention_mask, "encoder_attention_mask")
        past_length = cache.get_seq_length() if cache is not None else 0
        hidden_states, rotary, query_pos = self.embed(input_ids, inputs_embeds, past_length)
        # the keys the layers will see: past + new tokens, or a static cache's every slot (the unwritten ones
        # lie in the future of every query, so the causal mask hides them)
        length = query_pos.shape[0]
        key_length = cache.get_mask_sizes(length, 0)[0] if cache is not None else length
        key_pos = torch.arange(key_length, device=query_pos.device)
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] < key_length:
            attention_mask = F.pad(attention_mask, (0, key_length - attention_mask.shape[-1]), value=1)
        keep = self_attention_mask(
            query_pos,
            key_pos,
            causal=True,
            window=self.config.attention_window,
            key_padding=attention_mask,
            # a static cache's unwritten slots (its count is a tensor once written; before, it returns 0)
            future_keys=not isinstance(past_length, int) or key_length > past_length + length,
        )
        cross_keep = padding_mask(encoder_attention_mask)

        all_hidden_states, all_self_attentions, all_cross_attentions = [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            hidden_states, self_weights, cross_weights = layer(
                hidden_states, keep, encoder_hidden_states, cross_keep, cache, rotary, output_attentions
            )
            all_self_attentions.append(self_weights)
            all_cross_attentions.append(cross_weights)
        hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            **cache_field(cache),
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_self_attentions) if output_attentions else None,
            cross_attentions=tuple(all_cross_attentions) if output_attentions else None,
        )


# Registered per stack class, not per model_type: transformers looks every PreTrainedModel sub-module up by
# class name and scopes its conversions to that sub-module's prefix, so the encoder-only heads, which have no
# encoder_attn, get no cross-attention converter.
for _stack, _attentions in (
    (ScratchformerEncoder, ["self_attn"]),
    (ScratchformerDecoder, ["self_attn", "encoder_attn"]),
):
    register_checkpoint_conversion_mapping(_stack.__name__, checkpoint_conversion(*_attentions), overwrite=True)


# ------------------------------------------------------------------------------------------ base models


def tie_stack_embeddings(model, *stacks):
    """One vocabulary: the stacks embed with ``model.shared.weight``. Under ``config.tie_word_embeddings`` each
    stack gets an embedding module of its own whose weight transformers ties to ``shared.weight``
    (``_tied_weights_keys``, as BART), so that from_pretrained treats ``shared.weight`` as a real key (reported
    and initialised when a file lacks it). Built on the meta device, the modules take no memory and draw no
    random numbers. Untied, transformers ties nothing, and the stacks hold ``shared`` itself."""
    if model.config.tie_word_embeddings:
        for stack in stacks:
            with torch.device("meta"):
                stack.embed_tokens = ScaledEmbedding(model.config)


class ScratchformerModel(ScratchformerPreTrainedModel):
    """The bare encoder-decoder: returns the decoder's last hidden states (and the encoder's)."""

    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
    }

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.shared = ScaledEmbedding(config)  # one vocabulary
        self.encoder = ScratchformerEncoder(config, self.shared)
        self.decoder = ScratchformerDecoder(config, self.shared)
        tie_stack_embeddings(self, self.encoder, self.decoder)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = self.shared
        self.decoder.embed_tokens = self.shared

    def get_encoder(self, modality=None):
        return self.encoder

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        """cache: the key/value cache, also accepted as ``past_key_values`` (its name before transformers 5.24)."""
        cache = the_cache(cache, past_key_values)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass decoder_input_ids (or labels to the seq2seq head, which shifts them)")
            decoder_input_ids = shift_tokens_right(
                input_ids, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **cache_field(getattr(decoder_outputs, CACHE_FIELD)),
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class ScratchformerEncoderModel(ScratchformerPreTrainedModel):
    """Embeddings + encoder only, the body of the classification heads. Weight names match
    ScratchformerModel's (``shared``, ``encoder.*``), so a seq2seq checkpoint's encoder loads into it."""

    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.shared = ScaledEmbedding(config)
        self.encoder = ScratchformerEncoder(config, self.shared)
        tie_stack_embeddings(self, self.encoder)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = self.shared

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        **kwargs,
    ) -> BaseModelOutput:
        return self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )


def shift_tokens_right(input_ids, pad_token_id, decoder_start_token_id):
    """Decoder inputs from labels: [start, y_1, ..., y_{n-1}], with ignored labels (-100) read as padding."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# ------------------------------------------------------------------------------------------------ heads


def token_cross_entropy(logits, labels, label_smoothing=0.0, num_items_in_batch=None):
    """Cross-entropy of (..., C) logits against labels (-100: no loss), in fp32: the mean over the labelled
    tokens, or, given ``num_items_in_batch`` (the labelled tokens of a whole optimiser step, which transformers'
    Trainer passes under gradient accumulation), their sum / num_items_in_batch."""
    flat, labels = logits.float().view(-1, logits.shape[-1]), labels.to(logits.device).view(-1)
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = F.cross_entropy(flat, labels, ignore_index=-100, label_smoothing=label_smoothing, reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


# Elements per thread below which a compiled decoding kernel runs on one thread (inductor's cpp.min_chunk_size, 512 by
# default), by how OpenMP's idle threads wait. Under OMP_WAIT_POLICY=PASSIVE they sleep and waking one costs ~70 us,
# about what one thread takes to stream 2^19 fp32 elements; otherwise they spin and wake in ~1 us.
DECODING_MIN_CHUNK = {"PASSIVE": 2**19, "otherwise": 2**17}


def decoding_compile_config(device_type: str = "cpu") -> CompileConfig:
    """The ``compile_config`` of the fastest documented ``generate()``, used with ``cache_implementation="static"``:
    the decoding forward compiled as one graph (fullgraph) for the static cache's fixed shapes. On a CPU four more
    settings, all about a decoding step's few hundred small kernels:

    - transformers compiles off accelerators only when told (``_compile_all_devices``);
    - inductor calls the graph's kernels from a C++ wrapper instead of Python (``cpp_wrapper``);
    - a matmul of one row (batch 1) becomes a fused loop of inductor's own (its ``decompose_mm_pass``), not a BLAS
      call, and so does attention for one query (``sdpa_attention`` takes ``single_query_attention`` when compiling);
    - a fused loop is split over threads only when each thread gets at least ``DECODING_MIN_CHUNK`` elements.

    Together: at batch 1 the step's kernels run on one thread where a second one costs more to wake than it saves;
    the vocabulary projection and every matmul of a larger batch still use every thread (README, Performance).
    Elsewhere transformers' defaults (CUDA graphs through mode="reduce-overhead")."""
    if device_type != "cpu":
        return CompileConfig(fullgraph=True, dynamic=False)
    wait = "PASSIVE" if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else "otherwise"
    options = {
        "cpp_wrapper": True,
        "post_grad_fusion_options": {"decompose_mm_pass": {}},
        "cpp.min_chunk_size": DECODING_MIN_CHUNK[wait],
    }
    config = CompileConfig(fullgraph=True, dynamic=False, mode=None, options=options)
    config._compile_all_devices = True
    return config


class ScratchformerForConditionalGeneration(ScratchformerPreTrainedModel, GenerationMixin):
    """Seq2seq language model: the model decides the output length. p(y_t | y_<t, x) = softmax(W_lm h_t)."""

    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.model = ScratchformerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_encoder(self, modality=None):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        past_key_values: Cache | None = None,
        num_items_in_batch=None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """labels (b, n): target ids, -100 where no loss is wanted; decoder inputs are labels shifted right.
        cache: the key/value cache, also accepted as ``past_key_values`` (its name before transformers 5.24).
        num_items_in_batch: see token_cross_entropy."""
        cache = the_cache(cache, past_key_values)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden_states, loss = outputs.last_hidden_state, None
        if labels is not None and self.training and self.config.lm_loss == "fused":
            logits = None  # never stored: the loss and its gradients come from one pass over blocks of rows
            loss = linear_cross_entropy(
                hidden_states, self.lm_head.weight, labels, self.config.label_smoothing, num_items_in_batch
            )
        else:
            logits = self.lm_head(hidden_states)  # (b, n, vocab)
            if labels is not None:
                loss = token_cross_entropy(logits, labels, self.config.label_smoothing, num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(getattr(outputs, CACHE_FIELD)),
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    def prepare_decoder_input_ids_from_labels(self, labels):
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)


def masked_mean(hidden_states, attention_mask):
    """Mean of the token vectors of each sequence, padding excluded: (b, n, d) -> (b, d)."""
    if attention_mask is None:
        return hidden_states.mean(1)
    weights = attention_mask.to(hidden_states.dtype)[:, :, None]  # (b, n, 1)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ScratchformerClassificationHead(nn.Module):
    """Sentence-level head (as BART's): dense -> tanh -> dropout -> projection to the labels."""

    def __init__(self, config: ScratchformerConfig):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.d_model, config.num_labels)

    def forward(self, pooled):
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


def sequence_classification_loss(config, logits, labels):
    """transformers' convention: regression if num_labels == 1, single-label if labels are integers,
    multi-label (BCE) otherwise; ``config.problem_type`` is set on first use."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(
            logits.squeeze(-1).float(), labels.float().view(-1) if config.num_labels == 1 else labels.float()
        )
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class ScratchformerForSequenceClassification(ScratchformerPreTrainedModel):
    """One label per sequence: the encoder's vectors, mean-pooled over real tokens, through a small head."""

    accepts_loss_kwargs = False  # one label per sequence: transformers' Trainer scales the mean loss itself

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.model = ScratchformerEncoderModel(config)
        self.classification_head = ScratchformerClassificationHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classification_head(masked_mean(outputs.last_hidden_state, attention_mask))  # (b, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels.to(logits.device))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class ScratchformerForTokenClassification(ScratchformerPreTrainedModel):
    """One label per token vector: a linear classifier on each encoder output."""

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.model = ScratchformerEncoderModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        num_items_in_batch=None,
        **kwargs,
    ) -> TokenClassifierOutput:
        """labels (b, n): one label id per token, -100 where no loss is wanted (padding, later subwords);
        num_items_in_batch: see token_cross_entropy."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (b, n, labels)
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels, num_items_in_batch=num_items_in_batch)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class ScratchformerLMPredictionHead(nn.Module):
    """BERT's masked-LM head: p(x_i | x with masks) = softmax(W_e · LayerNorm(act(W_t h_i + b_t)) + b), the output
    matrix W_e being the token embeddings (tied)."""

    def __init__(self, config: ScratchformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = ACT2FN[config.activation_function]
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=True)

    def forward(self, hidden_states):
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))


class ScratchformerForMaskedLM(ScratchformerPreTrainedModel):
    """The encoder with a masked-LM head (BERT): predicts the tokens hidden by masking from both sides' context.
    Weight names match the classification heads' (``model.shared``, ``model.encoder.*``), so its encoder loads
    into them and into the seq2seq model's encoder."""

    _tied_weights_keys = {"lm_head.decoder.weight": "model.shared.weight"}

    def __init__(self, config: ScratchformerConfig):
        super().__init__(config)
        self.model = ScratchformerEncoderModel(config)
        self.lm_head = ScratchformerLMPredictionHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, value):
        self.lm_head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        num_items_in_batch=None,
        **kwargs,
    ) -> MaskedLMOutput:
        """labels (b, n): the original token at each masked position, -100 elsewhere. With
        ``config.sparse_prediction`` and labels, the head runs on the masked positions only (as ModernBERT's) and
        the logits are theirs, (k, vocab) in row-major order: the head over the whole vocabulary is most of the
        cost of a small model, and 85% of its rows would be thrown away."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        if labels is not None and self.config.sparse_prediction:
            labels = labels.to(hidden_states.device)
            hidden_states, labels = hidden_states[labels != -100], labels[labels != -100]
        logits = self.lm_head(hidden_states)  # (b, n, vocab), or (k, vocab)
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels, num_items_in_batch=num_items_in_batch)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "decoding_compile_config",
    "ScratchformerEncoderModel",
    "ScratchformerForConditionalGeneration",
    "ScratchformerForMaskedLM",
    "ScratchformerForSequenceClassification",
    "ScratchformerForTokenClassification",
    "ScratchformerModel",
    "ScratchformerPreTrainedModel",
]
