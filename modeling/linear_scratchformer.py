"""The linear layers, y = x W^T + b, and the FFN's relu(x W^T + b), with the bias and the ReLU inside the matmul
on a CPU in bf16.

torch's CPU ``F.linear`` is addmm: it first copies the bias into every row of the output, then has the matmul add
onto it, and a ReLU after it is one more pass over the (tokens, ffn) activation. oneDNN's matmul adds the bias and
applies the ReLU as it writes its output (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor's CPU fusion
passes call). On the project's AMX CPU in bf16, a (2048, 256) x (256, 1024) layer takes about 560 us that way
against 760 us through addmm, and 580 us against 1,190 us with the ReLU (README, Performance). In fp32 the two
cost the same, so fp32, other devices and compiled graphs keep ``F.linear``.

The backward is the linear layer's own, with g = dL/dy, and after a ReLU g [y > 0] (its derivative read from the
output, as torch's ReLU does):

    dL/dx = g W        dL/dW = g^T x        dL/db = sum of g over the rows
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula

LINEAR_POINTWISE = getattr(torch.ops.mkldnn, "_linear_pointwise", None)  # absent from builds without oneDNN


@functools.cache
def onednn_bf16() -> bool:
    """Whether this torch build and CPU run oneDNN's fused matmul in bf16."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return LINEAR_POINTWISE is not None and torch.backends.mkldnn.is_available() and bool(supported and supported())


def fuses(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` takes oneDNN's fused kernel: x and W in bf16 on a CPU that has it, outside compiled code
    (fp16 was not measured, so it keeps F.linear)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and not torch.compiler.is_compiling()
        and onednn_bf16()
    )


class OneDNNLinear(torch.autograd.Function):
    """act(x W^T + b) in one oneDNN matmul, act = identity or ReLU; the backward in the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, relu: bool):
        x = x.contiguous()
        y = LINEAR_POINTWISE(x, weight, bias, "relu" if relu else "none", [], "")
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        if y is not None:
            grad = torch.ops.aten.threshold_backward(grad, y, 0)  # g [y > 0]
        g = grad.reshape(-1, grad.shape[-1])  # (tokens, out)
        grad_x = torch.mm(g, weight).view(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = torch.mm(g.T, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False):
    """x W^T + b, or relu of it: through oneDNN's fused kernel where ``fuses`` says so, else F.linear (+ relu)."""
    if fuses(x, weight):
        return OneDNNLinear.apply(x, weight, bias, relu)
    y = F.linear(x, weight, bias)
    return torch.relu(y) if relu else y


class Linear(nn.Linear):
    """nn.Linear (the same parameters, state dict and initialisation) that runs through ``linear``."""

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def forward_relu(self, x):
        """relu(x W^T + b) in one kernel where ``linear`` fuses: for a caller that checked ``runs_plain``."""
        return linear(x, self.weight, self.bias, relu=True)

    def runs_plain(self) -> bool:
        """Whether calling forward_relu instead of the module leaves nothing out: no hooks on it."""
        return not (self._forward_hooks or self._forward_pre_hooks)


def linear_pointwise_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """2 x tokens x in x out, as addmm's count (torch.utils.flop_counter does not know the oneDNN op)."""
    return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


# a Hub remote-code copy of this file runs this again
if LINEAR_POINTWISE is not None and LINEAR_POINTWISE not in flop_registry:
    register_flop_formula(LINEAR_POINTWISE)(linear_pointwise_flop)


__all__ = ["Linear", "linear"]
