"""The demo: a Gradio app for a trained folder or a Hub repo, with an interactive attention explorer.

    scratchformer demo outputs/g2p [--port 7860]      (pip install "scratchformer[demo]")
    python app.py                                      (in an exported folder: what a Gradio Space runs)

The app follows the folder's head (config.json `architectures`, ``HEADS``): the seq2seq model (G2P,
translation) generates text, with beam size and sampling controls; sequence classification shows every
label's probability; token classification highlights a tag per word; a masked-LM fills the masks of a text.
The attention explorer shows the
model's own ``output_attentions`` (attention_weights.py) on the text just run, for a seq2seq model on the
output just generated: pick the kind (encoder self-, decoder self- or cross-attention), the layer and the head;
hover a query token to see its weights on the keys; the overview draws every head of the layer side by side.
The HTML holds the weights it shows (the explorer's ``data-payload``); a little JavaScript repaints on hover.

This file imports gradio, torch, transformers and two torch-only modules of its folder, no other part of the
package: the Hub export ships it as app.py, beside attention_weights.py and predictions.py, so that an exported
repo runs as a Space with the model code it ships (trust_remote_code=True).
"""

import argparse
import html
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)
from transformers.utils import cached_file

if __package__:  # scratchformer.training.demo
    from .attention_weights import KINDS, AttentionMaps, compute_attention, has_decoder
    from .predictions import fill_masks, generate, label_probabilities, word_tags
else:  # app.py of an exported folder, beside copies of the two modules (however it is started)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from attention_weights import KINDS, AttentionMaps, compute_attention, has_decoder
    from predictions import fill_masks, generate, label_probabilities, word_tags

logger = logging.getLogger(__name__)

EXPLORER_TOKENS = 64  # the longest text (in tokens) whose attention the explorer draws
MAX_BEAMS = 8
MAX_LOADED = 4  # models kept in memory by the model box
DEFAULT_PORT = 7860


class DemoError(ValueError):
    """Something the user can change (the model named, the text): the app shows it as a message."""


# ------------------------------------------------------------------------------------------------ the heads
def generated_text(model, tokenizer, text: str, generation: dict):
    texts, ids = generate(model, tokenizer, [text], **generation)
    return texts[0], ids[:1]


def label_scores(model, tokenizer, text: str, generation: dict):
    return label_probabilities(model, tokenizer, [text])[0], None


def highlighted_tags(model, tokenizer, text: str, generation: dict):
    """(word, tag) pairs with a space between the words, as gr.HighlightedText shows them."""
    pairs = word_tags(model, tokenizer, [text])[0]
    spaced = [item for pair in pairs for item in ((" ", None), pair)][1:]
    return spaced, None


def filled_masks(model, tokenizer, text: str, generation: dict):
    return fill_masks(model, tokenizer, [text])[0], None


@dataclass(frozen=True)
class Head:
    """How the app serves one head class."""

    auto_class: type
    output: str  # the output component that shows the result: a key of Demo.outputs
    predict: Callable  # (model, tokenizer, text, generation) -> (the output's value, generated ids or None)
    description: str
    generates: bool = False  # the decoding controls apply


HEADS = {
    "ScratchformerForConditionalGeneration": Head(
        AutoModelForSeq2SeqLM, "text", generated_text, "text in, generated text out", generates=True
    ),
    "ScratchformerForSequenceClassification": Head(
        AutoModelForSequenceClassification, "labels", label_scores, "one label per text, with every label's probability"
    ),
    "ScratchformerForTokenClassification": Head(
        AutoModelForTokenClassification, "tags", highlighted_tags, "one tag per word"
    ),
    "ScratchformerForMaskedLM": Head(
        AutoModelForMaskedLM,
        "text",
        filled_masks,
        "text with mask tokens in, each filled with the model's first choice",
    ),
}


# ------------------------------------------------------------------------------------------------- loading
@dataclass
class Served:
    """A loaded model and what the app says about it."""

    source: str  # the folder or Hub id, as given
    model: object
    tokenizer: object
    head: Head
    task: str  # the folder's task (training_args.json or card_info.json), else its pipeline tag, else the head
    description: str
    example: str

    @property
    def limit(self) -> int:
        """The longest input (and output) in tokens: the positions the model covers."""
        return self.model.config.max_position_embeddings

    def kinds(self) -> list[str]:
        return [kind for kind in KINDS if kind == "encoder" or has_decoder(self.model)]


def find_file(source: str, name: str) -> str | None:
    """The local path of a file of the folder or Hub repo (downloaded); None when it has none."""
    try:
        return cached_file(
            source, name, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
        )
    except (OSError, ValueError):
        return None


def read_json(source: str, name: str) -> dict:
    """A JSON file of the folder or Hub repo; {} when it has none."""
    path = find_file(source, name)
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}


def load(source, trust_remote_code: bool = False) -> Served:
    """A local folder or a Hub id, loaded as ``from_pretrained`` loads it (`trust_remote_code`: the repo's own
    model code); the eager kernel, which returns attention weights."""
    source = str(source).strip()
    if not source:
        raise DemoError("Name a model: a folder or a Hub repo id.")
    folder = Path(source).expanduser()
    if folder.exists() and not (folder / "config.json").is_file():
        raise DemoError(
            f"{source!r} is not a model folder: it has no config.json (pass a folder written by "
            "`scratchformer train`, save_pretrained or the Hub export, or a Hub repo id)."
        )
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        architecture = (config.architectures or ["(none)"])[0]
        if architecture not in HEADS:
            raise DemoError(f"{source!r} holds a {architecture}; the demo serves {', '.join(HEADS)}.")
        if getattr(config, "input_features_dim", None):
            raise DemoError(f"{source!r} reads vectors (input_features_dim), not text: the demo serves text models.")
        if find_file(source, "tokenizer_config.json") is None:
            raise DemoError(f"{source!r} has no tokenizer (tokenizer_config.json): save the tokenizer with the model.")
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        head = HEADS[architecture]
        model = head.auto_class.from_pretrained(
            source, trust_remote_code=trust_remote_code, attn_implementation="eager"
        ).eval()
    except DemoError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise DemoError(f"Cannot load {source!r}: {error}") from None
    training = read_json(source, "training_args.json").get("DataArguments", {})
    card = read_json(source, "card_info.json")
    return Served(
        source=source,
        model=model,
        tokenizer=tokenizer,
        head=head,
        task=training.get("task") or card.get("task") or card.get("pipeline_tag") or architecture,
        description=card.get("description") or head.description,
        example=card.get("example_text") or "",
    )


class Models:
    """The models an app serves, by source: the first, and those the model box loads (the latest few; never
    with remote code: the box loads weights into the installed package's classes)."""

    def __init__(self, first: Served):
        self.first = first
        self.loaded = {first.source: first}
        self.lock = threading.Lock()

    def get(self, source: str) -> Served:
        with self.lock:
            if source not in self.loaded:
                served = load(source)
                others = [s for s in self.loaded if s != self.first.source]
                if len(others) >= MAX_LOADED - 1:
                    del self.loaded[others[0]]
                self.loaded[served.source] = served
            return self.loaded[source]


# ------------------------------------------------------------------------------------------------ running
def check_text(served: Served, text: str | None) -> str:
    """The text, stripped; an error for an empty one or one longer than the model reads."""
    text = (text or "").strip()
    if not text:
        raise DemoError("Type a text first.")
    n = len(served.tokenizer(text)["input_ids"])
    if n > served.limit:
        raise DemoError(
            f"The text has {n} tokens; this model reads at most {served.limit} (its max_position_embeddings). "
            "Shorten it."
        )
    return text


def generation_settings(served: Served, num_beams=1, do_sample=False, temperature=1.0, top_p=1.0, max_new_tokens=None):
    """generate()'s arguments from the controls (the sampling ones only when sampling)."""
    if not served.head.generates:
        return {}
    settings = {
        "num_beams": int(num_beams),
        "do_sample": bool(do_sample),
        "max_new_tokens": min(int(max_new_tokens or decoding_defaults(served)[1]), served.limit - 1),
    }
    if do_sample:
        settings |= {"temperature": float(temperature), "top_p": float(top_p)}
    return settings


def decoding_defaults(served: Served) -> tuple[int, int]:
    """(beam size, longest output) from the model's generation config (a head that does not generate has none)."""
    config = getattr(served.model, "generation_config", None)
    beams, new_tokens = getattr(config, "num_beams", None) or 1, getattr(config, "max_new_tokens", None) or 64
    return beams, min(new_tokens, served.limit - 1)


def predict(served: Served, text: str, generation: dict | None = None):
    """(the output's value, the attention maps on it, or a message saying why the explorer draws none)."""
    text = check_text(served, text)
    value, decoder_ids = served.head.predict(served.model, served.tokenizer, text, generation or {})
    n = len(served.tokenizer(text)["input_ids"])
    if n > EXPLORER_TOKENS:
        return value, f"The explorer draws texts of up to {EXPLORER_TOKENS} tokens; this one has {n}."
    maps = compute_attention(
        served.model, served.tokenizer, text, max_tokens=EXPLORER_TOKENS, decoder_input_ids=decoder_ids
    )
    return value, maps


# ---------------------------------------------------------------------------------------- the explorer
def rounded(weights: torch.Tensor) -> list:
    return [rounded(w) for w in weights] if weights.dim() else round(float(weights), 6)


def payload(maps: AttentionMaps, kind: str, layer: int, head: int) -> dict:
    """What the explorer shows (layer and head 1-based): the tokens, the chosen head's weights (queries x keys),
    and every head's of that layer for the overview, rounded to 6 decimals."""
    weights = maps.maps[kind][layer - 1]  # (heads, queries, keys)
    queries, keys = maps.axes(kind)
    return {
        "kind": kind,
        "layer": layer,
        "head": head,
        "layers": len(maps.maps[kind]),
        "heads": weights.shape[0],
        "queries": queries,
        "keys": keys,
        "weights": rounded(weights[head - 1]),
        "overview": rounded(weights),
        "vmax": round(float(weights.max()), 6),
    }


def shade(weight: float, vmax: float) -> str:
    """The colour strength of a weight: its share of the layer's largest one."""
    return f"{weight / vmax if vmax > 0 else 0.0:.3f}"


def explorer_html(maps: AttentionMaps, kind: str, layer: int, head: int) -> str:
    """The explorer for one (kind, layer, head), painted for the first query; HOVER_JS repaints on hover."""
    data = payload(maps, kind, layer, head)
    vmax, weights, esc = data["vmax"], data["weights"], html.escape
    queries = "".join(
        f'<span class="sf-token sf-query{" sf-active" if i == 0 else ""}" data-i="{i}">{esc(t)}</span>'
        for i, t in enumerate(data["queries"])
    )
    keys = "".join(
        f'<span class="sf-token sf-key" data-j="{j}" data-weight="{w:.4f}" style="--w:{shade(w, vmax)}">'
        f"<b>{esc(t)}</b><small>{w:.2f}</small></span>"
        for j, (t, w) in enumerate(zip(data["keys"], weights[0]))
    )
    header = "".join(f"<th>{esc(t)}</th>" for t in data["keys"])
    rows = "".join(
        f'<tr data-i="{i}"{" class=sf-active" if i == 0 else ""}><th>{esc(q)}</th>'
        + "".join(
            f'<td style="--w:{shade(w, vmax)}" data-weight="{w:.4f}" title="{esc(q)} → {esc(k)}: {w:.3f}"></td>'
            for k, w in zip(data["keys"], row)
        )
        + "</tr>"
        for i, (q, row) in enumerate(zip(data["queries"], weights))
    )
    thumbs = "".join(thumbnail(data, h) for h in range(data["heads"]))
    return (
        f'<div class="sf-explorer" data-kind="{kind}" data-layer="{layer}" data-head="{head}" data-query="0" '
        f'data-payload="{esc(json.dumps(data))}">'
        f'<p class="sf-caption"><b>{esc(KINDS[kind])}</b>, layer {layer} of {data["layers"]}, head {head} of '
        f"{data['heads']}. Hover a query token (or a row) to see its weights on the keys.</p>"
        f'<div class="sf-view"><div class="sf-column"><i>queries</i>{queries}</div>'
        f'<div class="sf-column sf-keys"><i>keys</i>{keys}</div>'
        f'<table class="sf-matrix"><thead><tr><th></th>{header}</tr></thead><tbody>{rows}</tbody></table></div>'
        f'<p class="sf-caption">Every head of layer {layer} (queries down, keys across):</p>'
        f'<div class="sf-overview">{thumbs}</div></div>'
    )


def thumbnail(data: dict, h: int) -> str:
    """A small heat map of head h (0-based) of the payload's layer; the hovered query's row is outlined."""
    n_keys, vmax = len(data["keys"]), data["vmax"]
    cells = "".join(
        f'<rect x="{j}" y="{i}" width="1" height="1" fill-opacity="{shade(w, vmax)}"/>'
        for i, row in enumerate(data["overview"][h])
        for j, w in enumerate(row)
    )
    selected = " sf-selected" if h + 1 == data["head"] else ""
    return (
        f'<figure class="sf-thumb{selected}" data-head="{h + 1}">'
        f'<svg viewBox="0 0 {n_keys} {len(data["queries"])}" preserveAspectRatio="none">{cells}'
        f'<rect class="sf-row" x="0" y="0" width="{n_keys}" height="1"/></svg>'
        f"<figcaption>head {h + 1}</figcaption></figure>"
    )


EMPTY_EXPLORER = '<p class="sf-caption">Run a text to see its attention.</p>'

HOVER_JS = """
const parsed = new WeakMap();  // explorer element -> {text, data}: each payload parsed once
const payloadOf = (root) => {
  const text = root.dataset.payload;
  if (parsed.get(root)?.text !== text) parsed.set(root, {text, data: JSON.parse(text)});
  return parsed.get(root).data;
};
const paint = (root, i) => {
  const data = payloadOf(root);
  const row = data.weights[i];
  const vmax = data.vmax > 0 ? data.vmax : 1;
  root.dataset.query = i;
  root.querySelectorAll('.sf-query').forEach(q => q.classList.toggle('sf-active', Number(q.dataset.i) === i));
  root.querySelectorAll('.sf-matrix tbody tr').forEach(r => r.classList.toggle('sf-active', Number(r.dataset.i) === i));
  root.querySelectorAll('.sf-key').forEach(key => {
    const w = row[Number(key.dataset.j)];
    key.dataset.weight = w.toFixed(4);
    key.style.setProperty('--w', (w / vmax).toFixed(3));
    key.querySelector('small').textContent = w.toFixed(2);
  });
  root.querySelectorAll('.sf-thumb .sf-row').forEach(r => r.setAttribute('y', i));
};
element.addEventListener('mouseover', (event) => {
  const target = event.target.closest('[data-i]');
  const root = target && target.closest('.sf-explorer');
  if (root) paint(root, Number(target.dataset.i));
});
"""

EXPLORER_CSS = """
.sf-explorer { font-size: 14px; line-height: 1.4; }
.sf-caption { margin: 6px 0; }
.sf-view { display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }
.sf-column { display: flex; flex-direction: column; gap: 3px; min-width: 80px; }
.sf-token { font-family: monospace; padding: 1px 6px; border-radius: 4px; white-space: nowrap; cursor: default; }
.sf-query.sf-active { outline: 2px solid #f97316; }
.sf-key { display: flex; justify-content: space-between; gap: 10px; background: rgb(37 99 235 / calc(var(--w) * 65%)); }
.sf-key small { opacity: 0.75; }
.sf-matrix { border-collapse: collapse; }
.sf-matrix th { font: 11px monospace; padding: 0 4px; text-align: right; white-space: nowrap; }
.sf-matrix thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; padding: 4px 0; }
.sf-matrix td { width: 16px; height: 16px; padding: 0; border: 1px solid rgb(128 128 128 / 0.2);
  background: rgb(37 99 235 / calc(var(--w) * 100%)); }
.sf-matrix tr.sf-active th { color: #f97316; font-weight: bold; }
.sf-matrix tr.sf-active td { border-top: 2px solid #f97316; border-bottom: 2px solid #f97316; }
.sf-overview { display: flex; flex-wrap: wrap; gap: 14px; }
.sf-thumb { margin: 0; text-align: center; font-size: 12px; }
.sf-thumb svg { width: 120px; height: 120px; border: 1px solid rgb(128 128 128 / 0.4); display: block; }
.sf-thumb.sf-selected svg { outline: 3px solid #f97316; }
.sf-thumb rect { fill: #2563eb; }
.sf-thumb rect.sf-row { fill: none; stroke: #f97316; stroke-width: 0.12; }
"""


# --------------------------------------------------------------------------------------------------- the app
def heading(served: Served) -> str:
    params = served.model.num_parameters()
    return (
        f"# scratchformer demo: {served.task}\n{served.description}\n\n"
        f"`{served.source}`: {type(served.model).__name__}, {params:,} parameters, "
        f"inputs up to {served.limit} tokens."
    )


def choices(n: int) -> list[str]:
    return [str(i) for i in range(1, n + 1)]


class Demo:
    """The app's components and its handlers, each returning {component: value or gr.update(...)}."""

    def __init__(self, first: Served, model_picker: bool = True):
        self.models = Models(first)
        self.model_picker = model_picker

    # -------------------------------------------------------------------------------------------- layout
    def layout(self) -> None:
        first = self.models.first
        self.source = gr.State(first.source)
        self.maps = gr.State(None)
        self.title = gr.Markdown(heading(first), elem_id="sf-title")
        with gr.Row(visible=self.model_picker):
            self.picker = gr.Textbox(
                first.source, label="Model: a folder or a Hub repo id", scale=4, elem_id="sf-model"
            )
            self.load_button = gr.Button("Load", scale=1, elem_id="sf-load")
        with gr.Row():
            with gr.Column():
                self.text = gr.Textbox(first.example, label="Text", lines=2, elem_id="sf-text")
                self.run_button = gr.Button("Run", variant="primary", elem_id="sf-run")
                with gr.Accordion("Decoding", visible=first.head.generates) as self.decoding:
                    beams, new_tokens = decoding_defaults(first)
                    self.beams = gr.Slider(1, MAX_BEAMS, beams, step=1, label="Beam size")
                    self.sample = gr.Checkbox(False, label="Sample (instead of the most likely output)")
                    self.temperature = gr.Slider(0.1, 2.0, 1.0, step=0.05, label="Temperature (sampling)")
                    self.top_p = gr.Slider(0.05, 1.0, 1.0, step=0.05, label="Top-p (sampling)")
                    self.max_new = gr.Slider(1, first.limit - 1, new_tokens, step=1, label="Longest output (tokens)")
            with gr.Column():
                shown = {name: name == first.head.output for name in ("text", "labels", "tags")}
                self.outputs = {
                    "text": gr.Textbox(label="Output", interactive=False, visible=shown["text"], elem_id="sf-output"),
                    "labels": gr.Label(label="Labels", visible=shown["labels"], elem_id="sf-labels"),
                    "tags": gr.HighlightedText(label="Tags", visible=shown["tags"], elem_id="sf-tags"),
                }
                self.message = gr.Markdown("", elem_id="sf-message")
        gr.Markdown(
            "## Attention explorer\nThe model's own attention weights (`output_attentions`) on the text just run"
            " (seq2seq: the decoder reads the output just generated). Pick the kind, the layer and the head."
        )
        with gr.Row():
            self.kind = gr.Radio(
                [(KINDS[k], k) for k in first.kinds()], value="encoder", label="Attention", elem_id="sf-kind"
            )
            self.layer = gr.Radio(["1"], value="1", label="Layer", elem_id="sf-layer")
            self.head = gr.Radio(["1"], value="1", label="Head", elem_id="sf-head")
        self.explorer = gr.HTML(
            EMPTY_EXPLORER,
            js_on_load=HOVER_JS,
            css_template=EXPLORER_CSS,
            apply_default_css=False,
            elem_id="sf-attention",
        )

    def wire(self) -> None:
        controls = [self.beams, self.sample, self.temperature, self.top_p, self.max_new]
        run_inputs = [self.source, self.text, *controls, self.kind, self.layer, self.head]
        run_outputs = [*self.outputs.values(), self.message, self.maps, self.kind, self.layer, self.head, self.explorer]
        for event in (self.run_button.click, self.text.submit):
            event(self.run, run_inputs, run_outputs)
        for control in (self.kind, self.layer, self.head):
            control.input(
                self.explore, [self.maps, self.kind, self.layer, self.head], [self.layer, self.head, self.explorer]
            )
        if self.model_picker:  # a Space has none: visitors load no other code or folders
            self.load_button.click(
                self.load_model,
                [self.picker],
                [self.source, self.title, self.text, self.decoding, self.beams, self.max_new, *self.outputs.values()]
                + [self.message]
                + [self.maps, self.kind, self.layer, self.head, self.explorer],
            )

    # ---------------------------------------------------------------------------------------- handlers
    def run(self, source, text, num_beams, do_sample, temperature, top_p, max_new_tokens, kind, layer, head) -> dict:
        """The output for the text, and the explorer on its attention (the kind, layer and head kept if they exist)."""
        try:
            served = self.models.get(source)
            generation = generation_settings(served, num_beams, do_sample, temperature, top_p, max_new_tokens)
            value, maps = predict(served, text, generation)
        except Exception as error:  # the page shows a message; the server keeps serving
            return {self.message: message(error)}
        result = {self.outputs[served.head.output]: value, self.message: ""}
        if isinstance(maps, str):  # too long to draw
            return result | {self.maps: None, self.explorer: f'<p class="sf-caption">{html.escape(maps)}</p>'}
        return result | {self.maps: maps} | self.select(maps, kind, layer, head, update_kind=True)

    def explore(self, maps, kind, layer, head) -> dict:
        """The explorer on another kind, layer or head (no model call)."""
        if maps is None:
            return {self.explorer: EMPTY_EXPLORER}
        return self.select(maps, kind, layer, head)

    def select(self, maps: AttentionMaps, kind, layer, head, update_kind=False) -> dict:
        """Clamp (kind, layer, head) to what the maps hold; update the radios and the explorer."""
        kind = kind if kind in maps.maps else next(iter(maps.maps))
        layers = maps.maps[kind]
        layer = min(int(layer or 1), len(layers))
        head = min(int(head or 1), layers[layer - 1].shape[0])
        result = {
            self.layer: gr.update(choices=choices(len(layers)), value=str(layer)),
            self.head: gr.update(choices=choices(layers[layer - 1].shape[0]), value=str(head)),
            self.explorer: explorer_html(maps, kind, layer, head),
        }
        if update_kind:
            result[self.kind] = gr.update(choices=[(KINDS[k], k) for k in maps.maps], value=kind)
        return result

    def load_model(self, source) -> dict:
        """Serve another folder or Hub repo; a message when it is no model."""
        try:
            served = self.models.get(str(source).strip())
        except Exception as error:  # the page shows a message; the server keeps serving
            return {self.message: message(error)}
        outputs = {
            component: gr.update(visible=name == served.head.output, value=None)
            for name, component in self.outputs.items()
        }
        return outputs | {
            self.source: served.source,
            self.title: heading(served),
            self.text: served.example,
            self.decoding: gr.update(visible=served.head.generates),
            self.beams: gr.update(value=decoding_defaults(served)[0]),
            self.max_new: gr.update(maximum=served.limit - 1, value=decoding_defaults(served)[1]),
            self.message: f"Loaded `{served.source}`.",
            self.maps: None,
            self.kind: gr.update(choices=[(KINDS[k], k) for k in served.kinds()], value="encoder"),
            self.layer: gr.update(choices=["1"], value="1"),
            self.head: gr.update(choices=["1"], value="1"),
            self.explorer: EMPTY_EXPLORER,
        }


def message(error: Exception) -> str:
    """The UI's words for an error: the user's to fix (DemoError), else its type and text (logged with its trace)."""
    if isinstance(error, DemoError):
        return f"**{error}**"
    logger.exception("demo handler failed")
    return f"**Something went wrong: {type(error).__name__}: {error}** (the server log has the details)"


def build_app(model_or_dir, trust_remote_code: bool = False, model_picker: bool = True) -> gr.Blocks:
    """The Gradio app serving a folder, a Hub id or a loaded `Served` (`trust_remote_code`: with the repo's own
    model code); `model_picker`: a box to load other folders and repos. Raises DemoError when the first model
    cannot be served."""
    first = model_or_dir if isinstance(model_or_dir, Served) else load(model_or_dir, trust_remote_code)
    demo = Demo(first, model_picker)
    with gr.Blocks(title=f"scratchformer demo: {first.task}", analytics_enabled=False) as app:
        demo.layout()
        demo.wire()
    app.scratchformer = demo  # the handlers and components, for tests and tools
    return app


def launch(app: gr.Blocks, host: str | None = None, port: int | None = None, **kwargs):
    """Serve the app: on 127.0.0.1 unless `host` (or GRADIO_SERVER_NAME, which a Space sets) says otherwise."""
    return app.launch(server_name=host, server_port=port, show_error=False, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """`python app.py` in an exported folder (a Space runs it): the folder's own model and model code."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model", nargs="?", default=os.environ.get("SCRATCHFORMER_MODEL", str(Path(__file__).parent)))
    parser.add_argument("--port", type=int, default=None, help=f"default: GRADIO_SERVER_PORT or {DEFAULT_PORT}")
    args = parser.parse_args(argv)
    try:
        app = build_app(args.model, trust_remote_code=True, model_picker=False)
    except DemoError as error:
        raise SystemExit(f"demo: {error}") from None
    launch(app, port=args.port)


if __name__ == "__main__":
    main()
