"""The fused head + cross-entropy (modeling/loss_scratchformer.py, config.lm_loss="fused") against the loss written
out by hand on stored logits (tests/model_tester.py), its gradients against autograd through that formula, and
the seq2seq head with each setting of lm_loss against the other."""

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester, cross_entropy_by_hand

from scratchformer.modeling.loss_scratchformer import linear_cross_entropy


def problem(rows=10, width=8, vocab=13, dtype=torch.float32, seed=0):
    """Hidden states, a head and targets with some rows ignored (-100)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, rows // 2, width, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(vocab, width, generator=g).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (2, rows // 2), generator=g)
    labels[0, -2:] = -100
    labels[1, 0] = -100
    return hidden, weight, labels


def by_hand(hidden, weight, labels, label_smoothing):
    """The loss on stored fp32 logits, and its gradients by autograd."""
    loss = cross_entropy_by_hand(F.linear(hidden, weight), labels, label_smoothing)
    return (loss, *torch.autograd.grad(loss, (hidden, weight)))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("block_rows", [1, 3, 10, 1024])  # one row a block, blocks that do not divide N, one block
def test_loss_and_gradients_equal_the_formula_on_stored_logits(label_smoothing, block_rows):
    hidden, weight, labels = problem()
    expected = by_hand(hidden, weight, labels, label_smoothing)
    loss = linear_cross_entropy(hidden, weight, labels, label_smoothing, block_rows=block_rows)
    actual = (loss, *torch.autograd.grad(loss * 3.0, (hidden, weight)))  # the chain rule through grad_loss too
    torch.testing.assert_close(actual[0], expected[0])
    torch.testing.assert_close(actual[1], 3.0 * expected[1])
    torch.testing.assert_close(actual[2], 3.0 * expected[2])
    assert actual[1][0, -2:].abs().max() == 0  # the ignored rows get no gradient


def test_it_follows_autocast_like_the_unfused_head():
    """Under bf16 autocast the logits' matmuls run in bf16 as autocast's F.linear does, the softmax in fp32, and the
    gradients come back in the inputs' dtype (fp32)."""
    hidden, weight, labels = problem(rows=64, width=32, vocab=50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = F.cross_entropy(F.linear(hidden, weight).float().view(-1, 50), labels.view(-1), label_smoothing=0.1)
        fused = linear_cross_entropy(hidden, weight, labels, 0.1, block_rows=16)
    expected = torch.autograd.grad(reference, (hidden, weight))
    actual = torch.autograd.grad(fused, (hidden, weight))
    torch.testing.assert_close(fused, reference, atol=1e-3, rtol=1e-3)
    for a, e in zip(actual, expected):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e, atol=2e-3, rtol=2e-2)
    exact = by_hand(hidden, weight, labels, 0.1)  # and both are bf16 approximations of the fp32 loss
    torch.testing.assert_close(fused, exact[0], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_bf16_weights_get_gradients_as_close_as_the_unfused_heads(label_smoothing):
    """In bf16 (the bf16-weights mode) dloss/dW is summed over the blocks in bf16 by the matmul, and dloss/dW / count
    is one rounding at the end: its error against the fp64 gradient stays within twice that of the unfused head's
    single bf16 matmul over all the rows, and the loss and dloss/dh within bf16 rounding too."""
    hidden, weight, labels = problem(rows=256, width=64, vocab=200, dtype=torch.bfloat16, seed=1)
    unfused_loss = F.cross_entropy(
        F.linear(hidden, weight).float().view(-1, 200), labels.view(-1), label_smoothing=label_smoothing
    )
    exact = [
        t.double()
        for t in by_hand(*(x.detach().double().requires_grad_() for x in (hidden, weight)), labels, label_smoothing)
    ]
    unfused = torch.autograd.grad(unfused_loss, (hidden, weight))
    fused_loss = linear_cross_entropy(hidden, weight, labels, label_smoothing, block_rows=32)  # 8 blocks
    fused = torch.autograd.grad(fused_loss, (hidden, weight))
    assert all(g.dtype == torch.bfloat16 for g in fused)
    torch.testing.assert_close(fused_loss.double(), exact[0], atol=1e-3, rtol=1e-3)
    for got, reference, truth in zip(fused, unfused, exact[1:]):
        error, reference_error = ((g.double() - truth).abs().mean() for g in (got, reference))
        assert error <= 2 * reference_error, (error, reference_error)


def test_bad_block_size_and_mismatched_labels_are_refused():
    hidden, weight, labels = problem()
    with pytest.raises(ValueError, match="block_rows must be an integer >= 1, got 0"):
        linear_cross_entropy(hidden, weight, labels, block_rows=0)
    with pytest.raises(ValueError, match=r"labels \(2, 4\) do not match hidden states \(2, 5, 8\)"):
        linear_cross_entropy(hidden, weight, labels[:, :4])


def test_the_fused_head_trains_like_the_head_on_logits():
    """Same loss, same gradients for every parameter (the tied embedding included); no logits in training mode;
    the logits as usual in eval mode and without labels."""
    tester = ModelTester()
    models = {name: tester.build(lm_loss=name, label_smoothing=0.1).train() for name in ("logits", "fused")}
    inputs = tester.prepare_inputs(models["logits"].config)
    batch = dict(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=tester.prepare_lm_labels()
    )
    batch["labels"][-1, -2:] = -100
    outputs = {name: model(**batch) for name, model in models.items()}
    assert outputs["fused"].logits is None
    assert outputs["logits"].logits.shape == (*batch["labels"].shape, tester.vocab_size)
    torch.testing.assert_close(outputs["fused"].loss, outputs["logits"].loss)
    for out in outputs.values():
        out.loss.backward()
    fused = dict(models["fused"].named_parameters())
    for name, p in models["logits"].named_parameters():
        torch.testing.assert_close(fused[name].grad, p.grad, msg=name)
    evaluated = {name: model.eval()(**batch) for name, model in models.items()}
    torch.testing.assert_close(evaluated["fused"].logits, evaluated["logits"].logits)
    torch.testing.assert_close(evaluated["fused"].loss, outputs["logits"].loss)
    generated = (
        models["fused"].train().generate(batch["input_ids"], max_new_tokens=4, min_new_tokens=4, do_sample=False)
    )
    assert generated.shape == (tester.batch_size, 5)  # without labels, logits are computed even in training mode


def test_a_given_token_count_divides_the_summed_loss():
    """num_items_in_batch (transformers' Trainer, under gradient accumulation): sum over kept rows / that count."""
    hidden, weight, labels = problem()
    kept = int((labels != -100).sum())
    expected = by_hand(hidden, weight, labels, 0.1)
    loss = linear_cross_entropy(hidden, weight, labels, 0.1, num_items_in_batch=torch.tensor(20), block_rows=3)
    actual = (loss, *torch.autograd.grad(loss, (hidden, weight)))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e * kept / 20)
