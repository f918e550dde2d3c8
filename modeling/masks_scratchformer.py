"""Attention masks, in one format: bool, True = "this query may attend to this key" (SDPA's convention).

Shape ``(b or 1, 1, i, j)``: broadcast over heads. Masks are built from absolute positions, so a cached
decoding step (queries at positions past..past+i-1) needs no special case. ``None`` means "nothing is
masked", or, for a causal module whose queries and keys are the same tokens, "plain causal" (the
convention of transformers' sdpa kernel), which lets SDPA use its fused causal path.

The window pattern's mask is a ``BandMask``: the band |i - j| <= w kept as its parts (positions, w,
padding) in O(n) memory, so that window attention can run in blocks; ``dense()`` is the same mask as
``keep_mask`` builds.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def keep_mask(query_pos, key_pos, *, causal, window=None, key_padding=None):
    """Keep[b, 0, i, j] = (not causal or j <= i) and (window is None or |i - j| <= w) and key j is not padding.

    query_pos: (i,) absolute positions of the queries; key_pos: (j,) of the keys;
    key_padding: (b, j) with 1 for real tokens, 0 for padding, or None. A query left with no key
    (possible only for a padding query) gets an output of 0 from every kernel, sdpa included.
    """
    offset = query_pos[:, None] - key_pos[None, :]  # (i, j): i - j
    keep = torch.ones_like(offset, dtype=torch.bool)
    if causal:
        keep &= offset >= 0
    if window is not None:
        keep &= offset.abs() <= window  # truncated self-attention: |i - j| <= w
    keep = keep[None, None]  # (1, 1, i, j)
    return keep if key_padding is None else keep & key_padding.bool()[:, None, None, :]


@dataclass
class BandMask:
    """Truncated self-attention's mask, |i - j| <= window (and j <= i if causal) with key padding, not
    materialised: O(i + j) memory instead of the dense (i, j) tensor."""

    query_pos: torch.Tensor  # (i,)
    key_pos: torch.Tensor  # (j,)
    window: int
    causal: bool
    key_padding: torch.Tensor | None  # (b, j), 1 = real token

    def dense(self):
        """The same mask as keep_mask(), (b or 1, 1, i, j)."""
        return keep_mask(
            self.query_pos, self.key_pos, causal=self.causal, window=self.window, key_padding=self.key_padding
        )

    def blocks(self, block):
        """The mask seen by query block c (queries c*block + t) over its key span (keys c*block - w + s),
        for every block at once: (b or 1, num_blocks, 1, block, span), span = block + w (+ w if not causal).

        Assumes queries and keys are the same consecutive positions (self-attention without a cache)."""
        w, n = self.window, self.key_pos.shape[0]
        num_blocks = -(-n // block)
        span = block + w + (0 if self.causal else w)
        t = torch.arange(block, device=self.key_pos.device)
        s = torch.arange(span, device=self.key_pos.device)
        band = keep_mask(t + w, s, causal=self.causal, window=w)  # (1, 1, block, span): offset i - j = t + w - s
        real = torch.ones(1, n, device=self.key_pos.device) if self.key_padding is None else self.key_padding
        real = F.pad(real.to(band.device, torch.float32), (w, span - block - w + num_blocks * block - n))
        real = real.unfold(1, span, block).bool()  # (b or 1, num_blocks, span): key exists and is not padding
        return band[:, None] & real[:, :, None, None, :]


def custom_keep(mask):
    """A caller's 4-D mask (b or 1, 1, i, j) as a keep mask: bool (True = attend), or additive float (0 = attend,
    a large negative number = masked), as transformers builds them. Attention restricted to a graph's edges
    is such a mask: keep[b, 0, i, j] = (j is a neighbour of i)."""
    if mask.dim() != 4:
        raise ValueError(f"a 4-D attention mask has shape (batch or 1, 1, queries, keys); got {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask == 0


def unpadded_to_none(key_padding):
    """An all-ones padding mask masks nothing: drop it, so the kernels take their unmasked fast path
    (as transformers does for sdpa). Kept while compiling, where the data-dependent check would break."""
    if key_padding is None or torch.compiler.is_compiling() or not bool(key_padding.all()):
        return key_padding
    return None


def padding_mask(key_padding):
    """Keep[b, 0, 0, j] = key j is a real token; None when nothing is padded (no mask, fast path). A 4-D mask
    (cross-attention restricted by the caller) is taken as it is."""
    if key_padding is not None and key_padding.dim() == 4:
        return custom_keep(key_padding)
    key_padding = unpadded_to_none(key_padding)
    if key_padding is None:
        return None
    return key_padding.bool()[:, None, None, :]  # (b, 1, 1, j)


def self_attention_mask(query_pos, key_pos, *, causal, window=None, key_padding=None, future_keys=False):
    """The self-attention mask of one stack, built once per forward and shared by its layers.

    Returns None where the kernel needs no mask: full attention without padding (bidirectional), and
    causal attention without padding whose queries and keys are the same tokens, or a single new query
    over past keys only; a BandMask for the window pattern. `future_keys`: the keys include slots after the
    queries (a static cache's unwritten ones), which only the causal mask hides.
    """
    if key_padding is not None and key_padding.dim() == 4:  # the caller's own mask, within the pattern's
        keep = custom_keep(key_padding)
        if causal or window is not None:
            keep = keep & keep_mask(query_pos, key_pos, causal=causal, window=window)
        return keep
    key_padding = unpadded_to_none(key_padding)
    if window is not None:
        return BandMask(query_pos, key_pos, window, causal, key_padding)
    if key_padding is None and not future_keys:
        if not causal or query_pos.shape[0] == 1 or query_pos.shape[0] == key_pos.shape[0]:
            return None
    if not causal:
        return padding_mask(key_padding)
    return keep_mask(query_pos, key_pos, causal=causal, key_padding=key_padding)


__all__ = ["BandMask", "keep_mask", "padding_mask", "self_attention_mask"]
