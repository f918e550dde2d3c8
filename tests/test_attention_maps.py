"""`scratchformer attention MODEL_DIR "text"`: a PNG grid of every layer's and head's attention weights."""

import json

import pytest
import torch
from PIL import Image

from scratchformer.training import cli
from scratchformer.training.attention_maps import DPI, compute_attention, figure_size, save_png

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import TEXTS, build_model, build_tokenizer  # noqa: E402

TEXT = TEXTS[0]  # "the dog did not cross the street": 7 words + </s>


def saved(tmp_path, head, **overrides):
    """A saved model folder (save_pretrained + tokenizer), as training leaves it."""
    folder = tmp_path / head
    model = build_model(head, **overrides)
    model.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return model, folder


def read_png(path):
    image = Image.open(path)
    image.load()
    return image, json.loads(image.info["Panels"])


def test_cli_draws_every_layer_and_head_of_a_seq2seq(tmp_path, capsys):
    model, folder = saved(tmp_path, "seq2seq")
    out = tmp_path / "pictures" / "attention.png"
    assert cli.main(["attention", str(folder), TEXT, "-o", str(out), "--max-new-tokens", "6"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    image, panels = read_png(out)
    config = model.config
    grid = {
        "encoder": (config.encoder_layers, config.encoder_attention_heads),
        "decoder": (config.decoder_layers, config.decoder_attention_heads),
        "cross": (config.decoder_layers, config.decoder_attention_heads),
    }
    expected = [
        (kind, layer + 1, head + 1)
        for kind, (layers, heads) in grid.items()
        for layer in range(layers)
        for head in range(heads)
    ]
    assert [(p["kind"], p["layer"], p["head"]) for p in panels] == expected  # 2*4 + 2*4 + 2*4 = 24 panels
    n_source, n_target = len(TEXT.split()) + 1, 1 + 6  # <s> + 6 greedy tokens (this model never stops early)
    shapes = {p["kind"]: (p["queries"], p["keys"]) for p in panels}
    assert shapes == {"encoder": (n_source, n_source), "decoder": (n_target, n_target), "cross": (n_target, n_source)}

    maps = compute_attention(model, build_tokenizer(), TEXT, max_new_tokens=6)  # the same maps, in memory
    width, height = figure_size(maps)
    assert image.format == "PNG" and image.size == (round(width * DPI), round(height * DPI))
    pixels = image.convert("RGB")
    assert len(pixels.getcolors(maxcolors=1 << 20)) > 200  # heat maps and text, not a blank canvas


def test_weights_are_the_models_attentions():
    model, tokenizer = build_model("seq2seq"), build_tokenizer()
    maps = compute_attention(model, tokenizer, TEXT, target="the dog did not")
    assert maps.target_tokens == ["<s>", "the", "dog", "did", "not"]  # teacher forcing: <s> + target
    assert maps.source_tokens == TEXT.split() + ["</s>"]
    decoder_input_ids = torch.tensor([[1] + tokenizer("the dog did not")["input_ids"][:-1]])
    with torch.no_grad():
        out = model(**tokenizer(TEXT, return_tensors="pt"), decoder_input_ids=decoder_input_ids, output_attentions=True)
    for kind, reference in (
        ("encoder", out.encoder_attentions),
        ("decoder", out.decoder_attentions),
        ("cross", out.cross_attentions),
    ):
        for layer, weights in enumerate(maps.maps[kind]):
            torch.testing.assert_close(weights, reference[layer][0])
    for weights in maps.maps["encoder"] + maps.maps["cross"]:  # softmax over keys
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert torch.all(maps.maps["decoder"][0].triu(1) == 0)  # causal


def test_classification_heads_draw_the_encoder(tmp_path):
    model, folder = saved(tmp_path, "token_cls")
    out = tmp_path / "token_cls.png"
    assert cli.main(["attention", str(folder), TEXT, "-o", str(out)]) == 0
    _, panels = read_png(out)
    assert {p["kind"] for p in panels} == {"encoder"}
    assert len(panels) == model.config.encoder_layers * model.config.encoder_attention_heads


def test_linear_attention_draws_its_implied_weights(tmp_path):
    model = build_model("seq_cls", attention_pattern="linear")
    maps = compute_attention(model, build_tokenizer(), TEXT)
    _, panels = read_png(save_png(maps, tmp_path / "linear.png"))
    assert len(panels) == model.config.encoder_layers * model.config.encoder_attention_heads
    assert all(torch.all(w >= 0) for w in maps.maps["encoder"])  # phi(x) = elu(x) + 1 > 0
    for weights in maps.maps["encoder"]:  # phi(q) phi(k)^T / (sum_j phi(q) phi(k_j)^T + eps): rows sum to ~1
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-4, rtol=0)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        cli.main(["attention", str(tmp_path / "missing"), TEXT])
    folder = tmp_path / "no-tokenizer"
    build_model("seq_cls").save_pretrained(folder)
    with pytest.raises(SystemExit, match="no tokenizer files"):
        cli.main(["attention", str(folder), TEXT])
    model, tokenizer = build_model("seq_cls"), build_tokenizer()
    with pytest.raises(ValueError, match="at most max_tokens=4"):
        compute_attention(model, tokenizer, TEXT, max_tokens=4)
    with pytest.raises(ValueError, match="non-empty text"):
        compute_attention(model, tokenizer, "  ")
    with pytest.raises(ValueError, match="use a .png name"):
        save_png(compute_attention(model, tokenizer, TEXT), tmp_path / "attention.jpg")
