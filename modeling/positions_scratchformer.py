"""Position encodings: self-attention alone has no notion of order, so each position i gets a vector e^i.

Every encoding answers two questions for a block of positions (the registry ``POSITIONS`` holds one
class per ``config.position_encoding``):

- ``forward(position_ids)``: the vectors e^i added to the token embeddings a^i (or None);
- ``rotary(position_ids)``: the (cos, sin) rotations applied to queries and keys inside
  self-attention (RoPE), or None.
"""

import math

import torch
from torch import nn

from ..configuration.configuration_scratchformer import ScratchformerConfig

POSITIONS: dict[str, type[nn.Module]] = {}


def register(name):
    """Class decorator: add a position encoding to ``POSITIONS`` under ``name`` (refuses duplicates)."""

    def add(cls):
        if name in POSITIONS:
            raise ValueError(f"position encoding {name!r} is already registered")
        POSITIONS[name] = cls
        return cls

    return add


def sinusoid_table(num_positions, dim):
    """The hand-crafted table of "Attention Is All You Need" (section 3.5), shape (num_positions, dim):

    PE[pos, 2k] = sin(pos / 10000^(2k / dim)),   PE[pos, 2k + 1] = cos(pos / 10000^(2k / dim)).
    """
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (n, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


class PositionEncoding(nn.Module):
    """Base: no additive vector, no rotation. Subclasses take (config, num_heads of the stack)."""

    def forward(self, position_ids):
        return None

    def rotary(self, position_ids):
        return None


@register("none")
class NoPositionEncoding(PositionEncoding):
    """No order at all: the encoder is then permutation-equivariant."""

    def __init__(self, config: ScratchformerConfig, num_heads):
        super().__init__()


@register("sinusoidal")
class SinusoidalPositionEncoding(PositionEncoding):
    """Hand-crafted e^i: a fixed sinusoid table (a non-persistent buffer, rebuilt on init, never saved)."""

    def __init__(self, config: ScratchformerConfig, num_heads):
        super().__init__()
        self.num_positions, self.dim = config.max_position_embeddings, config.d_model
        self.register_buffer("table", sinusoid_table(self.num_positions, self.dim), persistent=False)

    def forward(self, position_ids):  # (b or 1, n) -> (b or 1, n, d)
        return self.table[position_ids]


@register("learned")
class LearnedPositionEncoding(PositionEncoding):
    """e^i learned from data: one trainable vector per position."""

    def __init__(self, config: ScratchformerConfig, num_heads):
        super().__init__()
        self.embedding = nn.Embedding(config.max_position_embeddings, config.d_model)

    def forward(self, position_ids):
        return self.embedding(position_ids)


@register("rotary")
class RotaryPositionEncoding(PositionEncoding):
    """RoPE (Su et al. 2021): rotate each pair of query/key dimensions by an angle pos * theta^(-2k/d_head),
    so that q_i . k_j depends on i - j only. Nothing is added to the embeddings."""

    def __init__(self, config: ScratchformerConfig, num_heads):
        super().__init__()
        head_dim = config.d_model // num_heads
        self.head_dim, self.theta = head_dim, config.rope_theta
        self.num_positions = config.max_position_embeddings
        cos, sin = self.rotation_table(self.num_positions)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def rotation_table(self, num_positions):
        inv_freq = self.theta ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * inv_freq  # (n, d/2)
        angles = torch.cat([angles, angles], dim=-1)  # (n, d): the "rotate half" layout
        return angles.cos(), angles.sin()

    def rotary(self, position_ids):  # (b or 1, n) -> two (b or 1, 1, n, d_head), broadcast over heads
        return self.cos[position_ids][:, None], self.sin[position_ids][:, None]


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x, cos, sin):
    """x: (b, h, n, d_head) rotated by the angles of its positions."""
    return x * cos + rotate_half(x) * sin


__all__ = ["POSITIONS", "apply_rotary", "sinusoid_table"]
