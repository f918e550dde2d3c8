"""Attention as in the lecture notes, one head, tokens as the columns of I:

    Q = W^q I      K = W^k I      V = W^v I
    A = K^T Q      A' = normalise(A)      O = V A'

Tensors are row-major (batch, heads, tokens, head_dim), so scores[b, h, i, j] = A[j, i] = k_j . q_i:
we hold A transposed, and every normalizer runs over keys (dim=-1), the notes' column-wise softmax.
Multi-head: W^q, W^k, W^v are each one d_model x d_model projection whose output is reshaped into h
heads of d_model / h dimensions; the h outputs b^{i,1..h} are concatenated and mixed by W^O (out_proj).
The projections that read the same input run as one matmul: self-attention's [W^q; W^k; W^v] is
``qkv_proj`` (d_model -> 3 d_model), cross-attention's [W^k; W^v] over the encoder output is ``kv_proj``.
Checkpoints keep BART's names, separate q_proj / k_proj / v_proj included (the whole on-disk layout:
``checkpoint_conversion`` in modeling).

Each variant axis is a registry, looked up once when the module is built:
    SCORES       config.attention_score       (q, k) -> A^T
    NORMALIZERS  config.attention_normalizer  (A^T, keep) -> A'^T
    ATTENTION_CLASSES  config.attention_pattern: quadratic attention ("full", "window") or linear.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicLayer, EncoderDecoderCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

from ..configuration.configuration_scratchformer import ScratchformerConfig
from .linear_scratchformer import Linear
from .masks_scratchformer import BandMask
from .positions_scratchformer import apply_rotary

logger = logging.get_logger(__name__)

SCORES: dict[str, type[nn.Module]] = {}  # name -> module: (q, k) -> A^T
NORMALIZERS: dict[str, Callable] = {}  # name -> f(scores, keep) -> A'^T


def register(table, name):
    """Decorator: add an implementation to a registry under ``name`` (refuses duplicates)."""

    def add(obj):
        if name in table:
            raise ValueError(f"{name!r} is already registered")
        table[name] = obj
        return obj

    return add


# ----------------------------------------------------------------------------------------------- scores


@register(SCORES, "dot")
class DotProductScore(nn.Module):
    """A = K^T Q / sqrt(d_head): scores[b, h, i, j] = q_i . k_j / sqrt(d_head)."""

    def __init__(self, config: ScratchformerConfig, num_heads, head_dim):
        super().__init__()
        self.scale = head_dim**-0.5

    def forward(self, q, k):  # (b, h, i, d), (b, h, j, d)
        return q @ k.transpose(-1, -2) * self.scale  # (b, h, i, j)


@register(SCORES, "additive")
class AdditiveScore(nn.Module):
    """Additive (Bahdanau) score, per head: A[j, i] = v^T tanh(W q_i + U k_j), W, U: d_head x d_head, v: d_head."""

    def __init__(self, config: ScratchformerConfig, num_heads, head_dim):
        super().__init__()
        self.w_query = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))  # W, one per head
        self.w_key = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))  # U
        self.v = nn.Parameter(torch.empty(num_heads, head_dim))  # v

    def forward(self, q, k):  # (b, h, i, d), (b, h, j, d)
        wq = torch.einsum("bhid,hed->bhie", q, self.w_query)  # (b, h, i, d): W q_i
        uk = torch.einsum("bhjd,hed->bhje", k, self.w_key)  # (b, h, j, d): U k_j
        hidden = torch.tanh(wq[:, :, :, None, :] + uk[:, :, None, :, :])  # (b, h, i, j, d)
        return torch.einsum("bhijd,hd->bhij", hidden, self.v)  # (b, h, i, j)


# ------------------------------------------------------------------------------------------ normalizers


@register(NORMALIZERS, "softmax")
def softmax_over_keys(scores, keep):
    """A' = softmax(A) per query; keep is bool, True = may attend; a query with no key gets 0.

    16-bit scores go to the kernel as they are: it sums in fp32 and rounds once, the same weights as
    ``softmax(dtype=torch.float32).to(dtype)`` (bit for bit on the CPU) without the two casts and their backward."""
    if keep is None:
        return scores.softmax(-1)
    weights = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(-1)
    return weights * keep.any(-1, keepdim=True)


def visible_keys(scores, keep):
    """n: how many keys each query may see, (b or 1, h or 1, i or 1, 1)."""
    if keep is None:
        return torch.full((1, 1, 1, 1), scores.shape[-1], dtype=scores.dtype, device=scores.device)
    return keep.sum(-1, keepdim=True).clamp(min=1).to(scores.dtype)


@register(NORMALIZERS, "relu")
def relu_over_keys(scores, keep):
    """A' = relu(A) / n, n = number of keys the query may see (ReLU attention, Wortsman et al. 2023)."""
    weights = torch.relu(scores) / visible_keys(scores, keep)
    return weights if keep is None else weights.masked_fill(~keep, 0.0)


@register(NORMALIZERS, "sigmoid")
def sigmoid_over_keys(scores, keep):
    """A' = sigmoid(A - log n), n = number of keys the query may see (sigmoid attention, Ramapuram et al. 2024)."""
    weights = torch.sigmoid(scores - visible_keys(scores, keep).log())
    return weights if keep is None else weights.masked_fill(~keep, 0.0)


# -------------------------------------------------------------------------------------- eager kernel


def causal_keep(num_queries, num_keys, device):
    """Query t of the last num_queries tokens sees keys 0 .. num_keys - num_queries + t, shape (1, 1, i, j)."""
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril(num_keys - num_queries)[None, None]


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The from-scratch path, every score and normalizer: A = score(Q, K), A' = normalise(A), O = A' V.

    transformers' kernel signature; ``scaling`` is ignored (the score module owns its scale).
    Returns out (b, i, h, d) and the weights A'^T (b, h, i, j).
    """
    keep = attention_mask
    if keep is None and module.is_causal and query.shape[2] > 1:
        keep = causal_keep(query.shape[2], key.shape[2], query.device)
    scores = module.score(query, key)  # (b, h, i, j)
    weights = module.normalize(scores, keep)  # (b, h, i, j)
    out = F.dropout(weights, p=dropout, training=module.training) @ value  # (b, h, i, d)
    return out.transpose(1, 2), weights  # (b, i, h, d)


def single_query_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """softmax(q K^T * scaling + mask) V for one query per head (a cached decoding step), as weighted sums:
    a_j = q . k_j * scaling, A' = softmax over the keys, o = sum_j A'_j v_j, no matmul and no weights kept.

    Why: compiled on a CPU, inductor fuses each sum into a loop of its own that runs on one thread while it is
    small (``decoding_compile_config``'s chunk), where torch's flash kernel is a call out of the graph that wakes
    every thread, ~70 us a time under ``OMP_WAIT_POLICY=PASSIVE`` (6 per token here: README, Performance).
    query (b, h, 1, d), key and value (b, h, j, d), bool keep mask (b or 1, 1, 1, j) or None; returns out
    (b, 1, h, d), None.
    """
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = (query * key).sum(-1).unsqueeze(-2) * scaling  # (b, h, 1, j)
    weights = softmax_over_keys(scores, attention_mask)  # a query that may see no key gets 0
    out = (weights.transpose(-1, -2) * value).sum(-2, keepdim=True)  # (b, h, 1, d)
    return out.transpose(1, 2), None


# sdpa_attention: 16-bit CPU attention over this many keys takes the explicit form (bf16 matmuls, fp32 softmax)
EXPLICIT_16_BIT_KEYS = range(32, 129)


class ExplicitAttention(torch.autograd.Function):
    """O = softmax(Q K^T s + mask) V with its backward written out: sdpa_attention's 16-bit CPU path.

    Forward, as batched matmuls over the (b * h) heads, the softmax summed in fp32 inside its kernel:
        S = (s Q) K^T, keys off the mask at the dtype's lowest value; P = softmax(S), 0 for a query with no key;
        O = P V
    (P is softmax_over_keys, the "softmax" normaliser, written in place here, its empty-row product only when needed.)
    Backward (flash attention's gradients, from the saved P rather than recomputed), G = dL/dO:
        dV = P^T G    dP = G V^T    dS = P * (dP - rowsum(P * dP))    dQ = s dS K    dK = dS^T (s Q)
    Autograd through the same ops would spend a pass on each op that only reshapes or masks: here Q is scaled as
    it is made contiguous (one pass, where the heads' view is copied anyway), the mask is written into S in place,
    dS needs no mask (P is 0 there, so dS is) and dQ's s is the matmul's alpha.
    query (b, h, i, d), key and value (b, h, j, d), bool keep mask (b or 1, 1, i, j) or None; returns (b, i, h, d).
    """

    @staticmethod
    def forward(ctx, query, key, value, keep, scaling: float):
        (b, h, i, d), j = query.shape, key.shape[2]
        q = torch.mul(query, scaling, out=query.new_empty(b, h, i, d)).view(b * h, i, d)  # s Q, contiguous
        k, v = key.reshape(b * h, j, d), value.reshape(b * h, j, d)
        scores = torch.bmm(q, k.transpose(1, 2)).view(b, h, i, j)
        if keep is not None:
            scores.masked_fill_(~keep, torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1)  # (b, h, i, j)
        if keep is not None and not (has_key := keep.any(-1, keepdim=True)).all():
            weights.mul_(has_key)  # a query that may see no key gets 0
        ctx.save_for_backward(q, k, v, weights)
        ctx.scaling, ctx.heads = scaling, h
        return torch.bmm(weights.view(b * h, i, j), v).view(b, h, i, d).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_out):  # (b, i, h, d)
        q, k, v, weights = ctx.saved_tensors
        (bh, i, d), j, h = q.shape, k.shape[1], ctx.heads
        p = weights.view(bh, i, j)
        g = grad_out.transpose(1, 2).reshape(bh, i, d)
        grad_v = torch.bmm(p.transpose(1, 2), g)
        grad_s = torch._softmax_backward_data(torch.bmm(g, v.transpose(1, 2)), p, -1, p.dtype)  # P * (dP - rowsum)
        grad_q = torch.baddbmm(grad_s.new_empty(()), grad_s, k, beta=0, alpha=ctx.scaling)  # s inside the matmul
        grad_k = torch.bmm(grad_s.transpose(1, 2), q)
        return (
            grad_q.view(bh // h, h, i, d),
            grad_k.view(bh // h, h, j, d),
            grad_v.view(bh // h, h, j, d),
            None,
            None,
        )


def explicit_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0):
    """softmax(Q K^T * scaling + mask) V as ExplicitAttention; with attention dropout while training, or in a
    compiled graph (which has its own fusion, and no place for the Function's host-side check), the eager kernel
    on contiguous heads (each matmul would copy the heads' views, and copy them again in its backward).
    Returns out (b, i, h, d)."""
    if (dropout and module.training) or torch.compiler.is_compiling():
        query, key, value = (x.contiguous() for x in (query, key, value))
        return eager_attention(module, query, key, value, attention_mask, scaling, dropout)[0]
    keep = attention_mask
    if keep is None and module.is_causal and query.shape[2] > 1:
        keep = causal_keep(query.shape[2], key.shape[2], query.device)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    return ExplicitAttention.apply(query, key, value, keep, scaling)


def sdpa_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """softmax(Q K^T * scaling + mask) V in torch's fused kernel (flash-style on CPU and GPU), no weights kept.

    The same contract as transformers' "sdpa" kernel for this module's inputs (bool keep mask or None,
    None + ``module.is_causal`` = plain causal), without its per-call handling of cases this model never
    has (grouped KV heads, paged caches, tracing): a cached decoding step calls it 6 times per token.
    Returns out (b, i, h, d), None.
    """
    if query.device.type == "cpu" and query.shape[2] == 1 and torch.compiler.is_compiling():
        if dropout == 0.0 and (attention_mask is None or attention_mask.dtype == torch.bool):
            return single_query_attention(module, query, key, value, attention_mask, scaling)
    if query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16):
        # torch's CPU flash kernel is about 2x slower in 16 bits than in fp32 (forward + backward of a (32, 4, 64, 64)
        # attention: 23 ms against 11 ms on the project's 2-core CPU), so it runs on the fp32 values, 16 bits
        # returned (autocast off inside, or it would cast them back down). Over 32 to 128 keys the explicit form is
        # faster still: Q K^T and A' V as 16-bit matmuls (AMX), the softmax summed in fp32, 8 ms, and the (i, j)
        # weights it keeps are about the size of Q. Over fewer keys its tiny matmuls lost to the kernel in the
        # default job's training steps (G2P, about 10 keys); from about 256 keys on the two cost the same.
        if key.shape[2] in EXPLICIT_16_BIT_KEYS and (attention_mask is None or attention_mask.dtype == torch.bool):
            return explicit_attention(module, query, key, value, attention_mask, scaling, dropout), None
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast("cpu", enabled=False):
            out, _ = sdpa_attention(module, query.float(), key.float(), value.float(), attention_mask, scaling, dropout)
        return out.to(query.dtype), None
    is_causal = query.shape[2] > 1 and attention_mask is None and module.is_causal
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=is_causal, scale=scaling
    )
    return out.transpose(1, 2), None


KERNELS = {"eager": eager_attention, "sdpa": sdpa_attention}  # others: transformers' ALL_ATTENTION_FUNCTIONS


# ------------------------------------------------------------------------------------ attention modules


class ScratchformerAttention(nn.Module):
    """Multi-head attention over all keys ("full") or a band |i - j| <= w ("window", via the mask).

    Self-attention, or with ``is_cross_attention`` cross-attention (queries from the decoder, keys and
    values from the encoder output, ``key_value_states``). Runs the eager kernel for every
    score/normalizer; for dot-product + softmax, the kernel ``config._attn_implementation`` names
    (``KERNELS``, else one registered with transformers' AttentionInterface).
    """

    takes_custom_masks = True  # any (b, 1, i, j) keep mask: attention restricted to a graph, say

    def __init__(
        self, config: ScratchformerConfig, num_heads, *, is_causal=False, is_cross_attention=False, layer_idx=None
    ):
        super().__init__()
        self.config = config
        self.num_heads, self.head_dim = num_heads, config.d_model // num_heads
        self.is_causal, self.is_cross_attention, self.layer_idx = is_causal, is_cross_attention, layer_idx
        self.dropout = config.attention_dropout
        self.scaling = self.head_dim**-0.5
        if is_cross_attention:  # queries from the decoder, keys and values from the encoder output
            self.q_proj = Linear(config.d_model, config.d_model)  # W^q, all heads at once
            self.kv_proj = Linear(config.d_model, 2 * config.d_model)  # [W^k; W^v], one matmul
        else:
            self.qkv_proj = Linear(config.d_model, 3 * config.d_model)  # [W^q; W^k; W^v], one matmul
        self.out_proj = Linear(config.d_model, config.d_model)  # W^O
        self.score = SCORES[config.attention_score](config, num_heads, self.head_dim)
        self.normalize = NORMALIZERS[config.attention_normalizer]
        self.fused_kernel_ok = (config.attention_score, config.attention_normalizer) == ("dot", "softmax")

    def split_heads(self, x, parts=1):
        """(b, n, parts * d_model), the projections side by side -> ``parts`` tensors (b, h, n, d_head)."""
        b, n, _ = x.shape
        return x.view(b, n, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self,
        hidden_states,
        key_value_states=None,
        attention_mask=None,
        cache=None,
        position_embeddings=None,
        output_attentions=False,
        **kwargs,
    ):
        """hidden_states (b, i, d_model) -> (b, i, d_model), weights (b, h, i, j) or None.

        attention_mask: bool keep mask (b or 1, 1, i, j) or None (see masks_scratchformer);
        position_embeddings: (cos, sin) of the rotary encoding for the new tokens, or None.
        """
        if self.is_cross_attention:
            (query,) = self.split_heads(self.q_proj(hidden_states))  # (b, h, i, d)
        else:
            query, key, value = self.split_heads(self.qkv_proj(hidden_states), 3)  # (b, h, i, d) each
        layers = None  # the cache of this kind of attention: self- or cross-
        if isinstance(cache, EncoderDecoderCache):
            layers = cache.cross_attention_cache if self.is_cross_attention else cache.self_attention_cache
        elif cache is not None and not self.is_cross_attention:
            layers = cache
        if self.is_cross_attention and layers is not None and cache.is_updated.get(self.layer_idx):
            memory = self.recall(layers.layers[self.layer_idx])  # encoder keys/values: computed once per generation
        else:
            if self.is_cross_attention:
                key, value = self.split_heads(self.kv_proj(key_value_states), 2)  # (b, h, j, d) each
            if position_embeddings is not None:
                query, key = apply_rotary(query, *position_embeddings), apply_rotary(key, *position_embeddings)
            memory = self.remember(key, value, layers, attention_mask, output_attentions)
            if self.is_cross_attention and layers is not None:
                cache.is_updated[self.layer_idx] = True
        out, weights = self.attend(query, memory, attention_mask, output_attentions)  # (b, i, h, d)
        out = self.out_proj(out.reshape(*hidden_states.shape[:-1], -1))  # concat heads, then W^O
        return out, weights

    # The three steps a pattern may change: what is kept in the cache, how it is read back, how to attend.
    def remember(self, key, value, cache, attention_mask, output_attentions):
        """Append this step's keys/values to the cache (if any); return all keys/values to attend to."""
        if cache is None:
            return key, value
        if not self.is_cross_attention:
            growing_layer(cache, self.layer_idx)
        return cache.update(key, value, self.layer_idx)

    def recall(self, cache_layer):
        return cache_layer.keys, cache_layer.values

    def attend(self, query, memory, attention_mask, output_attentions):
        key, value = memory
        kernel, implementation = eager_attention, self.config._attn_implementation
        if self.fused_kernel_ok and not output_attentions:
            kernel = KERNELS.get(implementation) or ALL_ATTENTION_FUNCTIONS.get_interface(
                implementation, eager_attention
            )
        elif implementation != "eager":  # say once why the fused kernel is not used
            why = (
                "output_attentions=True (fused kernels return no weights)"
                if self.fused_kernel_ok
                else f"attention_score={self.config.attention_score!r}, attention_normalizer="
                f"{self.config.attention_normalizer!r} (fused kernels compute dot-product + softmax only)"
            )
            logger.warning_once(f"attn_implementation={implementation!r} runs the eager attention kernel for {why}")
        return kernel(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
        )


# ------------------------------------------------------------------------------------- window attention


class GrowingLayer(DynamicLayer):
    """transformers' DynamicLayer with the keys/values held in buffers that double when full.

    DynamicLayer appends a decoding step by ``torch.cat``, copying all n cached positions: O(n) per step, O(n^2)
    per generation. Here a step writes its t new positions in place, and a full buffer is copied into one of
    twice the size: amortised O(t) per step. ``keys`` / ``values`` read as views of the first n positions, so
    everything transformers does with a DynamicLayer (beam reordering, cropping, batch selection, offloading)
    works unchanged: assigning ``keys`` / ``values`` replaces the buffer, and the next step copies out of it
    rather than write into a tensor the layer did not allocate. Where autograd or a compiler watches (gradients
    through the cache, torch.compile over a dynamic cache), it appends by ``torch.cat`` as DynamicLayer does.
    """

    def __init__(self, **kwargs):
        self._buffers, self._lengths = {"keys": None, "values": None}, {"keys": 0, "values": 0}
        super().__init__(**kwargs)

    def _view(self, name):
        buffer = self._buffers[name]
        return buffer if buffer is None or buffer.dim() < 2 else buffer[..., : self._lengths[name], :]

    def _replace(self, name, tensor):
        self._buffers[name] = tensor  # each its own length: DynamicLayer assigns keys, then reads values
        self._lengths[name] = tensor.shape[-2] if tensor is not None and tensor.dim() >= 2 else 0

    keys = property(lambda self: self._view("keys"), lambda self, tensor: self._replace("keys", tensor))
    values = property(lambda self: self._view("values"), lambda self, tensor: self._replace("values", tensor))

    def update(self, key_states, value_states, *args, **kwargs):
        """Write the t new positions after the n cached ones (b, h, t, d); return the n + t positions."""
        watched = torch.compiler.is_compiling() or (
            torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad)
        )
        if watched or not self.is_initialized or self._buffers["keys"].dim() < 2:
            return super().update(key_states, value_states, *args, **kwargs)  # the first step: cat onto nothing
        t = key_states.shape[-2]
        for name, new in (("keys", key_states), ("values", value_states)):
            buffer, n = self._buffers[name], self._lengths[name]
            if n + t > buffer.shape[-2] or buffer.shape[:-2] != new.shape[:-2] or buffer.dtype != new.dtype:
                grown = new.new_empty(*new.shape[:-2], max(2 * n, n + t), new.shape[-1])
                grown[..., :n, :] = buffer[..., :n, :]
                self._buffers[name] = buffer = grown
            buffer[..., n : n + t, :] = new
            self._lengths[name] = n + t
        return self.keys, self.values


def growing_layer(cache, layer_idx):
    """Put a GrowingLayer in place of the dynamic cache's fresh (empty, plain) DynamicLayer at ``layer_idx``;
    layers of any other kind (static, sliding, already filled, linear attention's state) are left as they are."""
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        while len(cache.layers) <= layer_idx:
            cache.layers.append(GrowingLayer())
    if layer_idx < len(cache.layers):
        layer = cache.layers[layer_idx]
        if type(layer) is DynamicLayer and not layer.is_initialized:
            cache.layers[layer_idx] = GrowingLayer()


class ScratchformerWindowAttention(ScratchformerAttention):
    """Truncated self-attention, |i - j| <= w, computed in blocks: O(n w) time and memory, not O(n^2).

    Queries are cut into blocks of w; block c (queries cw .. cw + w - 1) can only see keys
    cw - w .. cw + 2w - 1 (.. cw + w - 1 if causal), so each block attends to that span of 3w (2w) keys
    with the band mask of ``BandMask.blocks``, through the same score/normalizer or sdpa kernel as full
    attention, the blocks folded into the batch. Short inputs (n <= 3w), cached decoding steps and
    ``output_attentions`` use the dense mask instead: the result is the same (tested).
    """

    def attend(self, query, memory, attention_mask, output_attentions):
        if not isinstance(attention_mask, BandMask):  # a dense keep mask given by the caller
            return super().attend(query, memory, attention_mask, output_attentions)
        key, value = memory
        n, w = query.shape[2], attention_mask.window
        if output_attentions or n != key.shape[2] or n <= 3 * w:
            return super().attend(query, memory, attention_mask.dense(), output_attentions)
        keep = attention_mask.blocks(w)  # (b or 1, c, 1, w, span)
        span, num_blocks = keep.shape[-1], keep.shape[1]
        b, h, _, d = query.shape
        pad = num_blocks * w - n  # no copy when w divides n: the blocks are then a view of the queries
        query = (F.pad(query, (0, 0, 0, pad)) if pad else query).unflatten(2, (num_blocks, w))  # (b, h, c, w, d)
        query = query.transpose(1, 2).reshape(b * num_blocks, h, w, d)  # (b c, h, w, d)
        key, value = (self.key_spans(x, w, span, num_blocks, n) for x in (key, value))  # (b c, h, span, d)
        keep = keep.expand(b, -1, -1, -1, -1).reshape(b * num_blocks, 1, w, span)  # (b c, 1, w, span)
        out, _ = super().attend(query, (key, value), keep, False)  # (b c, w, h, d)
        return out.reshape(b, num_blocks * w, h, d)[:, :n], None  # (b, i, h, d)

    @staticmethod
    def key_spans(x, w, span, num_blocks, n):
        """(b, h, n, d) -> the span of keys of every query block, (b * num_blocks, h, span, d)."""
        b, h, _, d = x.shape
        x = F.pad(x, (0, 0, w, span - 2 * w + num_blocks * w - n))  # zero keys before 0 and after n - 1
        x = x.unfold(2, span, w)  # (b, h, c, d, span)
        return x.permute(0, 2, 1, 4, 3).reshape(b * num_blocks, h, span, d)


# ------------------------------------------------------------------------------------- linear attention


def feature_map(x):
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020, eq. 7)."""
    return F.elu(x) + 1.0


class LinearAttentionState(DynamicLayer):
    """Constant-size memory of linear attention, one per layer: S = sum_j phi(k_j) v_j^T and z = sum_j phi(k_j).

    Held as ``keys`` = S (b, h, d, d_v) and ``values`` = z (b, h, 1, d), so the cache's beam reordering and
    batch selection (which index dim 0) apply unchanged; ``get_seq_length`` counts the tokens absorbed.
    """

    def __init__(self, **kwargs):
        super().__init__()
        self.num_tokens = 0

    @staticmethod
    def summarize(phi_key, value):
        """S = phi(K)^T V (b, h, d, d_v) and z = sum_j phi(k_j) (b, h, 1, d): all the queries read of these keys."""
        return phi_key.transpose(-1, -2) @ value, phi_key.sum(-2, keepdim=True)

    def absorb(self, phi_key, value):
        """S += phi(K)^T V, z += sum_j phi(k_j); return the state *before* this step (None if empty)."""
        previous = (self.keys, self.values) if self.is_initialized else None
        state, normalizer = self.summarize(phi_key, value)
        if previous is not None:
            state, normalizer = previous[0] + state, previous[1] + normalizer
        self.keys, self.values, self.is_initialized = state, normalizer, True
        self.dtype, self.device = state.dtype, state.device
        self.num_tokens += phi_key.shape[-2]
        return previous

    def get_seq_length(self):
        return self.num_tokens

    def reset(self):
        super().reset()
        self.num_tokens = 0

    def crop(self, tokens_to_remove):
        raise NotImplementedError("a linear-attention state cannot forget tokens (no crop / assisted decoding)")


def linear_state(cache, layer_idx):
    """The cache's LinearAttentionState for this layer, put in place of a fresh (empty) key/value layer."""
    while len(cache.layers) <= layer_idx:
        cache.layers.append(LinearAttentionState())
    layer = cache.layers[layer_idx]
    if not isinstance(layer, LinearAttentionState):
        if layer.get_seq_length() > 0:
            raise ValueError("linear attention got a cache already holding keys/values; pass a fresh cache")
        layer = cache.layers[layer_idx] = LinearAttentionState()
    return layer


class ScratchformerLinearAttention(ScratchformerAttention):
    """Linear attention ("Transformers are RNNs", Katharopoulos et al. 2020):

        O_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j)),

    j over the keys query i may see. Bidirectional: S = phi(K)^T V once, O(n d^2) instead of O(n^2 d).
    Causal, training (parallel form): (phi(Q) phi(K)^T masked causally) V, normalised by its row sums.
    Causal, decoding (recurrent form): the cache holds S and z only, a constant-size state per layer.
    """

    eps = 1e-6
    takes_custom_masks = False  # the sums S, z run over every key: only padding (and causality) can be applied

    def remember(self, key, value, cache, attention_mask, output_attentions):
        """Returns (phi(K), V, state) for attend(); with a cache, first absorbs phi(K), V into its state.

        Causal, or weights asked for: phi(K) and V for the parallel form, and the state *before* this step
        (None if empty). Bidirectional: only the state S, z of all the keys (phi(K) is freed here, before
        the queries are mapped), which is also what later cross-attention steps recall().
        """
        phi_key = feature_map(key)
        layer = None if cache is None else linear_state(cache, self.layer_idx)
        if attention_mask is not None:  # padded keys contribute nothing: the last query row sees every real key
            start = 0 if layer is None else layer.num_tokens  # the new keys' columns (a static mask has more after)
            keep = attention_mask[:, :, -1, start : start + key.shape[2], None]  # (b, 1, j, 1)
            phi_key = phi_key * keep.to(phi_key.dtype)
        previous = None if layer is None else layer.absorb(phi_key, value)
        if self.is_causal or output_attentions:
            return phi_key, value, previous
        state = LinearAttentionState.summarize(phi_key, value) if layer is None else (layer.keys, layer.values)
        return None, None, state

    def recall(self, cache_layer):
        return None, None, (cache_layer.keys, cache_layer.values)

    def attend(self, query, memory, attention_mask, output_attentions):
        """O = (phi(Q) S + parallel part) / (phi(Q) z + its row sums); S, z hold what the cache or remember()
        summarised, the parallel part covers the keys passed as phi(K) (causal mask applied)."""
        phi_key, value, state = memory
        phi_query = feature_map(query)  # (b, h, i, d)
        numerator = denominator = weights = None
        if state is not None:  # phi(q_i)^T S and phi(q_i)^T z
            numerator, denominator = phi_query @ state[0], phi_query @ state[1].transpose(-1, -2)
        if phi_key is not None:  # parallel form, (b, h, i, j)
            similarity = phi_query @ phi_key.transpose(-1, -2)
            if self.is_causal:
                similarity = similarity * causal_keep(query.shape[2], phi_key.shape[2], query.device)
            num, den = similarity @ value, similarity.sum(-1, keepdim=True)
            if state is None and output_attentions:
                weights = similarity / (den + self.eps)
            numerator = num if numerator is None else numerator + num
            denominator = den if denominator is None else denominator + den
        del phi_query  # peak memory: at most two (b, h, i, d) tensors live from here on
        out = numerator.div_(denominator.add_(self.eps))  # in place: both are this call's own tensors, (b, h, i, d_v)
        return out.transpose(1, 2).contiguous(), weights  # (b, i, h, d_v), laid out so the heads concat as a view


ATTENTION_CLASSES = {
    "full": ScratchformerAttention,
    "window": ScratchformerWindowAttention,  # blocked: O(n w)
    "linear": ScratchformerLinearAttention,
}

__all__ = ["ATTENTION_CLASSES", "NORMALIZERS", "SCORES", "eager_attention", "feature_map"]
