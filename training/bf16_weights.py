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

The trainer's optimiser, ``Bf16AdamW``, takes the last three in one pass instead (``optimizer.tie(compute)``):
on a CPU each per-tensor op of that composition is a parallel region of its own, which wakes the thread pool.
"""

import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


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


def adamw_from_bf16(
    params, grads32, grads16, exp_avgs, exp_avg_sqs, steps, copies, lrs, weight_decays, *, betas, eps, max_grad_norm
):
    """One AdamW step of fp32 ``params`` from gradients that arrive partly in bf16, and their bf16 ``copies``:

        g = g32 + float(g16)                              either part may be absent (None)
        g <- g * min(1, max_norm / (||g||_2 + 1e-6))      over all tensors: clip_grad_norm_'s formula
        w <- w (1 - lr wd)                                 decoupled weight decay
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)     (t: ``steps``, already counted)
        w16 <- bf16(w)

    torch's AdamW (its fused kernel's formulas). ``lrs`` is a tensor of each tensor's rate, so that a new rate is new
    data, not a new program; ``weight_decays`` are floats, fixed for a run."""
    beta1, beta2 = betas
    if grads16 is None:
        grads = list(grads32)
    elif grads32 is None:
        grads = [g.float() for g in grads16]
    else:
        grads = [a + b.float() for a, b in zip(grads32, grads16)]
    if max_grad_norm:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        coef = torch.clamp(max_grad_norm / (total + 1e-6), max=1.0)
        grads = [g * coef for g in grads]
    for i, (w, g, m, v, t) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, steps)):
        lr = lrs[i]
        w.mul_(1 - lr * weight_decays[i])
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        w.sub_(lr / (1 - beta1**t) * m / (v.sqrt() / (1 - beta2**t).sqrt() + eps))
        if copies is not None:
            copies[i].copy_(w)


class Bf16AdamW(torch.optim.AdamW):
    """torch's AdamW (``fused=True``) on the fp32 master weights, which also clips the gradients (``max_grad_norm``)
    and, once tied to a ``Bf16Weights`` (``tie``), takes the last backward's bf16 gradients and refreshes the bf16
    copy in the same step: ``gradients_to_master(); clip_grad_norm_(); step(); refresh()`` as one pass.

    On a CPU that pass is ``adamw_from_bf16`` compiled by inductor into one parallel region (the composition opens
    one per op and tensor; bench.py's step: 12 against 22 ms); it compiles on the first step, once per model
    (inductor caches it on disk). Elsewhere, or where it cannot compile, the step is that composition of torch's
    own ops. The state, ``state_dict`` and param groups are AdamW's, so checkpoints load into either."""

    def __init__(self, params, *, max_grad_norm: float | None = None, **kwargs):
        for flag in ("amsgrad", "maximize", "capturable", "differentiable", "foreach"):
            if kwargs.get(flag):
                raise ValueError(f"Bf16AdamW: {flag}=True is not supported (AdamW's default, False, is)")
        if kwargs.pop("fused", None) is False:
            raise ValueError("Bf16AdamW: fused=False is not supported (its step is one fused pass)")
        if max_grad_norm is not None and max_grad_norm < 0:
            raise ValueError(f"Bf16AdamW: max_grad_norm must be positive (or None: no clipping), got {max_grad_norm}")
        super().__init__(params, fused=True, **kwargs)
        self.max_grad_norm = max_grad_norm
        self.weights: Bf16Weights | None = None
        self.compiled = None  # the compiled pass; False once it could not compile

    def tie(self, weights: "Bf16Weights"):
        """Read the bf16 gradients from, and write the updated weights into, ``weights``' copy."""
        masters = {id(p) for group in self.param_groups for p in group["params"]}
        if masters != {id(p) for p in weights.master_params}:
            raise ValueError("Bf16AdamW.tie: the optimiser's parameters are not the master weights of this Bf16Weights")
        self.weights = weights
        return self

    def zero_grad(self, set_to_none: bool = True):
        super().zero_grad(set_to_none)
        if self.weights is not None:
            for p16 in self.weights.params:
                p16.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("Bf16AdamW.step: no closure (the step reads the gradients of the last backward)")
        copy_of = dict(zip(map(id, self.weights.master_params), self.weights.params)) if self.weights else {}
        params, grads32, grads16, copies, exp_avgs, exp_avg_sqs, steps, lrs, decays = ([] for _ in range(9))
        for group in self.param_groups:
            for p in group["params"]:
                p16 = copy_of.get(id(p))
                g16 = p16.grad if p16 is not None else None
                if p.grad is None and g16 is None:
                    continue
                state = self.state[p]
                if not state:  # as AdamW makes it
                    state["step"] = torch.tensor(0.0, dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p), grads32.append(p.grad), grads16.append(g16), copies.append(p16)
                exp_avgs.append(state["exp_avg"]), exp_avg_sqs.append(state["exp_avg_sq"]), steps.append(state["step"])
                lrs.append(group["lr"]), decays.append(group["weight_decay"])
        if not params:
            return None
        group = self.param_groups[0]
        if any(g["betas"] != group["betas"] or g["eps"] != group["eps"] for g in self.param_groups):
            raise ValueError("Bf16AdamW: every param group needs the same betas and eps")
        torch._foreach_add_(steps, 1)
        has32, has16 = [g is not None for g in grads32], [g is not None for g in grads16]
        parts = (params, grads32 if any(has32) else None, grads16 if any(has16) else None)
        if (any(has32) and not all(has32)) or (any(has16) and not all(has16)):
            self.weights.gradients_to_master()  # some tensors have only one part (so some g16): make every g32 whole
            parts = (params, [p.grad for p in params], None)
        copies = copies if all(c is not None for c in copies) else None
        if not self._compiled_step(parts, exp_avgs, exp_avg_sqs, steps, copies, lrs, decays, group):
            self._composed(*parts, exp_avgs, exp_avg_sqs, steps, copies, lrs, decays, group)
        for p16 in copy_of.values():
            p16.grad = None
        return None

    def _compiled_step(self, parts, exp_avgs, exp_avg_sqs, steps, copies, lrs, decays, group) -> bool:
        """The step as ``adamw_from_bf16`` compiled, on a CPU; False where it does not run (another device, or it
        could not compile: then the composition takes every step, and a warning says why)."""
        params = parts[0]
        if params[0].device.type != "cpu" or self.compiled is False:
            return False
        first = self.compiled is None
        if first:
            logger.info("compiling Bf16AdamW's one-pass step for %d tensors (once; inductor caches it)", len(params))
            self.compiled = torch.compile(adamw_from_bf16, fullgraph=True, dynamic=False)
        try:
            self.compiled(
                *parts, exp_avgs, exp_avg_sqs, steps, copies, torch.tensor(lrs, device=params[0].device), decays,
                betas=group["betas"], eps=group["eps"], max_grad_norm=self.max_grad_norm,
            )  # fmt: skip
        except Exception as error:  # a compiler error comes before the pass writes anything
            if not first:
                raise
            logger.warning("Bf16AdamW: the one-pass step did not compile (%s); it takes torch's ops one by one", error)
            self.compiled = False
            return False
        return True

    def _composed(self, params, grads32, grads16, exp_avgs, exp_avg_sqs, steps, copies, lrs, decays, group):
        """torch's own ops, one after the other: the fp32 gradients, clip_grad_norm_'s formula, the fused AdamW
        kernel per weight-decay group, the bf16 copy: Bf16Weights' own two calls around torch's."""
        if grads16 is not None:
            self.weights.gradients_to_master()
        grads = [p.grad for p in params]
        if self.max_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(params, self.max_grad_norm, torch.nn.utils.get_total_norm(grads))
        for lr, decay in sorted(set(zip(lrs, decays))):
            chosen = [i for i in range(len(params)) if (lrs[i], decays[i]) == (lr, decay)]
            torch._fused_adamw_(
                [params[i] for i in chosen], [params[i].grad for i in chosen], [exp_avgs[i] for i in chosen],
                [exp_avg_sqs[i] for i in chosen], [], [steps[i] for i in chosen], amsgrad=False, lr=lr,
                beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=decay, eps=group["eps"], maximize=False,
            )  # fmt: skip
        if copies is not None:
            self.weights.refresh()


__all__ = ["Bf16AdamW", "Bf16Weights", "adamw_from_bf16"]
