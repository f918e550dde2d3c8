"""A tiny model must actually learn a seq2seq task to ~100% token accuracy in seconds: reverse a sequence.

(Linear attention is left out on purpose: its positive, diffuse weights cannot focus on one source token
with 8-dimensional heads, a known limit of the method; its maths is checked in test_attention.py.)"""

import pytest
import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration

VOCAB, LENGTH, FIRST = 14, 6, 4  # ids 0-3 are pad/bos/eos/unk


def batch(generator, task, size=32):
    source = torch.randint(FIRST, VOCAB, (size, LENGTH), generator=generator)
    eos = torch.full((size, 1), 2)
    target = source.flip(1) if task == "reverse" else source
    return torch.cat([source, eos], 1), torch.cat([target, eos], 1)


@pytest.mark.parametrize("task,variant", [("reverse", dict())], ids=["reverse-dot-sinusoidal-post"])
def test_seq2seq_task_is_learned(task, variant):
    torch.manual_seed(0)
    config = ScratchformerConfig(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=16,
        dropout=0.0,
        **variant,
    )
    model = ScratchformerForConditionalGeneration(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=600, pct_start=0.1)
    for _ in range(600):
        source, target = batch(generator, task)
        loss = model(input_ids=source, labels=target).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if loss.item() < 0.03:  # learned: stop early to keep the suite fast
            break
    model.eval()
    source, target = batch(torch.Generator().manual_seed(123), task, size=100)
    generated = model.generate(input_ids=source, max_new_tokens=LENGTH + 1, do_sample=False)[:, 1:]
    accuracy = (generated == target).float().mean().item()
    assert accuracy >= 0.98, f"token accuracy {accuracy:.3f} after training (loss {loss.item():.3f})"
