"""bf16 weights with fp32 masters (training/bf16_weights.py) against a hand-written reference: a bf16 copy of the
model computes the gradients, AdamW steps an fp32 copy with them cast up, and the bf16 copy is rounded from it."""

import copy

import pytest
import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration
from scratchformer.training.bf16_weights import Bf16AdamW, Bf16Weights

CONFIG = dict(
    vocab_size=40,
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    dropout=0.0,
    label_smoothing=0.1,
)


def model():
    torch.manual_seed(0)
    return ScratchformerForConditionalGeneration(ScratchformerConfig(**CONFIG))


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        labels = torch.randint(3, 40, (4, 6), generator=g)
        decoder_input_ids = torch.cat([torch.ones(4, 1, dtype=torch.long), labels[:, :-1]], 1)
        out.append(
            dict(
                input_ids=torch.randint(3, 40, (4, 7), generator=g), decoder_input_ids=decoder_input_ids, labels=labels
            )
        )
    return out


def test_steps_are_adamw_on_the_fp32_weights_with_the_bf16_gradients_summed_in_fp32():
    ours = model()
    compute = Bf16Weights(ours)
    optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-2)

    reference = model()  # the same initial weights, stepped by hand
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    data = batches(6)
    for micro in (data[0:2], data[2:4], data[4:6]):  # 3 steps of 2 accumulated micro-batches
        for batch in micro:
            compute(**batch).loss.backward()
            compute.gradients_to_master()
        optimizer.step()
        compute.refresh()
        optimizer.zero_grad()

        low = copy.deepcopy(reference).to(torch.bfloat16)
        grads = [torch.zeros_like(p) for p in reference.parameters()]
        for batch in micro:
            low.zero_grad()
            low(**batch).loss.backward()
            for g, p in zip(grads, low.parameters()):
                g += p.grad.float()
        for p, g in zip(reference.parameters(), grads):
            p.grad = g
        reference_optimizer.step()
        reference_optimizer.zero_grad()

    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        assert p.dtype == torch.float32 and torch.equal(p, q), name
    for p16, p32 in zip(compute.module.parameters(), ours.parameters()):
        assert p16.dtype == torch.bfloat16 and torch.equal(p16, p32.to(torch.bfloat16))
        assert p16.grad is None  # freed once added to the master's


def test_updates_below_bf16_resolution_are_kept_by_the_master_weights():
    """With lr 1e-6 an AdamW update is about 1e-6, 1e-4 of a typical weight (~0.01): below bf16's 2^-8 relative
    step, so AdamW on bf16 weights leaves all but the weights nearest 0 unchanged, while the fp32 masters move."""
    ours, start = model(), model()
    compute = Bf16Weights(ours)
    optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-6, weight_decay=0.0)
    pure = model().to(torch.bfloat16)
    pure_optimizer = torch.optim.AdamW(pure.parameters(), lr=1e-6, weight_decay=0.0)
    for batch in batches(3):
        compute(**batch).loss.backward()
        compute.gradients_to_master()
        optimizer.step()
        compute.refresh()
        optimizer.zero_grad()
        pure(**batch).loss.backward()
        pure_optimizer.step()
        pure_optimizer.zero_grad()
    weight = "model.encoder.layers.0.ffn.fc1.weight"
    p32, p0 = dict(ours.named_parameters())[weight], dict(start.named_parameters())[weight]
    p16 = dict(pure.named_parameters())[weight]
    assert (p32 != p0).float().mean() > 0.8  # the masters: 84% (rows of ReLU units dead on these batches stay)
    assert (p16 != p0.to(torch.bfloat16)).float().mean() < 0.05  # pure bf16: 1.8% moved when this was written


def test_an_fp32_model_is_required():
    with pytest.raises(ValueError, match="needs an fp32 model .* it has torch.bfloat16"):
        Bf16Weights(model().to(torch.bfloat16))


def groups(model, decay=0.5):
    """Two param groups, as make_optimizer's: weight decay on the matrices, none on the rest."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


@pytest.mark.parametrize("path", ["compiled", "composed"])
def test_bf16_adamw_is_torch_adamw_with_clipping_and_the_copy_refreshed(path):
    """Bf16AdamW's one step (the compiled pass, or its composition of torch's ops) against the four calls it
    replaces, torch's own: gradients_to_master(), clip_grad_norm_, AdamW(fused=True).step() and refresh(); over 3
    steps of 2 accumulated micro-batches, two weight-decay groups, a rate that changes every step and a clip that
    bites (max norm 0.5). Each step starts both from the same weights and state: an fp32 rounding difference would
    otherwise flip a bf16 rounding of the copy and grow through the next forward."""
    ours = model()
    compute = Bf16Weights(ours)
    optimizer = Bf16AdamW(groups(ours), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, max_grad_norm=0.5).tie(compute)
    if path == "composed":
        optimizer.compiled = False
    reference = model()
    reference_compute = Bf16Weights(reference)
    reference_optimizer = torch.optim.AdamW(groups(reference), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, fused=True)
    data, norms = batches(6), []
    for step, micro in enumerate((data[0:2], data[2:4], data[4:6])):
        reference.load_state_dict(ours.state_dict())
        reference_compute.refresh()
        reference_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # AdamW's format: it loads
        for o in (optimizer, reference_optimizer):
            for group in o.param_groups:
                group["lr"] = 1e-2 / (step + 1)
        compute(**micro[0]).loss.backward()
        compute.gradients_to_master()  # an accumulating micro-batch, as the trainer's
        compute(**micro[1]).loss.backward()  # the last one's bf16 gradients: read by the step
        optimizer.step()
        optimizer.zero_grad()

        for batch in micro:
            reference_compute(**batch).loss.backward()
            reference_compute.gradients_to_master()
        norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)))
        reference_optimizer.step()
        reference_compute.refresh()
        reference_optimizer.zero_grad()

        for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
            torch.testing.assert_close(
                p, q, rtol=1e-5, atol=1e-6, msg=lambda m, name=name, step=step: f"{name} step {step}: {m}"
            )
        for p16, p32 in zip(compute.params, compute.master_params):  # the copy: bf16 of the masters, exactly
            assert torch.equal(p16, p32.to(torch.bfloat16)) and p16.grad is None
        state, reference_state = optimizer.state_dict()["state"], reference_optimizer.state_dict()["state"]
        assert state.keys() == reference_state.keys()
        for key in state:
            assert float(state[key]["step"]) == float(reference_state[key]["step"]) == step + 1
            torch.testing.assert_close(state[key]["exp_avg"], reference_state[key]["exp_avg"], rtol=1e-5, atol=1e-7)
    assert min(norms) > 0.5  # the clip changed every step


def test_bf16_adamw_state_loads_into_torch_adamw_and_back():
    """The state_dict is AdamW's: a checkpoint of either optimiser loads into the other and steps on equally."""
    ours, theirs = model(), model()
    compute = Bf16Weights(ours)
    optimizer = Bf16AdamW(groups(ours), lr=1e-3).tie(compute)
    compute(**batches(1)[0]).loss.backward()
    optimizer.step()
    adamw = torch.optim.AdamW(groups(theirs), lr=1e-3, fused=True)
    adamw.load_state_dict(optimizer.state_dict())
    back = Bf16AdamW(groups(theirs), lr=1e-3)
    back.load_state_dict(adamw.state_dict())
    assert back.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def test_bf16_adamw_refuses_what_its_pass_does_not_do():
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        Bf16AdamW(model().parameters(), amsgrad=True)
    with pytest.raises(ValueError, match="fused=False is not supported"):
        Bf16AdamW(model().parameters(), fused=False)
    with pytest.raises(ValueError, match="max_grad_norm must be positive .* got -1.0"):
        Bf16AdamW(model().parameters(), max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="not the master weights of this Bf16Weights"):
        Bf16AdamW(model().parameters()).tie(Bf16Weights(model()))


def test_bf16_adamw_takes_torch_ops_when_its_pass_cannot_compile(monkeypatch, caplog):
    """A compiler error on the first step (no C++ compiler, say) is a warning, and that step and the next are the
    composition: the weights equal those of an optimiser told to compose from the start."""

    def no_compiler(fn, **kwargs):
        def failing(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return failing

    results = []
    for broken in (True, False):
        ours = model()
        compute = Bf16Weights(ours)
        optimizer = Bf16AdamW(groups(ours), lr=1e-2, max_grad_norm=0.5).tie(compute)
        if broken:
            monkeypatch.setattr(torch, "compile", no_compiler)
        else:
            optimizer.compiled = False
        for batch in batches(2):
            compute(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        monkeypatch.undo()
        results.append([p.detach().clone() for p in ours.parameters()])
        if broken:
            assert optimizer.compiled is False  # given up after the first try: the next steps do not retry
    assert "did not compile (no C++ compiler)" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(*results))
