"""Any vector set as input (the notes: speech frames, image patches, graph nodes): inputs_embeds in every head, the
encoder's input projection (input_features_dim), and the trainer on float feature sequences."""

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from scratchformer import (
    ScratchformerConfig,
    ScratchformerForMaskedLM,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
)
from scratchformer.training.args import from_flat
from scratchformer.training.inference import predict
from scratchformer.training.trainer import train

CONFIG = dict(
    vocab_size=40,
    d_model=32,
    encoder_layers=2,
    decoder_layers=0,
    encoder_attention_heads=4,
    encoder_ffn_dim=64,
    dropout=0.0,
    num_labels=3,
)


@pytest.mark.parametrize(
    "head", [ScratchformerForSequenceClassification, ScratchformerForTokenClassification, ScratchformerForMaskedLM]
)
def test_inputs_embeds_equal_input_ids_in_the_encoder_heads(head):
    torch.manual_seed(0)
    model = head(ScratchformerConfig(**CONFIG)).eval()
    ids = torch.randint(4, 40, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        by_ids = model(input_ids=ids, attention_mask=mask).logits
        by_embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).logits
    torch.testing.assert_close(by_embeds, by_ids)


def test_vectors_go_through_the_input_projection_first():
    """With input_features_dim = f the encoder reads f-wide vectors x and sees a = W_in x + b_in: the same output as
    a model without the projection fed W_in x + b_in by hand."""
    torch.manual_seed(0)
    model = ScratchformerForTokenClassification(ScratchformerConfig(**CONFIG, input_features_dim=5)).eval()
    plain = ScratchformerForTokenClassification(ScratchformerConfig(**CONFIG)).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected == [
        "model.encoder.input_projection.weight",
        "model.encoder.input_projection.bias",
    ]
    x = torch.randn(2, 6, 5)
    projection = model.model.encoder.input_projection
    with torch.no_grad():
        torch.testing.assert_close(
            model(inputs_embeds=x).logits, plain(inputs_embeds=x @ projection.weight.T + projection.bias).logits
        )
    with pytest.raises(ValueError, match="input_features_dim=0 is invalid; allowed: None or an integer >= 1"):
        ScratchformerConfig(**CONFIG, input_features_dim=0)


# ------------------------------------------------------------------------------------------------ training
CENTRES = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2  # one centre per class, 8-dim


def frames(rng: random.Random, n: int):
    """A sequence of n noisy vectors around the class centres, and each vector's class."""
    classes = [rng.randrange(3) for _ in range(n)]
    return [[float(c) + rng.gauss(0, 0.5) for c in CENTRES[k].tolist()] for k in classes], classes


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory):
    """JSON lines of vector sequences: a class per vector (tagging), and the majority class per sequence."""
    root, rng = tmp_path_factory.mktemp("vectors"), random.Random(0)
    for split, rows in (("train", 300), ("validation", 40)):
        lines = []
        for _ in range(rows):
            vectors, classes = frames(rng, rng.randint(3, 9))
            majority = max(range(3), key=lambda k: (classes.count(k), -k))
            lines.append({"frames": vectors, "phones": [f"c{k}" for k in classes], "label": f"c{majority}"})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return root


def run(folder, files, task, **kwargs):
    values = dict(
        task=task,
        train_file=str(files / "train.jsonl"),
        validation_file=str(files / "validation.jsonl"),
        features_column="frames",
        tags_column="phones",
        output_dir=str(folder),
        d_model=32,
        encoder_layers=2,
        attention_heads=4,
        ffn_dim=64,
        dropout=0.0,
        report_to=[],
        log_every=10,
        batch_size=32,
        batch_tokens=0,
        learning_rate=3e-3,
        warmup_steps=5,
        max_steps=120,
        eval_every=60,
        save_every=60,
        eval_batch_size=64,
    )
    return train(*from_flat(values | kwargs))


@pytest.mark.parametrize(
    "task, auto_class, floor",
    [
        ("token-classification", AutoModelForTokenClassification, 0.95),
        ("sequence-classification", AutoModelForSequenceClassification, 0.8),
    ],
)
def test_the_trainer_learns_from_vectors(tmp_path, vector_files, task, auto_class, floor):
    results = run(tmp_path, vector_files, task)
    assert results["validation"]["accuracy"] >= floor  # chance: 1/3 per vector; the majority is harder
    model = auto_class.from_pretrained(tmp_path).eval()
    assert model.config.input_features_dim == 8
    row = json.loads((vector_files / "validation.jsonl").read_text().splitlines()[0])
    with torch.no_grad():
        logits = model(inputs_embeds=torch.tensor([row["frames"]])).logits  # the README's call
    predicted = [model.config.id2label[i] for i in logits.argmax(-1).flatten().tolist()]
    saved = json.loads((tmp_path / "validation_predictions.jsonl").read_text().splitlines()[0])
    assert predicted == (saved["prediction"] if task == "token-classification" else [saved["prediction"]])
    with pytest.raises(ValueError, match="reads vectors of 8 numbers, not text"):
        predict(tmp_path, ["some text"])


def test_bad_vectors_are_named_before_training(tmp_path, vector_files):
    bad = tmp_path / "bad.jsonl"
    rows = [json.loads(line) for line in (vector_files / "train.jsonl").read_text().splitlines()[:20]]
    rows[4]["frames"][1] = rows[4]["frames"][1][:5]  # one vector of 5 numbers among 8s
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"train split row 5: vectors of \[5, 8\] numbers"):
        run(tmp_path / "out", vector_files, "token-classification", train_file=str(bad))
    rows[4]["frames"][1] = rows[4]["frames"][0]
    rows[7]["phones"] = rows[7]["phones"][:-1]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"train split row 8: \d+ vectors but \d+ tags; one tag per vector"):
        run(tmp_path / "out", vector_files, "token-classification", train_file=str(bad))
    with pytest.raises(ValueError, match="features_column: task='g2p' reads text"):
        run(tmp_path / "out", vector_files, "g2p")
