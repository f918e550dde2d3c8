"""AdamW and the learning-rate schedule."""

import math

import torch
from transformers import get_scheduler

from .bf16_weights import Bf16AdamW


def noam(warmup_steps: int):
    """The paper's rate d^-0.5 * min(s^-0.5, s * w^-1.5), rescaled so that it peaks at learning_rate at s = w."""

    def factor(step):
        s = step + 1
        return min(s / warmup_steps, math.sqrt(warmup_steps / s))

    return factor


def make_optimizer(model, args):
    """Fused AdamW with no weight decay on biases, LayerNorms and embeddings (Bf16AdamW under bf16-weights, which also
    clips), and the scheduler `args.lr_scheduler` (`args`: TrainArguments): noam, or any of get_scheduler's names."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed" not in name and "shared" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    hyper = dict(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    if args.mixed_precision == "bf16-weights":  # AdamW on the fp32 masters, clipping and the bf16 copy in one pass
        optimizer = Bf16AdamW(groups, max_grad_norm=args.max_grad_norm or None, **hyper)
    else:  # fused: one kernel for all tensors, on CPUs too (the default there loops over them, op by op)
        optimizer = torch.optim.AdamW(groups, fused=True, **hyper)
    if args.lr_scheduler == "noam":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, noam(max(1, args.warmup_steps)))
    else:
        scheduler = get_scheduler(
            args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=args.max_steps
        )
    return optimizer, scheduler


__all__ = ["make_optimizer", "noam"]
