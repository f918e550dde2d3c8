"""The linear layers (modeling/linear_scratchformer.py): oneDNN's fused bias (+ ReLU) matmul on a CPU in bf16,
against F.linear and torch's ReLU with autograd, and where the layers fall back to them."""

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester
from torch.utils.flop_counter import FlopCounterMode

from scratchformer.modeling.linear_scratchformer import Linear, OneDNNLinear, fuses, linear, onednn_bf16

needs_onednn_bf16 = pytest.mark.skipif(not onednn_bf16(), reason="this CPU or torch build has no oneDNN bf16")


def layer_inputs(dtype, rows=(3, 40), width=48, out=72, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*rows, width, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(out, width, generator=g) / width**0.5).to(dtype).requires_grad_()
    bias = torch.randn(out, generator=g).to(dtype).requires_grad_()
    return x, weight, bias


@needs_onednn_bf16
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_bf16_linear_equals_f_linear_and_its_gradients(relu, bias):
    """Forward: F.linear's bf16 result (+ torch.relu), bit for bit: both sum in fp32 and round once. Backward: the
    gradients of x, W and b as autograd gives them through F.linear (+ relu), within bf16 rounding of the sums."""
    x, weight, b = layer_inputs(torch.bfloat16)
    b = b if bias else None
    assert fuses(x, weight)
    got = linear(x, weight, b, relu=relu)
    expected = F.linear(x, weight, b)
    expected = torch.relu(expected) if relu else expected
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
    inputs = [t for t in (x, weight, b) if t is not None]
    upstream = torch.randn(got.shape).bfloat16()
    got_grads = torch.autograd.grad(got, inputs, upstream, retain_graph=True)
    for a, e in zip(got_grads, torch.autograd.grad(expected, inputs, upstream)):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a, e, atol=2e-2, rtol=2e-2)
    if relu:  # where the output is 0 the gradient is, as torch's relu has it
        assert not torch.autograd.grad(got, x, (got == 0).bfloat16())[0].any()


@needs_onednn_bf16
def test_fused_linear_gradients_by_finite_differences():
    """The backward's formulas in fp32 (the oneDNN kernel runs fp32 too) against torch.autograd.gradcheck."""
    x, weight, bias = (t.detach().double().requires_grad_() for t in layer_inputs(torch.float32, rows=(2, 3), width=4))
    for relu in (False, True):

        def fused(x, weight, bias, relu=relu):
            return OneDNNLinear.apply(x.float(), weight.float(), bias.float(), relu).double()

        assert torch.autograd.gradcheck(fused, (x, weight, bias), eps=1e-3, atol=1e-3, rtol=1e-2)


def test_a_torch_without_onednn_bf16_keeps_f_linear(monkeypatch):
    """Where the build or the CPU has no oneDNN bf16 matmul (onednn_bf16() False), bf16 layers run F.linear."""
    from scratchformer.modeling import linear_scratchformer

    monkeypatch.setattr(linear_scratchformer, "onednn_bf16", lambda: False)
    x, weight, bias = (t.detach() for t in layer_inputs(torch.bfloat16))
    assert not fuses(x, weight)
    monkeypatch.setattr(OneDNNLinear, "apply", None)  # would raise if called
    assert torch.equal(linear(x, weight, bias, relu=True), torch.relu(F.linear(x, weight, bias)))


def test_other_dtypes_devices_and_compiled_code_keep_f_linear():
    x, weight, _ = layer_inputs(torch.float32)
    assert not fuses(x, weight)  # fp32: the two kernels cost the same
    assert not fuses(x.bfloat16(), weight)  # mixed dtypes
    assert not fuses(x.half(), weight.half())  # fp16: not measured
    assert not fuses(torch.empty(2, 48, dtype=torch.bfloat16, device="meta"), weight.bfloat16().to("meta"))


@needs_onednn_bf16
def test_the_ffn_fuses_its_relu_only_when_nothing_is_left_out(monkeypatch):
    """A bf16 FFN with ReLU runs fc1 and the ReLU as one OneDNNLinear; with a forward hook on fc1 (which must see
    fc1's own output) or fc1 wrapped (an adapter), fc1 is called as a module and the ReLU applied after it. The
    three give the same output."""
    model = ModelTester().build(activation_function="relu").bfloat16()
    ffn = model.model.encoder.layers[0].ffn
    assert isinstance(ffn.fc1, Linear) and isinstance(ffn.fc2, Linear)
    x = torch.randn(2, 5, model.config.d_model).bfloat16()
    fused_relu = []
    original = OneDNNLinear.apply

    def spy(*args):
        fused_relu.append(args[-1])
        return original(*args)

    monkeypatch.setattr(OneDNNLinear, "apply", spy)
    plain = ffn(x)
    assert fused_relu == [True, False]  # fc1 + ReLU, then fc2
    seen = []
    handle = ffn.fc1.register_forward_hook(lambda module, args, out: seen.append(out.min().item()))
    hooked = ffn(x)
    handle.remove()
    assert fused_relu[2:] == [False, False] and seen and seen[0] < 0  # the hook saw fc1's output before ReLU

    class Adapter(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base

        def forward(self, x):
            return self.base(x)

    monkeypatch.setattr(ffn, "fc1", Adapter(ffn.fc1))
    wrapped = ffn(x)
    assert fused_relu[4:] == [False, False]
    assert torch.equal(plain, hooked) and torch.equal(plain, wrapped)


@needs_onednn_bf16
def test_flop_counter_counts_the_fused_kernel_as_a_matmul():
    """torch.utils.flop_counter knows the oneDNN op through the formula registered with it: 2 x tokens x in x out,
    what it counts for F.linear's addmm."""
    x, weight, bias = layer_inputs(torch.bfloat16)
    counts = []
    for fn in (lambda: linear(x, weight, bias), lambda: F.linear(x, weight, bias)):
        with FlopCounterMode(display=False) as counter:
            fn()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * 3 * 40 * 48 * 72
