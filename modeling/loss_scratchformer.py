"""The language-model loss, fused with the head that makes the logits (``config.lm_loss="fused"``).

For hidden states h (N, d), the head W (V, d) and targets t, label-smoothed cross-entropy (smoothing eps) is

    z = h W^T                                            the logits, (N, V)
    loss_i = logsumexp(z_i) - (1 - eps) z_{i,t_i} - (eps / V) sum_j z_{ij}
    loss = sum over kept rows (t_i != -100) of loss_i / (number of kept rows)

and its gradient is known in closed form, with p = softmax(z):

    dloss/dz_ij = (p_ij - (1 - eps) [j = t_i] - eps / V) / (number of kept rows), 0 on ignored rows
    dloss/dh = (dloss/dz) W        dloss/dW = (dloss/dz)^T h

``linear_cross_entropy`` computes the loss and both gradients in the forward pass, a block of rows at a time, so
the (N, V) logits are never stored, neither in fp32 nor in the compute dtype, and nothing of them is kept for the
backward pass (as Liger-Kernel's fused linear cross-entropy). For a small model most of a training step's memory
traffic is the vocabulary-wide logits: their fp32 copy, the log-softmax, its gradient and the cast back.
The result equals ``F.cross_entropy(F.linear(h, W).float(), t, ignore_index=-100, label_smoothing=eps)``.
"""

import torch


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on ``tensor`` runs in: autocast's, if autocast is on for its device, else its own."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


class LinearCrossEntropy(torch.autograd.Function):
    """loss(h W^T, t) with the gradients of h and W computed in the forward pass, ``block_rows`` rows at a time."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, label_smoothing: float, num_items, block_rows: int):
        dtype = compute_dtype(hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.reshape(-1, hidden.shape[-1]).to(dtype)  # (N, d)
            w = weight.to(dtype)  # (V, d)
            targets = labels.reshape(-1).to(hidden.device)  # (N,)
            if targets.shape[0] != h.shape[0]:
                raise ValueError(f"labels {tuple(labels.shape)} do not match hidden states {tuple(hidden.shape)}")
            kept = targets != -100
            # the divisor: the kept rows (a tensor, no host sync; none kept gives nan, as F.cross_entropy), or the
            # labelled tokens of the whole optimiser step that transformers' Trainer passes under accumulation
            count = kept.sum() if num_items is None else torch.as_tensor(num_items, device=h.device)
            eps, vocab = label_smoothing, w.shape[0]
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            grad_h = torch.empty_like(h) if hidden.requires_grad else None
            # count * dloss/dW, in the compute dtype, each block's product added by the matmul itself (addmm, beta 1):
            # in 16 bits it sums the block in fp32 and rounds once into the sum, which is as close to the fp64
            # gradient as the unfused head's one 16-bit matmul (tests/test_lm_loss.py) and, unlike a 16-bit block
            # added to an fp32 sum, costs no conversion pass; the division by count joins the backward's scaling
            grad_w = torch.zeros_like(w) if weight.requires_grad else None
            # Workspaces reused by every block, as a fresh (rows, V) tensor per block costs more in page faults than
            # the arithmetic does on a CPU: the logits z in the compute dtype, which then take the gradient, and in
            # 16 bits an fp32 one for log p = log_softmax(z), as the unfused loss computes it (in fp32 z's own).
            in_fp32 = dtype == torch.float32
            n_max = min(block_rows, h.shape[0])
            logits = torch.empty(n_max, vocab, dtype=dtype, device=h.device)
            log_p = logits if in_fp32 else torch.empty(n_max, vocab, device=h.device)
            for start in range(0, h.shape[0], block_rows):
                rows = slice(start, start + block_rows)
                h_rows = h[rows]  # (n, d)
                n = h_rows.shape[0]
                z = torch.mm(h_rows, w.T, out=logits[:n])  # (n, V), compute dtype
                lp = z if in_fp32 else log_p[:n].copy_(z)  # (n, V), fp32
                # in place: torch.log_softmax(out=) and its dtype= write a temporary and copy it, two more passes
                lp = torch._log_softmax(lp, 1, False, out=lp)
                t, keep = targets[rows].clamp(min=0).unsqueeze(1), kept[rows]  # (n, 1), (n,)
                # loss_i = -(1 - eps) log p_{i,t_i} - (eps / V) sum_j log p_ij  (= the formula above, log p = z - lse)
                loss = -(1 - eps) * lp.gather(1, t).squeeze(1)
                if eps:
                    loss = loss - (eps / vocab) * lp.sum(1)
                total += loss.masked_fill(~keep, 0).sum()
                # dloss/dz before the division by the kept rows: p - (1 - eps) [j = t_i] - eps / V, in the compute dtype
                p = lp.exp_()
                p.scatter_add_(1, t, torch.full_like(t, -(1 - eps), dtype=p.dtype))
                if eps:
                    p.sub_(eps / vocab)
                grad_z = p if in_fp32 else z.copy_(p)  # (n, V), compute dtype
                if grad_h is not None:  # dloss/dh = (dloss/dz) W, rows scaled by 1 / count (0 on ignored rows)
                    torch.mm(grad_z, w, out=grad_h[rows]).mul_((keep / count).unsqueeze(1))
                if grad_w is not None:  # count * dloss/dW += (dloss/dz)^T h, ignored rows left out
                    kept_h = h_rows * keep.unsqueeze(1).to(dtype)
                    torch.addmm(grad_w, grad_z.T, kept_h, out=grad_w)  # out= form: FlopCounterMode counts it
        ctx.save_for_backward(
            grad_h.view_as(hidden).to(hidden.dtype) if grad_h is not None else None,
            grad_w.to(weight.dtype) if grad_w is not None else None,
            count,
        )
        return total / count

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w, count = ctx.saved_tensors
        return (
            grad_h * grad_loss if grad_h is not None else None,
            # one rounding in 16 bits: the fp32 scalar multiplies inside the kernel
            grad_w * (grad_loss / count) if grad_w is not None else None,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden_states, weight, labels, label_smoothing: float = 0.0, num_items_in_batch=None, block_rows: int = 512
):
    """Mean label-smoothed cross-entropy of ``hidden_states @ weight.T`` against ``labels`` (-100: ignored),
    without storing the logits; the formulas are in the module docstring. Given ``num_items_in_batch``, the sum
    over the kept rows divided by it instead (as ``token_cross_entropy`` in modeling_scratchformer.py)."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be an integer >= 1, got {block_rows}")
    return LinearCrossEntropy.apply(hidden_states, weight, labels, label_smoothing, num_items_in_batch, block_rows)


__all__ = ["linear_cross_entropy"]
