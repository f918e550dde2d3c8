"""The CTranslate2 export decodes what the model decodes (greedy and beam, every variant it can express), refuses
the variants it cannot express by name, and runs from the CLI (`export --format ctranslate2`, `predict
--engine ctranslate2`)."""

import pytest
import torch

pytest.importorskip("ctranslate2")

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration  # noqa: E402
from scratchformer.training import cli  # noqa: E402
from scratchformer.training.ctranslate2_export import (  # noqa: E402
    CTranslate2Generator,
    check_expressible,
    export_ctranslate2,
)
from scratchformer.training.tokenizers import train_text_tokenizer  # noqa: E402

TEXTS = ["the dog sat on the mat", "a cat", "the mat was red and the dog was not", "red"]
LENGTH = 8  # new tokens, end token suppressed: every position of the output is compared


@pytest.fixture(scope="module")
def tokenizer():
    corpus = TEXTS * 3 + ["dogs and cats sat", "on a red mat", "was not the cat"]
    return train_text_tokenizer(iter(corpus), "wordpiece", vocab_size=60)


def build(tokenizer, **overrides):
    torch.manual_seed(0)
    config = ScratchformerConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        **overrides,
    )
    model = ScratchformerForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger random matrices and LayerNorm gains: outputs that vary along the sequence
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.5)
            elif "layer_norm.weight" in name:
                parameter.normal_(1.0, 0.3)
    model.generation_config.max_new_tokens = LENGTH
    return model


def ours(model, tokenizer, num_beams):
    outputs = []
    for text in TEXTS:  # one at a time: the reference has no padding
        ids = model.generate(
            **tokenizer([text], return_tensors="pt"),
            num_beams=num_beams,
            do_sample=False,
            max_new_tokens=LENGTH,
            min_new_tokens=LENGTH,
        )
        outputs.append(tokenizer.convert_ids_to_tokens(ids[0, 1:].tolist()))  # without the start token
    return outputs


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_ctranslate2_decodes_what_the_model_decodes(tokenizer, tmp_path, positions, norm, activation):
    model = build(tokenizer, position_encoding=positions, norm_placement=norm, activation_function=activation)
    generator = CTranslate2Generator(export_ctranslate2(model, tokenizer, tmp_path / "ct2"))
    # teacher-forced: every target token's log-probability, as CTranslate2 scores it and as the model does
    targets = TEXTS[1:] + TEXTS[:1]
    scored = generator.translator.score_batch(
        [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(TEXTS)["input_ids"]],
        [tokenizer.convert_ids_to_tokens(ids[:-1]) for ids in tokenizer(targets)["input_ids"]],
    )  # </s> added by it
    for text, target, result in zip(TEXTS, targets, scored):
        labels = tokenizer([target], return_tensors="pt")["input_ids"]
        start = torch.full((1, 1), model.config.decoder_start_token_id)
        with torch.no_grad():
            logits = model(
                **tokenizer([text], return_tensors="pt"), decoder_input_ids=torch.cat([start, labels[:, :-1]], 1)
            ).logits
        expected = logits.log_softmax(-1)[0].gather(-1, labels[0, :, None])[:, 0]
        assert result.tokens == tokenizer.convert_ids_to_tokens(labels[0])
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, rtol=1e-4, atol=1e-4)
    for num_beams in (1, 3):
        expected = ours(model, tokenizer, num_beams)
        assert len({tuple(e) for e in expected}) > 1  # the inputs matter
        got = generator.generate_tokens(TEXTS, num_beams=num_beams, max_new_tokens=LENGTH, min_decoding_length=LENGTH)
        assert got == expected, num_beams


def test_int8_export_holds_int8_weights_and_decodes(tokenizer, tmp_path):
    """int8 rounds the weights (its agreement with fp32 on a trained model is in the README); here: the file
    holds 1-byte matrices, and it decodes."""
    model = build(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fp32 = export_ctranslate2(model, tokenizer, tmp_path / "fp32")
    int8 = export_ctranslate2(model, tokenizer, tmp_path / "int8", quantization="int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left as it was
    matrices = sum(p.numel() for p in model.parameters() if p.dim() == 2)
    saved = (fp32 / "model.bin").stat().st_size - (int8 / "model.bin").stat().st_size
    assert saved >= 0.9 * 3 * matrices  # 4 bytes -> 1 byte per matrix entry (tied matrices stored once or more)
    got = CTranslate2Generator(int8).generate_tokens(TEXTS, max_new_tokens=LENGTH, min_decoding_length=LENGTH)
    assert [len(g) for g in got] == [LENGTH] * len(TEXTS)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (dict(attention_score="additive"), "attention_score='additive'"),
        (dict(attention_normalizer="relu"), "attention_normalizer='relu'"),
        (dict(attention_pattern="window", attention_window=2), "attention_pattern='window'"),
        (dict(attention_pattern="linear"), "attention_pattern='linear'"),
        (dict(position_encoding="rotary"), "position_encoding='rotary'"),
        (dict(position_encoding="none"), "position_encoding='none'"),
    ],
)
def test_variants_ctranslate2_cannot_express_are_refused_by_name(tokenizer, tmp_path, overrides, named):
    model = build(tokenizer, **overrides)
    with pytest.raises(ValueError, match=f"CTranslate2's Transformer cannot express {named}"):
        export_ctranslate2(model, tokenizer, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_only_the_seq2seq_head_exports(tokenizer):
    from scratchformer import ScratchformerForSequenceClassification

    config = ScratchformerConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=0,
        encoder_ffn_dim=16,
        encoder_attention_heads=2,
    )
    with pytest.raises(ValueError, match="exports the seq2seq head ScratchformerForConditionalGeneration only"):
        check_expressible(ScratchformerForSequenceClassification(config))


def test_cli_export_and_predict_with_ctranslate2(tokenizer, tmp_path, capsys):
    model = build(tokenizer)
    model.save_pretrained(tmp_path / "run")
    tokenizer.save_pretrained(tmp_path / "run")
    assert cli.main(["predict", str(tmp_path / "run"), *TEXTS[:2]]) == 0
    with_torch = capsys.readouterr().out
    assert cli.main(["export", str(tmp_path / "run"), str(tmp_path / "ct2"), "--format", "ctranslate2"]) == 0
    assert "model.bin" in capsys.readouterr().out
    for folder in (tmp_path / "ct2", tmp_path / "run"):  # the export, or the saved run converted on the fly
        assert cli.main(["predict", str(folder), *TEXTS[:2], "--engine", "ctranslate2"]) == 0
        assert capsys.readouterr().out == with_torch
    with pytest.raises(SystemExit, match="exists and is not an empty folder"):
        cli.main(["export", str(tmp_path / "run"), str(tmp_path / "ct2"), "--format", "ctranslate2"])
