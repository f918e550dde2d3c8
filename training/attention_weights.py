"""Attention weights, as the model returns them with ``output_attentions=True``: kind -> layer -> (heads,
queries, keys).

Torch only (no other part of this package): `scratchformer attention` draws these weights (attention_maps.py)
and the demo explores them (demo.py); an exported folder ships this file beside its app.py.

Kinds: encoder self-attention (source x source), decoder self-attention (target x target, causal) and
cross-attention (target queries x source keys); the classification heads have only the first. For a seq2seq
model the target is the model's own greedy output, unless ``target`` gives a reference (teacher forcing) or
``decoder_input_ids`` an output already generated.
"""

import contextlib
import inspect
from dataclasses import dataclass, field

import torch

KINDS = {
    "encoder": "Encoder self-attention",
    "decoder": "Decoder self-attention (causal)",
    "cross": "Cross-attention (target queries, source keys)",
}


@dataclass
class AttentionMaps:
    """Attention weights of one text: kind -> one (heads, queries, keys) tensor per layer."""

    source_tokens: list[str]
    target_tokens: list[str] = field(default_factory=list)
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def axes(self, kind: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of a kind."""
        queries = self.source_tokens if kind == "encoder" else self.target_tokens
        keys = self.target_tokens if kind == "decoder" else self.source_tokens
        return queries, keys

    def panels(self) -> list[dict]:
        """One entry per drawn panel: kind, layer, head (1-based), number of queries and keys."""
        return [
            {"kind": kind, "layer": layer + 1, "head": head + 1, "queries": w.shape[1], "keys": w.shape[2]}
            for kind, layers in self.maps.items()
            for layer, w in enumerate(layers)
            for head in range(w.shape[0])
        ]


@contextlib.contextmanager
def _inspectable(model):
    """Eval mode and the eager kernel (SDPA returns no weights) for the duration; the model is restored after."""
    training, implementation = model.training, model.config._attn_implementation
    model.eval()
    if implementation and implementation != "eager":
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if implementation and implementation != "eager":
            model.set_attn_implementation(implementation)
        model.train(training)


@torch.no_grad()
def compute_attention(
    model,
    tokenizer,
    text: str,
    target: str | None = None,
    max_new_tokens: int = 24,
    max_tokens: int = 48,
    decoder_input_ids: torch.Tensor | None = None,
) -> AttentionMaps:
    """Run `text` through the model with ``output_attentions=True`` and collect every layer's weights.
    Seq2seq: the decoder reads `decoder_input_ids` (1, n) when given (e.g. what generate() returned), else
    <s> + `target`, else the greedy output."""
    if not text.strip():
        raise ValueError("attention maps need a non-empty text")
    with _inspectable(model):
        return _compute(model, tokenizer, text, target, max_new_tokens, max_tokens, decoder_input_ids)


def _compute(model, tokenizer, text, target, max_new_tokens, max_tokens, decoder_ids) -> AttentionMaps:
    enc = tokenizer(text, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"].to(model.device), "attention_mask": enc["attention_mask"].to(model.device)}
    n = inputs["input_ids"].shape[1]
    if n > max_tokens:
        raise ValueError(
            f"the text has {n} tokens; at most max_tokens={max_tokens} fit in a readable picture "
            "(pass a shorter text or a larger --max-tokens)"
        )
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    result = AttentionMaps(source_tokens=tokens)
    if not has_decoder(model):  # classification heads: encoder only
        out = model(**inputs, output_attentions=True)
        result.maps["encoder"] = _first(out.attentions, "attentions", model)
        return result
    start = model.config.decoder_start_token_id
    if decoder_ids is not None:
        decoder_ids = decoder_ids.to(model.device)
    elif target is not None:
        target_ids = tokenizer(target)["input_ids"]
        decoder_ids = torch.tensor([[start] + target_ids[:-1] if target_ids else [start]], device=model.device)
    elif hasattr(model, "generate") and model.can_generate():
        decoder_ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    else:  # the bare encoder-decoder cannot generate: show the decoder on the source tokens
        decoder_ids = torch.cat([torch.full((1, 1), start, device=model.device), inputs["input_ids"][:, :-1]], dim=1)
    out = model(**inputs, decoder_input_ids=decoder_ids, output_attentions=True)
    result.target_tokens = tokenizer.convert_ids_to_tokens(decoder_ids[0].tolist())
    result.maps["encoder"] = _first(out.encoder_attentions, "encoder_attentions", model)
    result.maps["decoder"] = _first(out.decoder_attentions, "decoder_attentions", model)
    result.maps["cross"] = _first(out.cross_attentions, "cross_attentions", model)
    return result


def _first(layers, name, model) -> list[torch.Tensor]:
    """(heads, queries, keys) of the single text, per layer; an error if the model returned no weights."""
    if layers is None or any(w is None for w in layers):
        raise ValueError(
            f"{type(model).__name__} returned no {name} with output_attentions=True "
            f"(attn_implementation={model.config._attn_implementation!r})"
        )
    return [w[0].float().cpu() for w in layers]


def has_decoder(model) -> bool:
    """The seq2seq head and the bare model run a decoder; the classification heads are encoder-only."""
    return "decoder_input_ids" in inspect.signature(model.forward).parameters
