"""Custom 4-D attention masks (b, 1, i, j), boolean or additive: attention restricted to a graph's edges, in the
encoder, the decoder and cross-attention, checked edge by edge against what each query may see."""

import pytest
import torch
from model_tester import ModelTester

from scratchformer import ScratchformerForConditionalGeneration, ScratchformerForTokenClassification

tester = ModelTester()
NODES = 7


def random_graph(seed=0, n=NODES):
    """A symmetric adjacency with self-loops: keep[i, j] = i and j are joined."""
    generator = torch.Generator().manual_seed(seed)
    edges = torch.rand(n, n, generator=generator) < 0.35
    return edges | edges.T | torch.eye(n, dtype=torch.bool)


def additive(keep):
    return torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)


def perturbed(ids, position, vocab):
    ids = ids.clone()
    ids[:, position] = 4 + (ids[:, position] - 4 + 1) % (vocab - 4)
    return ids


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_a_node_sees_exactly_its_neighbours_in_the_encoder(implementation):
    """One encoder layer: the output at node i depends on the inputs at i's neighbours, and only on them."""
    model = tester.build(ScratchformerForTokenClassification, attn_implementation=implementation, encoder_layers=1)
    graph = random_graph()
    mask = graph[None, None]
    ids = torch.randint(4, tester.vocab_size, (1, NODES), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask).logits[0]
        for j in range(NODES):  # the per-edge loop
            moved = model(input_ids=perturbed(ids, j, tester.vocab_size), attention_mask=mask).logits[0]
            changed = (moved - base).abs().amax(-1) > 1e-6
            assert torch.equal(changed, graph[:, j]), f"key {j}: outputs that moved {changed.tolist()}"


def test_weights_are_zero_off_the_edges_and_the_two_mask_forms_agree():
    model = tester.build(ScratchformerForTokenClassification, encoder_layers=2)
    graph = random_graph(3)
    ids = torch.randint(4, tester.vocab_size, (2, NODES), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=graph[None, None], output_attentions=True)
        float_out = model(input_ids=ids, attention_mask=additive(graph)[None, None])
    for weights in out.attentions:  # (b, h, i, j)
        assert torch.all(weights[..., ~graph] == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))  # softmax over the edges
    torch.testing.assert_close(out.logits, float_out.logits)


def test_eager_and_sdpa_agree_on_a_custom_mask():
    graph = random_graph(5)[None, None]
    ids = torch.randint(4, tester.vocab_size, (2, NODES), generator=torch.Generator().manual_seed(4))
    outputs = []
    for implementation in ("eager", "sdpa"):
        model = tester.build(ScratchformerForTokenClassification, attn_implementation=implementation)
        with torch.no_grad():
            outputs.append(model(input_ids=ids, attention_mask=graph).logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_decoder_masks_stay_causal_and_cross_attention_takes_a_graph():
    """The decoder's own mask is ANDed with causality (a mask allowing the future does not leak it); a 4-D
    encoder mask restricts which source tokens each target position reads."""
    model = tester.build(ScratchformerForConditionalGeneration, decoder_layers=1, encoder_layers=1)
    src, tgt = NODES, 5
    ids = torch.randint(4, tester.vocab_size, (1, src), generator=torch.Generator().manual_seed(6))
    decoder_ids = torch.randint(4, tester.vocab_size, (1, tgt), generator=torch.Generator().manual_seed(7))
    everything = torch.ones(1, 1, tgt, tgt, dtype=torch.bool)
    cross = torch.rand(tgt, src, generator=torch.Generator().manual_seed(8)) < 0.5
    cross[:, 0] = True  # every target position reads at least one source token
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=ids)

        def logits(decoder_input_ids, encoder_hidden=encoded):
            return model(
                encoder_outputs=encoder_hidden,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=everything,
                attention_mask=cross[None, None],
            ).logits[0]

        base = logits(decoder_ids)
        for j in range(tgt):  # target token j moves positions >= j only
            moved = (logits(perturbed(decoder_ids, j, tester.vocab_size)) - base).abs().amax(-1) > 1e-6
            assert torch.equal(moved, torch.arange(tgt) >= j), j
        for k in range(src):  # a source vector moves the target positions joined to it only
            hidden = encoded.last_hidden_state.clone()
            hidden[:, k] += 1.0
            moved = (logits(decoder_ids, type(encoded)(last_hidden_state=hidden)) - base).abs().amax(-1) > 1e-6
            assert torch.equal(moved, cross[:, k]), k


def test_window_attention_applies_both_its_band_and_the_custom_mask():
    model = tester.build(
        ScratchformerForTokenClassification, encoder_layers=1, attention_pattern="window", attention_window=2
    )
    graph = random_graph(9)
    band = (torch.arange(NODES)[:, None] - torch.arange(NODES)[None]).abs() <= 2
    ids = torch.randint(4, tester.vocab_size, (1, NODES), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=graph[None, None]).logits[0]
        for j in range(NODES):
            moved = model(input_ids=perturbed(ids, j, tester.vocab_size), attention_mask=graph[None, None]).logits[0]
            assert torch.equal((moved - base).abs().amax(-1) > 1e-6, graph[:, j] & band[:, j]), j


def test_linear_attention_refuses_a_custom_mask():
    model = tester.build(ScratchformerForTokenClassification, attention_pattern="linear")
    with pytest.raises(ValueError, match="attention_pattern='linear' cannot take a 4-D attention_mask"):
        model(input_ids=torch.randint(4, 50, (1, NODES)), attention_mask=random_graph()[None, None])
