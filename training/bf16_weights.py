"""bf16 weights, fp32 master weights (``--mixed_precision bf16-weights``): the bf16 mode of DeepSpeed and Megatron.

Autocast (``--mixed_precision bf16``) keeps fp32 weights and casts around every matmul, so the residual stream,
the LayerNorms and every elementwise op stay in fp32 and each linear pays a cast of its input, forward and
backward. Here the forward and backward run on a bf16 copy of the model, with no casts at all, and the
optimiser steps the model's own fp32 weights, so updates below bf16's resolution (2^-8 relative) are kept:

    g32 += float(g16)             after each backward: the bf16 gradients accumulate in fp32
    g32 <- mean over processes    at an optimiser step (several processes)
    w32 <- AdamW(w32, g32)        the optimiser, its state and the checkpoints: fp32, as without this mode
    w16 <- bf16(w32)              the copy that computes the next step

The fp32 model is what is validated, saved, averaged and tested, so a run's release is the same kind of model as
an fp32 run's. The losses are computed on fp32 logits (the heads call ``.float()`` before cross-entropy).

    compute = Bf16Weights(model)       # in Python: the one line; then per step
    compute(**batch).loss.backward(); compute.gradients_to_master(); optimizer.step(); compute.refresh()
"""

import copy

import torch
from torch import nn


class Bf16Weights:
    """A bf16 copy of ``model`` to run forward and backward on, tied to ``model``'s fp32 parameters."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError(f"bf16-weights needs an fp32 model to keep as the master weights; it has {model.dtype}")
        self.module = copy.deepcopy(model).to(dtype)
        pairs = [(p32, p16) for p32, p16 in zip(model.parameters(), self.module.parameters()) if p32.requires_grad]
        self.master_params = [p32 for p32, _ in pairs]
        self.params = [p16 for _, p16 in pairs]

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self

    @torch.no_grad()
    def gradients_to_master(self):
        """g32 += float(g16), and the bf16 gradients are freed: called after every backward."""
        for p32, p16 in zip(self.master_params, self.params):
            if p16.grad is None:
                continue
            if p32.grad is None:
                p32.grad = p16.grad.float()
            else:
                p32.grad.add_(p16.grad)
            p16.grad = None

    @torch.no_grad()
    def average_gradients(self, accelerator):
        """The mean of the fp32 gradients over processes (what DDP does to the gradients it sees), one all-reduce."""
        if accelerator.num_processes == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.master_params]
        flat = accelerator.reduce(torch.cat([g.reshape(-1) for g in grads]), "mean")
        for p, g in zip(self.master_params, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p)

    @torch.no_grad()
    def refresh(self):
        """w16 <- bf16(w32): after an optimiser step, a resume or any change to the master weights."""
        torch._foreach_copy_(self.params, self.master_params)


__all__ = ["Bf16Weights"]
