"""Each attention variant against a naive per-query loop of its formula, written from the notes/papers.

The loops use only the module's weights (W^q, W^k, W^v, W^O and the score's parameters), never its code.
"""

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester

from scratchformer.modeling.attention_scratchformer import LinearAttentionState, ScratchformerWindowAttention
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD
from scratchformer.modeling.masks_scratchformer import BandMask, keep_mask
from scratchformer.modeling.positions_scratchformer import sinusoid_table

tester = ModelTester()
D, H = tester.d_model, tester.num_heads


def project(module, x, source):
    """q = W^q x, k = W^k s, v = W^v s, each read off the stacked rows of the fused weights:
    qkv_proj = [W^q; W^k; W^v] (self-attention), q_proj = W^q and kv_proj = [W^k; W^v] (cross-attention)."""
    if module.is_cross_attention:
        weight = torch.cat([module.q_proj.weight, module.kv_proj.weight])
        bias = torch.cat([module.q_proj.bias, module.kv_proj.bias])
    else:
        weight, bias = module.qkv_proj.weight, module.qkv_proj.bias
    (wq, wk, wv), (bq, bk, bv), d = weight.split(D), bias.split(D), D // H
    return (
        (inputs @ w.T + b).view(*inputs.shape[:2], H, d)
        for inputs, w, b in ((x, wq, bq), (source, wk, bk), (source, wv, bv))
    )  # (b, n, h, d) each


def naive_attention(module, x, source, visible, score, normalize):
    """O = W^O concat_h( sum_j A'[j, i] v_j ), with A[j, i] = score(q_i, k_j) over the keys j visible to query i."""
    d = D // H
    q, k, v = project(module, x, source)
    out = torch.zeros(x.shape[0], x.shape[1], H, d)
    for b in range(x.shape[0]):
        for h in range(H):
            for i in range(x.shape[1]):
                keys = [j for j in range(source.shape[1]) if visible(b, i, j)]
                if not keys:
                    continue  # a padding query that sees no key: output 0
                scores = torch.stack([score(h, q[b, i, h], k[b, j, h]) for j in keys])
                weights = normalize(scores)
                for weight, j in zip(weights, keys):
                    out[b, i, h] += weight * v[b, j, h]
    return module.out_proj(out.reshape(x.shape[0], x.shape[1], D))


def score_function(module, name):
    if name == "dot":
        return lambda h, q, k: (q @ k) / math.sqrt(D // H)  # q . k / sqrt(d)
    W, U, v = module.score.w_query, module.score.w_key, module.score.v
    return lambda h, q, k: v[h] @ torch.tanh(W[h] @ q + U[h] @ k)  # v^T tanh(W q + U k)


NORMALIZE = {
    "softmax": lambda s: torch.exp(s - s.max()) / torch.exp(s - s.max()).sum(),
    "relu": lambda s: torch.clamp(s, min=0) / len(s),  # relu(A) / n
    "sigmoid": lambda s: 1 / (1 + torch.exp(-(s - math.log(len(s))))),  # sigmoid(A - log n)
}


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("normalizer", ["softmax", "relu", "sigmoid"])
@pytest.mark.parametrize(
    "pattern,window,causal", [("full", None, False), ("full", None, True), ("window", 1, False), ("window", 2, True)]
)
def test_self_attention_matches_the_formula_loop(score, normalizer, pattern, window, causal):
    module = tester.build_attention(
        pattern,
        causal=causal,
        std=0.3,
        attention_score=score,
        attention_normalizer=normalizer,
        attention_window=window,
        init_std=0.3,
    )
    x = torch.randn(2, 6, D)
    padding = torch.ones(2, 6, dtype=torch.long)
    padding[1, 4:] = 0
    positions = torch.arange(6)
    keep = keep_mask(positions, positions, causal=causal, window=window, key_padding=padding)

    def visible(b, i, j):
        return bool(padding[b, j]) and (not causal or j <= i) and (window is None or abs(i - j) <= window)

    with torch.no_grad():
        got, weights = module(x, attention_mask=keep)
        expected = naive_attention(module, x, x, visible, score_function(module, score), NORMALIZE[normalizer])
    real = padding.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)
    if normalizer == "softmax":
        sums = weights.sum(-1).transpose(1, 2)  # (b, i, h)
        torch.testing.assert_close(sums[real], torch.ones_like(sums[real]))  # a padding query may see nothing


@pytest.mark.parametrize(
    "score,normalizer,implementation",
    [
        ("dot", "softmax", "eager"),
        ("dot", "softmax", "sdpa"),
        ("additive", "relu", "eager"),
        ("dot", "sigmoid", "eager"),
    ],
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [12, 13])  # n > 3w: the blocked path; w divides 12, 13 leaves a ragged last block
def test_blocked_window_attention_equals_the_dense_mask_and_the_loop(
    score, normalizer, implementation, causal, n, monkeypatch
):
    """The O(n w) blocked kernel == the dense n x n band mask == the per-query loop, outputs and gradients."""
    w = 2
    module = tester.build_attention(
        "window",
        causal=causal,
        implementation=implementation,
        std=0.3,
        attention_score=score,
        attention_normalizer=normalizer,
        attention_window=w,
    )
    spans = []  # the blocked path cuts the keys and the values into spans: count its calls
    key_spans = ScratchformerWindowAttention.key_spans
    monkeypatch.setattr(
        ScratchformerWindowAttention,
        "key_spans",
        staticmethod(lambda *args: spans.append(args[1:]) or key_spans(*args)),
    )
    x = torch.randn(2, n, D, requires_grad=True)
    padding = torch.ones(2, n, dtype=torch.long)
    padding[1, 9:] = 0
    positions = torch.arange(n)
    blocked, no_weights = module(x, attention_mask=BandMask(positions, positions, w, causal, padding))
    span, blocks = (2 if causal else 3) * w, math.ceil(n / w)
    assert spans == [(w, span, blocks, n)] * 2 and no_weights is None  # the blocked path ran: keys, values
    dense, _ = module(x, attention_mask=keep_mask(positions, positions, causal=causal, window=w, key_padding=padding))
    assert len(spans) == 2  # the dense path did not cut spans
    real = padding.bool()
    torch.testing.assert_close(blocked[real], dense[real], atol=1e-5, rtol=1e-4)
    (grad_blocked,) = torch.autograd.grad(blocked[real].sum(), x)
    (grad_dense,) = torch.autograd.grad(dense[real].sum(), x)
    torch.testing.assert_close(grad_blocked, grad_dense, atol=1e-5, rtol=1e-4)

    def visible(b, i, j):
        return bool(padding[b, j]) and (not causal or j <= i) and abs(i - j) <= w

    with torch.no_grad():
        expected = naive_attention(module, x, x, visible, score_function(module, score), NORMALIZE[normalizer])
    torch.testing.assert_close(blocked[real].detach(), expected[real], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["no mask", "causal", "padding", "decoding step"])
def test_sdpa_kernel_equals_transformers_sdpa(case):
    """The model's own sdpa call == transformers' registered "sdpa" kernel, for every mask form it is given."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from scratchformer.modeling.attention_scratchformer import sdpa_attention

    module = tester.build_attention(causal=case in ("causal", "decoding step"))
    query = torch.randn(2, H, 1 if case == "decoding step" else 6, D // H)
    key, value = torch.randn(2, H, 6, D // H), torch.randn(2, H, 6, D // H)
    mask = None
    if case == "padding":
        mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    expected, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, mask, scaling=module.scaling)
    got, weights = sdpa_attention(module, query, key, value, mask, scaling=module.scaling)
    assert weights is None
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["no mask", "padding", "a query that may see no key"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_query_attention_equals_transformers_sdpa(case, dtype):
    """A decoding step's attention as weighted sums (what a compiled CPU step runs) == transformers' "sdpa" kernel;
    a query whose keys are all masked gets 0, as from the model's softmax normaliser."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from scratchformer.modeling.attention_scratchformer import single_query_attention

    module = tester.build_attention(causal=True)
    query = torch.randn(2, H, 1, D // H, dtype=dtype)
    key, value = torch.randn(2, H, 7, D // H, dtype=dtype), torch.randn(2, H, 7, D // H, dtype=dtype)
    mask = {
        "no mask": None,
        "padding": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 0, 0]]),
        "a query that may see no key": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]]),
    }[case]
    mask = None if mask is None else mask.bool()[:, None, None, :]
    got, weights = single_query_attention(module, query, key, value, mask, scaling=module.scaling)
    fp32 = [x.float() for x in (query, key, value)]
    expected, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, *fp32, mask, scaling=module.scaling)
    if case == "a query that may see no key":
        assert torch.equal(got[1], torch.zeros_like(got[1]))
        got, expected = got[:1], expected[:1]
    assert weights is None and got.dtype == dtype
    tolerance = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(got.float(), expected, **tolerance)


def test_compiled_cpu_decoding_step_takes_single_query_attention(monkeypatch):
    """Compiled on a CPU, sdpa_attention's one-query steps run single_query_attention (inductor fuses its sums);
    eager ones and steps of several queries keep torch's fused kernel. The compiled output equals the eager one."""
    import scratchformer.modeling.attention_scratchformer as attention

    calls = []
    original = attention.single_query_attention
    monkeypatch.setattr(attention, "single_query_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    module = tester.build_attention(causal=True)
    query, key, value = torch.randn(2, H, 1, D // H), torch.randn(2, H, 5, D // H), torch.randn(2, H, 5, D // H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    eager, _ = attention.sdpa_attention(module, query, key, value, mask, scaling=module.scaling)
    assert calls == []
    torch.compiler.reset()
    step = torch.compile(attention.sdpa_attention, fullgraph=True, backend="eager")
    compiled, _ = step(module, query, key, value, mask, scaling=module.scaling)
    assert calls == [1]  # traced once, through single_query_attention
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-5)
    step(module, torch.randn(2, H, 5, D // H), key, value, None, scaling=module.scaling)
    assert calls == [1]  # five queries: the fused kernel


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("keys", ["few", "explicit", "many"])
def test_16_bit_sdpa_on_a_cpu(keys, autocast):
    """bf16 inputs on a CPU, under autocast too (which would cast the inputs back down). Over more than
    EXPLICIT_16_BIT_KEYS the fused kernel runs on their fp32 values (its CPU bf16 kernel is ~2x slower): the
    output is the fp32 result rounded to bf16, exactly. Over a number in it, the explicit form in bf16 matmuls with
    an fp32 softmax: the eager kernel's output exactly (that kernel is checked against loops above), within bf16 rounding
    of the fp32 result, and the gradients too."""
    from scratchformer.modeling.attention_scratchformer import EXPLICIT_16_BIT_KEYS, eager_attention, sdpa_attention

    n = {
        "few": EXPLICIT_16_BIT_KEYS.start - 1,
        "explicit": EXPLICIT_16_BIT_KEYS.start,
        "many": EXPLICIT_16_BIT_KEYS.stop,
    }[keys]
    module = tester.build_attention(causal=True)
    query, key, value = (torch.randn(2, H, n, D // H).bfloat16().requires_grad_() for _ in range(3))
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        got, _ = sdpa_attention(module, query, key, value, None, scaling=module.scaling)
    fp32 = [x.detach().float().requires_grad_() for x in (query, key, value)]
    expected = F.scaled_dot_product_attention(*fp32, is_causal=True, scale=module.scaling).transpose(1, 2)
    assert got.dtype == torch.bfloat16
    if keys != "explicit":
        torch.testing.assert_close(got, expected.bfloat16(), atol=0, rtol=0)
    else:
        with context:
            explicit, _ = eager_attention(module, query, key, value, None)
        torch.testing.assert_close(got, explicit, atol=0, rtol=0)
        torch.testing.assert_close(got.float(), expected, atol=3e-2, rtol=3e-2)
    upstream = torch.randn_like(expected)
    got.backward(upstream.bfloat16())
    expected.backward(upstream)
    for low, high in zip((query, key, value), fp32):
        assert low.grad.dtype == torch.bfloat16
        torch.testing.assert_close(low.grad.float(), high.grad, atol=6e-2, rtol=6e-2)


@pytest.mark.parametrize("mask", ["none", "causal", "a query with no key"])
def test_explicit_attention_backward_is_the_gradient(mask):
    """ExplicitAttention's hand-written backward (flash attention's formulas) against autograd through the written-
    out formula softmax(Q K^T s + mask) V, in float64, with keys masked off and a query that may see none (its
    output and gradients are 0); and torch.autograd.gradcheck's finite differences."""
    from scratchformer.modeling.attention_scratchformer import ExplicitAttention

    b, h, i, j, d, s = 2, 3, 5, 7, 4, 0.37
    g = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for n in (i, j, j))
    heads_view = torch.randn(b, i, h, d, generator=g, dtype=torch.float64).transpose(1, 2)  # strided, as split_heads
    query = heads_view.copy_(query)
    keep = {
        "none": None,
        "causal": torch.ones(i, j, dtype=torch.bool).tril(j - i)[None, None],
        "a query with no key": torch.rand(b, 1, i, j, generator=g) > 0.4,
    }[mask]
    if mask == "a query with no key":
        keep[1, 0, 2] = False
    inputs = [x.detach().requires_grad_() for x in (query, key, value)]
    got = ExplicitAttention.apply(*inputs, keep, s)  # (b, i, h, d)
    scores = inputs[0] @ inputs[1].transpose(-1, -2) * s
    if keep is not None:
        scores = scores.masked_fill(~keep, -math.inf)
    weights = scores.softmax(-1).nan_to_num(0.0)  # a row of -inf: no key, weight 0
    expected = (weights @ inputs[2]).transpose(1, 2)
    torch.testing.assert_close(got, expected)
    upstream = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    got_grads = torch.autograd.grad(got, inputs, upstream)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    for a, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, e)
    if mask == "a query with no key":
        assert not got[1, 2].any() and not got_grads[0][1, :, 2].any()
    assert torch.autograd.gradcheck(lambda q, k, v: ExplicitAttention.apply(q, k, v, keep, s), inputs)


def test_a_kernel_registered_with_transformers_is_used():
    """attn_implementation names other than eager/sdpa go through transformers' AttentionInterface."""
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    calls = []

    def counting_sdpa(module, *args, **kwargs):
        calls.append(module.layer_idx)
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, *args, **kwargs)

    AttentionInterface.register("counting_sdpa", counting_sdpa)
    model = tester.build(attn_implementation="counting_sdpa")
    reference = tester.build(attn_implementation="eager")
    reference.load_state_dict(model.state_dict())
    config = model.config
    inputs = tester.prepare_inputs(config)
    with torch.no_grad():
        got, expected = model(**inputs).logits, reference(**inputs).logits
    # every attention call, in order: the encoder's self-attention layers, then each decoder layer's self-
    # and cross-attention
    assert calls == list(range(config.encoder_layers)) + [i for i in range(config.decoder_layers) for _ in "sc"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_cross_attention_matches_the_formula_loop():
    module = tester.build_attention(cross=True)
    x, encoder = torch.randn(2, 3, D), torch.randn(2, 5, D)
    padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        got, _ = module(x, key_value_states=encoder, attention_mask=padding.bool()[:, None, None, :])
        expected = naive_attention(
            module, x, encoder, lambda b, i, j: bool(padding[b, j]), score_function(module, "dot"), NORMALIZE["softmax"]
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def phi(x):
    return torch.where(x > 0, x + 1, torch.exp(x))  # elu(x) + 1, written out


@pytest.mark.parametrize("output_attentions", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_matches_the_formula_loop(causal, output_attentions):
    """O_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)  (Katharopoulos et al. 2020, eq. 4),
    outputs and gradients; asking for the weights (the parallel form) changes neither."""
    module = tester.build_attention("linear", causal=causal)
    x = torch.randn(2, 6, D, requires_grad=True)
    padding = torch.ones(2, 6, dtype=torch.long)
    padding[1, 4:] = 0
    positions = torch.arange(6)
    keep = keep_mask(positions, positions, causal=causal, key_padding=padding)
    got, weights = module(x, attention_mask=keep, output_attentions=output_attentions)
    d = D // H
    q, k, v = project(module, x, x)
    out = torch.zeros(2, 6, H, d)
    expected_weights = torch.zeros(2, H, 6, 6)  # A'[b, h, i, j]; 0 for the keys query i does not see
    for b in range(2):
        for h in range(H):
            for i in range(6):
                keys = [j for j in range(6) if padding[b, j] and (not causal or j <= i)]
                sims = [phi(q[b, i, h]) @ phi(k[b, j, h]) for j in keys]
                out[b, i, h] = sum(s * v[b, j, h] for s, j in zip(sims, keys)) / sum(sims)
                for s, j in zip(sims, keys):
                    expected_weights[b, h, i, j] = (s / sum(sims)).detach()
    expected = module.out_proj(out.reshape(2, 6, D))
    real = padding.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)
    probe = torch.randn_like(got[real])
    grads = [torch.autograd.grad((y[real] * probe).sum(), [x, module.qkv_proj.weight]) for y in (got, expected)]
    for grad_got, grad_expected in zip(*grads):
        torch.testing.assert_close(grad_got, grad_expected, atol=1e-5, rtol=1e-4)
    if output_attentions:  # A'[b, h, i, j] = phi(q_i).phi(k_j) / sum_j' over the visible keys j'
        torch.testing.assert_close(weights.detach(), expected_weights, atol=1e-5, rtol=1e-4)
    else:
        assert weights is None


def test_linear_attention_recurrent_form_equals_parallel_form():
    """Decoding token by token with only the state (S, z) == the parallel causal form over the whole sequence;
    the state is S = sum_t phi(k_t) v_t^T, z = sum_t phi(k_t) over the 8 tokens."""
    module = tester.build_attention("linear", causal=True)
    x = torch.randn(2, 8, D)
    from transformers import DynamicCache

    with torch.no_grad():
        parallel, _ = module(x)
        cache = DynamicCache()
        steps = [module(x[:, t : t + 1], cache=cache)[0] for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, 1), parallel, atol=1e-5, rtol=1e-4)
    state = cache.layers[0]
    assert isinstance(state, LinearAttentionState) and state.get_seq_length() == 8
    with torch.no_grad():
        _, k, v = project(module, x, x)  # (b, t, h, d)
    S = torch.einsum("bthd,bthe->bhde", phi(k), v)  # sum_t phi(k_t) v_t^T, (b, h, d, d): constant size
    z = phi(k).sum(1)[:, :, None]  # sum_t phi(k_t), (b, h, 1, d)
    torch.testing.assert_close(state.keys, S, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state.values, z, atol=1e-5, rtol=1e-4)


def test_linear_attention_decoding_state_does_not_grow():
    """After 9 generated tokens each decoder layer holds S (b, h, d, d) and z (b, h, 1, d), nothing per token."""
    model = tester.build(attention_pattern="linear")
    inputs = tester.prepare_inputs(model.config)
    out = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=9,
        min_new_tokens=9,
        return_dict_in_generate=True,
    )
    cache = getattr(out, CACHE_FIELD)
    b, d = tester.batch_size, D // H
    shapes = [(tuple(layer.keys.shape), tuple(layer.values.shape)) for layer in cache.self_attention_cache.layers]
    assert shapes == [((b, H, d, d), (b, H, 1, d))] * model.config.decoder_layers
    assert cache.get_seq_length() == 9


def test_sinusoid_table_is_the_papers_formula():
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = sinusoid_table(50, 12)
    for pos in range(50):
        for i in range(6):
            angle = pos / 10000 ** (2 * i / 12)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_rotary_scores_depend_on_relative_position_only():
    from scratchformer.modeling.positions_scratchformer import RotaryPositionEncoding, apply_rotary

    rotary = RotaryPositionEncoding(tester.get_config(position_encoding="rotary"), H)
    q, k = torch.randn(D // H), torch.randn(D // H)

    def score(i, j):
        cos_i, sin_i = rotary.rotary(torch.tensor([[i]]))
        cos_j, sin_j = rotary.rotary(torch.tensor([[j]]))
        return (
            apply_rotary(q[None, None, None], cos_i, sin_i).flatten()
            @ apply_rotary(k[None, None, None], cos_j, sin_j).flatten()
        )

    assert score(3, 1).item() == pytest.approx(score(12, 10).item(), abs=1e-4)

    def by_hand(i, j):
        """RoPE as complex numbers (Su et al. 2021, section 3.4.1): the pairs (x_k, x_{k + d/2}) ("rotate
        half") are z_k = x_k + i x_{k + d/2}, each turned by pos * theta_k with theta_k = base^(-2k/d), so the
        score is Re sum_k q_k conj(k_k) e^{i (i - j) theta_k}."""
        half = D // H // 2
        theta = rotary.theta ** (-torch.arange(half, dtype=torch.float64) * 2 / (D // H))
        q_c, k_c = (torch.complex(x[:half].double(), x[half:].double()) for x in (q, k))
        return (q_c * k_c.conj() * torch.exp(1j * (i - j) * theta)).sum().real.item()

    for i, j in ((0, 0), (3, 1), (3, 2), (1, 3), (12, 10), (7, 0)):
        assert score(i, j).item() == pytest.approx(by_hand(i, j), abs=1e-4), (i, j)
