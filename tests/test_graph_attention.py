"""Attention over the dependency tree (--attention_graph dependency-tree): the subword mask against a per-pair
loop of its definition, the HEAD column of CoNLL-U, the Collator's batched masks, a tiny run whose attention
weights are zero off the tree, and the argument errors."""

import random

import pytest
import torch
from test_data import CONLLU, write
from transformers import AutoTokenizer

from scratchformer.training import cli, inference
from scratchformer.training.args import DataArguments, from_flat
from scratchformer.training.data import Collator, load_task, tokenize
from scratchformer.training.files import read_conll
from scratchformer.training.graphs import SPECIAL, graph_attention_mask, tree_edges
from scratchformer.training.trainer import train

TAGS = {"the": "DET", "a": "DET", "big": "ADJ", "old": "ADJ", "dog": "NOUN", "cat": "NOUN", "runs": "VERB"}


def naive_keep(word_ids, heads, length):
    """The module docstring of graphs.py, one pair at a time."""
    n = len(word_ids)

    def adjacent(a, b):
        return a == b or heads[a] == b + 1 or heads[b] == a + 1

    keep = torch.zeros(length, length, dtype=torch.bool)
    for p in range(length):
        for q in range(length):
            if p < n and q < n:
                words = word_ids[p] != SPECIAL and word_ids[q] != SPECIAL
                keep[p, q] = p == q or (words and adjacent(word_ids[p], word_ids[q]))
    return keep


def test_the_mask_is_its_definition_pair_by_pair():
    rng = random.Random(0)
    for _ in range(30):
        words = rng.randint(1, 7)
        heads = [rng.randint(0, words) for _ in range(words)]  # any HEADs in 0..n: the mask reads only edges
        word_ids = [SPECIAL] + [w for w in range(words) for _ in range(rng.randint(1, 3))] + [SPECIAL]
        if rng.random() < 0.3:  # truncated (tasks.cut keeps </s>): edges name words that have no subword left
            word_ids = word_ids[: rng.randint(1, len(word_ids) - 1)] + [SPECIAL]
        length = len(word_ids) + rng.randint(0, 3)  # padding
        assert torch.equal(
            graph_attention_mask(word_ids, tree_edges(heads), length), naive_keep(word_ids, heads, length)
        )
    assert tree_edges([2, 0, 2]) == [[0, 1], [2, 1]]


def test_conllu_heads_are_read_with_ranges_and_empty_nodes_skipped(tmp_path):
    ds = read_conll(write(tmp_path / "a.conllu", CONLLU))
    assert ds["tokens"][:] == [["The", "dog", "barks", "."], ["do", "n't", "go"]]
    assert ds["heads"][:] == [[2, 3, 0, 3], [3, 3, 0]]  # word ids 1..n once "1-2" and "2.1" are skipped
    no_tree = CONLLU.replace("\t2\tdet\t", "\t_\tdet\t")
    assert "heads" not in read_conll(write(tmp_path / "b.conllu", no_tree)).column_names
    with pytest.raises(ValueError, match=r"c.conllu:4: HEAD 9, but the sentence has 4 words"):
        read_conll(write(tmp_path / "c.conllu", CONLLU.replace("\t3\tnsubj\t", "\t9\tnsubj\t")))
    with pytest.raises(ValueError, match=r"d.conllu:5: word id '4', expected 3"):
        read_conll(write(tmp_path / "d.conllu", CONLLU.replace("3\tbarks", "4\tbarks")))


def test_the_collator_pads_the_graph_masks():
    rows = [
        {"input_ids": [1, 5, 6, 7, 2], "labels": [-100, 0, 1, -100, -100], "word_ids": [-1, 0, 1, 1, -1]},
        {"input_ids": [1, 8, 2], "labels": [-100, 1, -100], "word_ids": [-1, 0, -1]},
    ]
    rows[0]["word_edges"], rows[1]["word_edges"] = [[0, 1]], []
    batch = Collator(0)(rows)
    assert batch["attention_mask"].shape == (2, 1, 5, 5) and batch["attention_mask"].dtype == torch.bool
    for mask, row in zip(batch["attention_mask"], rows):
        assert torch.equal(mask[0], graph_attention_mask(row["word_ids"], row["word_edges"], 5))
    assert batch["attention_mask"][1, 0].tolist() == [
        [True, False, False, False, False],
        [False, True, False, False, False],
        [False, False, True, False, False],
        [False] * 5,  # padding sees nothing and is seen by nothing
        [False] * 5,
    ]


def tree_conllu(n, seed):
    """'DET ADJ? NOUN VERB' sentences, each word's HEAD as a parser would give it (DET, ADJ -> NOUN -> VERB)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [rng.choice(["the", "a"])] + [rng.choice(["big", "old"])] * rng.randint(0, 1)
        words += [rng.choice(["dog", "cat"]), "runs"]
        noun = len(words) - 1
        heads = [noun] * (noun - 1) + [len(words), 0]
        sentences.append(
            "\n".join(f"{j}\t{w}\t{w}\t{TAGS[w]}\t_\t_\t{h}\t_\t_\t_" for j, (w, h) in enumerate(zip(words, heads), 1))
        )
    return "\n\n".join(sentences) + "\n\n"


def test_a_tree_run_trains_and_its_weights_are_zero_off_the_tree(tmp_path):
    train_file = write(tmp_path / "train.conllu", tree_conllu(100, 0))
    validation_file = write(tmp_path / "dev.conllu", tree_conllu(20, 1))
    out = tmp_path / "out"
    values = dict(
        task="token-classification",
        attention_graph="dependency-tree",
        train_file=train_file,
        validation_file=validation_file,
        tokenizer_type="char",
        output_dir=str(out),
        report_to=[],
        d_model=32,
        encoder_layers=2,
        attention_heads=2,
        ffn_dim=64,
        max_steps=30,
        eval_every=30,
        batch_size=16,
        batch_tokens=0,
        learning_rate=3e-3,
        warmup_steps=5,
        log_every=10,
    )
    results = train(*from_flat(values))
    assert results["validation"]["accuracy"] > 0.5  # chance is about 1/4: it learned through the tree

    saved = inference.load_saved(out)
    data = load_task(
        DataArguments(task="token-classification", attention_graph="dependency-tree", train_file=train_file)
    )
    features = tokenize(data, AutoTokenizer.from_pretrained(out), 64, 64, "truncate")["train"]
    batch = Collator(0)([features[i] for i in range(8)])
    keep = batch.pop("attention_mask")  # (b, 1, n, n)
    real = batch["input_ids"] != 0
    assert not keep[:, 0][real[:, :, None] & real[:, None, :]].all()  # the tree hides some pairs of real tokens
    with torch.no_grad():
        attentions = saved.model(**batch, attention_mask=keep, output_attentions=True).attentions  # eager
    assert len(attentions) == 2
    for weights in attentions:  # (b, heads, n, n)
        assert torch.all(weights.masked_select(~keep) == 0)
        sums = weights.sum(-1).transpose(1, 2)[real]  # (real tokens, heads): softmax over the tree's edges
        torch.testing.assert_close(sums, torch.ones_like(sums))

    # `evaluate` on the saved folder scores through the tree too (the same accuracy); full attention differs
    tree = inference.evaluate_saved(out, split="validation")
    assert tree["accuracy"] == pytest.approx(results["validation"]["accuracy"])
    full = inference.evaluate_saved(out, {"attention_graph": "none"}, split="validation")
    assert full["loss"] != pytest.approx(tree["loss"])
    with pytest.raises(ValueError, match="trained with attention_graph='dependency-tree': it needs each sentence's"):
        cli.main(["predict", str(out), "the dog runs"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attention_graph="constituency"), "attention_graph='constituency'; allowed: none, dependency-tree"),
        (dict(task="g2p"), "attention_graph='dependency-tree' needs a tagging task .* allowed for task='g2p': none"),
        (dict(train_file="pos.conll"), "reads each sentence's tree from CoNLL-U files .*; got .*pos.conll"),
        (dict(train_file="no_tree.conllu"), r"train split: attention_graph='dependency-tree' needs every word's HEAD"),
    ],
)
def test_bad_graph_arguments_fail_before_training(tmp_path, kwargs, message):
    write(tmp_path / "pos.conll", "the DET\ndog NOUN\n")
    write(tmp_path / "no_tree.conllu", CONLLU.replace("\t2\tdet\t", "\t_\tdet\t"))
    values = dict(task="token-classification", attention_graph="dependency-tree", train_file="train.conllu")
    values |= {k: str(tmp_path / v) if k == "train_file" else v for k, v in kwargs.items()}
    values |= dict(output_dir=str(tmp_path / "out"), report_to=[])
    with pytest.raises(ValueError, match=message):
        train(*from_flat(values))
    assert not (tmp_path / "out" / "log.jsonl").exists()
