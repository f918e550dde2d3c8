"""Pretraining (BERT's masked LM, BART's text infilling) against the papers' definitions, then fine-tuning from the
pretrained folder into every head, with its load report."""

import itertools
import json
import math
import random
import re
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from scratchformer import ScratchformerConfig, ScratchformerForMaskedLM
from scratchformer.training.args import from_flat
from scratchformer.training.checkpoints import latest_checkpoint
from scratchformer.training.noising import Noise, NoisingCollator, Vocabulary, infill, lay_spans, mask_tokens, permute
from scratchformer.training.trainer import Trainer, train

VOCAB = Vocabulary(mask_id=4, eos_id=2, first_ordinary=5, size=1000, sentence_ends=frozenset({7}))
NOISE = Noise()


def within(observed: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    """A binomial count within `sigmas` standard deviations of its mean."""
    return abs(observed - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p))


def distinct_rows(count: int, seed: int = 0, lengths=(20, 60)):
    """Rows of distinct ordinary tokens (so a corrupted row aligns with its original without ambiguity), + </s>."""
    rng = random.Random(seed)
    return [rng.sample(range(10, VOCAB.size), rng.randint(*lengths)) + [VOCAB.eos_id] for _ in range(count)]


# ----------------------------------------------------------------------------------------------- masked LM
def test_masked_lm_chooses_15_percent_and_replaces_80_10_10():
    chosen = kinds = 0
    counts = Counter()
    for row, ids in enumerate(distinct_rows(3000)):
        inputs, labels = mask_tokens(ids, VOCAB, NOISE, NOISE.generator(0, row))
        n = len(ids) - 1
        assert len(inputs) == len(labels) == len(ids) and inputs[-1] == VOCAB.eos_id and labels[-1] == -100
        positions = [i for i, y in enumerate(labels) if y != -100]
        assert len(positions) == max(1, round(0.15 * n))  # BERT: exactly round(15%) of the tokens
        assert all(labels[i] == ids[i] for i in positions)  # the label is the original token
        assert all(inputs[i] == ids[i] for i in range(n) if labels[i] == -100)  # the rest are untouched
        for i in positions:
            kind = "mask" if inputs[i] == VOCAB.mask_id else "same" if inputs[i] == ids[i] else "random"
            counts[kind] += 1
            if kind == "random":
                assert VOCAB.first_ordinary <= inputs[i] < VOCAB.size  # never a special token
        chosen += len(positions)
        kinds += 1
    # a random replacement equals the original with probability 1 / 995: it counts as "same"
    p_same = 0.1 + 0.1 / (VOCAB.size - VOCAB.first_ordinary)
    assert within(counts["mask"], chosen, 0.8), counts
    assert within(counts["random"], chosen, 0.1 - 0.1 / (VOCAB.size - VOCAB.first_ordinary)), counts
    assert within(counts["same"], chosen, p_same), counts


def test_masked_lm_positions_are_uniform():
    """Each position of a 40-token row is chosen with probability 6/40."""
    ids = list(range(10, 50)) + [VOCAB.eos_id]
    hits = Counter()
    rows = 4000
    for row in range(rows):
        _, labels = mask_tokens(ids, VOCAB, NOISE, NOISE.generator(0, row))
        hits.update(i for i, y in enumerate(labels) if y != -100)
    assert all(within(hits[i], rows, 6 / 40) for i in range(40)), hits


# ----------------------------------------------------------------------------------------------- infilling
def spans_of(corrupted: list[int], original: list[int]) -> list[int]:
    """The length of the span behind each <mask> of a corrupted row of distinct tokens (0: an inserted mask)."""
    lengths, j = [], 0
    for position, token in enumerate(corrupted):
        if token == VOCAB.mask_id:
            following = corrupted[position + 1] if position + 1 < len(corrupted) else None
            end = original.index(following, j) if following is not None else len(original)
            lengths.append(end - j)
            j = end
        else:
            assert original[j] == token  # unmasked tokens are copied, in order
            j += 1
    assert j == len(original)
    return lengths


def poisson(k: int, lam: float) -> float:
    return math.exp(-lam) * lam**k / math.factorial(k)


def test_infilling_masks_30_percent_in_poisson_3_spans_each_one_mask():
    """Each <mask> stands for one span; the spans cover round(30%) of the tokens; the first span drawn (the leftmost)
    has Poisson(3) length. (Later ones are biased by the stopping rule: the span that crosses the budget is cut, and
    large draws are likelier to cross it, as in BART's own sampler.)"""
    first = []
    for row, ids in enumerate(distinct_rows(3000, seed=1, lengths=(200, 300))):
        inputs, labels = infill(ids, VOCAB, NOISE, NOISE.generator(0, row))
        assert labels == ids  # the target is the original text
        spans = spans_of(inputs[:-1], ids[:-1])
        assert sum(spans) == round(0.3 * (len(ids) - 1))  # 30% of the tokens, exactly
        first.append(spans[0])
    counts = Counter(first)
    for k in range(10):
        assert within(counts[k], len(first), poisson(k, 3.0)), (k, counts[k], len(first) * poisson(k, 3.0))
    assert abs(sum(first) / len(first) - 3.0) < 5 * math.sqrt(3.0 / len(first))


def test_spans_are_laid_apart_uniformly():
    """Two spans of length 1 in 5 tokens, not adjacent: the 6 placements are equally likely."""
    placements = Counter(tuple(lay_spans(5, [1, 1], np.random.default_rng([i]))) for i in range(6000))
    assert set(placements) == {(0, 2), (0, 3), (0, 4), (1, 3), (1, 4), (2, 4)}
    assert all(within(c, 6000, 1 / 6) for c in placements.values()), placements


def test_sentence_permutation_shuffles_whole_sentences():
    """The output is the sentences in one of the 24 orders, each order about equally often."""
    sentences = [[10, 11, 7], [12, 7], [13, 14, 15, 7], [16]]  # 7 ends a sentence; the last has no end
    orders = {tuple(t for i in order for t in sentences[i]): order for order in itertools.permutations(range(4))}
    seen = Counter()
    draws = 4800
    for seed in range(draws):
        out = permute([t for s in sentences for t in s], VOCAB, np.random.default_rng([seed]))
        seen[orders[tuple(out)]] += 1  # KeyError: not a permutation of whole sentences
    assert len(seen) == 24 and all(within(c, draws, 1 / 24) for c in seen.values()), seen


def test_noise_depends_on_seed_epoch_and_row_only():
    ids = distinct_rows(1)[0]
    draw = lambda noise, epoch, row: infill(ids, VOCAB, noise, noise.generator(epoch, row))  # noqa: E731
    assert draw(NOISE, 0, 5) == draw(NOISE, 0, 5)
    assert draw(NOISE, 1, 5) != draw(NOISE, 0, 5)  # a fresh corruption each epoch
    assert draw(NOISE, 0, 6) != draw(NOISE, 0, 5)
    assert draw(Noise(seed=1), 0, 5) != draw(NOISE, 0, 5)
    collator = NoisingCollator(infill, VOCAB, NOISE, lambda rows: rows)
    collator.set_epoch(1)
    assert collator([{"input_ids": ids, "row": 5}])[0]["input_ids"] == draw(NOISE, 1, 5)[0]


# ------------------------------------------------------------------------------------------------ the model
def test_sparse_prediction_gives_the_dense_loss_and_the_masked_rows_logits():
    config = ScratchformerConfig(
        vocab_size=50, d_model=32, encoder_layers=1, decoder_layers=0, encoder_attention_heads=2, encoder_ffn_dim=64
    )
    torch.manual_seed(0)
    dense = ScratchformerForMaskedLM(config).eval()
    sparse = ScratchformerForMaskedLM(ScratchformerConfig(**{**config.to_dict(), "sparse_prediction": True})).eval()
    sparse.load_state_dict(dense.state_dict())
    ids = torch.randint(5, 50, (3, 9))
    labels = torch.where(torch.rand(3, 9) < 0.3, ids, -100)
    full, part = dense(input_ids=ids, labels=labels), sparse(input_ids=ids, labels=labels)
    torch.testing.assert_close(part.loss, full.loss)
    torch.testing.assert_close(part.logits, full.logits[labels != -100])
    torch.testing.assert_close(sparse(input_ids=ids).logits, full.logits)  # without labels: every position


# ----------------------------------------------------------------------------------------------- the trainer
TINY = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=1,
    attention_heads=2,
    ffn_dim=64,
    dropout=0.1,
    report_to=[],
    log_every=1,
    batch_size=16,
    batch_tokens=0,
    learning_rate=3e-3,
    warmup_steps=2,
    eval_batch_size=64,
    vocab_size=120,
    tokenizer_type="wordpiece",
)
WORDS = "the a dog cat sat ran on under mat tree big small red blue".split()  # the last 4 tell the labels


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A text file of random sentences, with blank lines (skipped) between paragraphs; and labelled data."""
    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    lines = []
    for i in range(400):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + " .")
        if i % 40 == 39:
            lines.append("")
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    rows = []
    for i in range(120):
        label = ["neg", "pos"][i % 2]
        words = [rng.choice(WORDS[:10]) for _ in range(4)] + [["small", "blue"], ["big", "red"]][i % 2]
        rows.append({"text": " ".join(words), "label": label, "tokens": words, "tags": [w[0] for w in words]})
    (root / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def pretrain(folder, corpus, task, **kwargs):
    return train(
        *from_flat(
            {
                **TINY,
                "task": task,
                "train_file": str(corpus / "corpus.txt"),
                "output_dir": str(folder),
                "max_steps": 12,
                "eval_every": 6,
                "save_every": 6,
                **kwargs,
            }
        )
    )


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    results = {task: pretrain(root / task, corpus, task) for task in ("masked-lm", "denoising")}
    return root, results


def test_pretraining_runs_report_loss_and_accuracy_and_save_a_loadable_model(pretrained):
    root, results = pretrained
    for task in ("masked-lm", "denoising"):
        scores = results[task]["test" if "test" in results[task] else "validation"]
        assert math.isfinite(scores["loss"]) and 0 <= scores["accuracy"] <= 1
        assert results[task]["validation_best"]["step"] in (6, 12)
    tokenizer = AutoTokenizer.from_pretrained(root / "masked-lm")
    assert tokenizer.mask_token == "<mask>" and tokenizer.mask_token_id == 4
    model = AutoModelForMaskedLM.from_pretrained(root / "masked-lm").eval()
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=3)
    text = "the dog <mask> on the mat ."
    answers = fill(text)
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**batch).logits[batch["input_ids"] == 4].softmax(-1)[0]
    top = probabilities.topk(3)
    assert [a["token"] for a in answers] == top.indices.tolist()  # transformers' pipeline reads our logits
    assert [a["score"] for a in answers] == pytest.approx(top.values.tolist(), rel=1e-5)


def test_pretraining_resume_is_exact(corpus, tmp_path):
    straight = pretrain(tmp_path / "straight", corpus, "masked-lm", save_every=3)
    assert pretrain(tmp_path / "resumed", corpus, "masked-lm", save_every=3, stop_after_steps=7)["step"] == 7
    assert latest_checkpoint(tmp_path / "resumed").name == "checkpoint-0000007"
    resumed = pretrain(tmp_path / "resumed", corpus, "masked-lm", save_every=3, resume=True)
    assert straight["validation_best"] == resumed["validation_best"]
    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fine_tune(folder, corpus, pretrained_folder, task, **kwargs):
    values = {
        **TINY,
        "task": task,
        "train_file": str(corpus / "labelled.jsonl"),
        "output_dir": str(folder),
        "model_name_or_path": str(pretrained_folder),
        "max_steps": 4,
        "eval_every": 4,
        "save_every": 4,
        **kwargs,
    }
    return Trainer(*from_flat(values))


@pytest.mark.parametrize(
    "pretraining, task, new, dropped",
    [
        ("masked-lm", "sequence-classification", {"classification_head"}, {"lm_head"}),
        ("masked-lm", "token-classification", {"classifier"}, {"lm_head"}),
        ("masked-lm", "translation", {"model.decoder"}, {"lm_head"}),
        ("denoising", "sequence-classification", {"classification_head"}, {"model.decoder"}),
        ("denoising", "translation", set(), set()),  # the seq2seq head takes everything
    ],
)
def test_fine_tuning_loads_what_both_heads_have_and_reports_it(
    pretrained, corpus, tmp_path, pretraining, task, new, dropped
):
    root, _ = pretrained
    extra = {"source_column": "text", "target_column": "text"} if task == "translation" else {}
    if task == "token-classification":
        extra = {"tokens_column": "tokens", "tags_column": "tags"}
    trainer = fine_tune(tmp_path, corpus, root / pretraining, task, **extra)
    report = json.loads((tmp_path / "load_report.json").read_text())

    def prefix(key):
        heads = ("classification_head", "classifier", "lm_head", "model.decoder", "model")
        return next(p for p in heads if key.startswith(p))

    assert {prefix(k) for k in report["new"]} == new
    assert {prefix(k) for k in report["dropped"]} == dropped
    assert report["mismatched"] == []
    saved = load_file(root / pretraining / "model.safetensors")  # on-disk (BART) names; compare through a load
    reloaded = type(trainer.model).from_pretrained(
        root / pretraining, **({"num_labels": trainer.model.config.num_labels} if trainer.data.label_list else {})
    )
    state = trainer.model.state_dict()
    encoder = [k for k in state if k.startswith("model.encoder.layers.")]
    assert encoder and all(torch.equal(state[k], reloaded.state_dict()[k]) for k in encoder)
    assert all(k in report["loaded"] for k in encoder)
    assert saved  # the pretrained file exists and is read


def test_fine_tuned_model_trains_and_keeps_the_pretrained_tokenizer(pretrained, corpus, tmp_path):
    root, _ = pretrained
    trainer = fine_tune(
        tmp_path, corpus, root / "masked-lm", "sequence-classification", max_steps=40, validation_split_per_mille=250
    )
    results = trainer.train()
    assert results["validation"]["accuracy"] > 0.7  # the label word decides: it learned
    assert (
        AutoTokenizer.from_pretrained(tmp_path).get_vocab()
        == AutoTokenizer.from_pretrained(root / "masked-lm").get_vocab()
    )


def test_bad_pretraining_settings_are_refused_before_loading(corpus, tmp_path):
    for name, value, allowed in (
        ("mlm_probability", 0.0, "in (0, 1]"),
        ("mask_ratio", 1.5, "in (0, 1]"),
        ("poisson_lambda", 0, "> 0"),
    ):
        with pytest.raises(ValueError, match=re.escape(f"{name}={value}; allowed: a number {allowed}")):
            pretrain(tmp_path, corpus, "masked-lm", **{name: value})
    assert not (tmp_path / "tokenizer.json").exists()
