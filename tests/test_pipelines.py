"""transformers pipelines on the models pulled over HTTP give what the model called directly gives.

The pipelines ran in the fresh process of hub_fixtures.pulled that has no scratchformer package (on the
models and tokenizer it pulled with trust_remote_code=True; the card snippets in test_hub.py also build
pipelines from repo ids); the direct calls here use the in-memory models, one text at a time.
transformers 5 has no text2text pipeline: seq2seq goes through tokenizer + generate() (test_hub.py).
"""

import pytest
import torch

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import TEXTS  # noqa: E402

pytest_plugins = ["hub_fixtures"]


def direct(model, tokenizer, text):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt"))


def test_text_classification(pulled, hub_exports):
    model, tokenizer = hub_exports["seq_cls"].model, hub_exports["seq_cls"].tokenizer
    predictions = pulled["remote_code"]["pipelines"]["text-classification"]
    assert len(predictions) == len(TEXTS)
    for text, prediction in zip(TEXTS, predictions):
        probabilities = direct(model, tokenizer, text).logits[0].softmax(-1)
        assert prediction["label"] == model.config.id2label[probabilities.argmax().item()]
        assert prediction["score"] == pytest.approx(probabilities.max().item(), abs=1e-5)
    assert len({p["label"] for p in predictions}) > 1 or predictions[0]["score"] != predictions[1]["score"]


def test_token_classification(pulled, hub_exports):
    model, tokenizer = hub_exports["token_cls"].model, hub_exports["token_cls"].tokenizer
    predictions = pulled["remote_code"]["pipelines"]["token-classification"]
    for text, entities in zip(TEXTS, predictions):
        encoding = tokenizer(text, return_tensors="pt")
        probabilities = direct(model, tokenizer, text).logits[0].softmax(-1)  # (tokens, labels)
        words = text.split()  # one token per word, then </s> (special: the pipeline skips it)
        expected = [
            {"entity": model.config.id2label[probabilities[i].argmax().item()], "index": i, "word": word}
            for i, word in enumerate(words)
        ]
        assert encoding["input_ids"].shape[1] == len(words) + 1
        assert [{k: e[k] for k in ("entity", "index", "word")} for e in entities] == expected
        for i, entity in enumerate(entities):
            assert entity["score"] == pytest.approx(probabilities[i].max().item(), abs=1e-5)


def test_feature_extraction(pulled, hub_exports):
    """AutoModel of the seq2seq repo: the decoder's last hidden states, one vector per token."""
    base, tokenizer = hub_exports["seq2seq"].model.model, hub_exports["seq2seq"].tokenizer
    features = pulled["remote_code"]["pipelines"]["feature-extraction"]
    for text, feature in zip(TEXTS, features):
        expected = direct(base, tokenizer, text).last_hidden_state
        assert feature.shape == expected.shape == (1, len(text.split()) + 1, base.config.d_model)
        torch.testing.assert_close(feature, expected)
