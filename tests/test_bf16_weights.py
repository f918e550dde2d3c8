"""bf16 weights with fp32 masters (training/bf16_weights.py) against a hand-written reference: a bf16 copy of the
model computes the gradients, AdamW steps an fp32 copy with them cast up, and the bf16 copy is rounded from it."""

import copy

import pytest
import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration
from scratchformer.training.bf16_weights import Bf16Weights

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
