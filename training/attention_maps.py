"""Attention pictures: one heat map per layer and head, tokens on the axes (queries down, keys across).

    scratchformer attention MODEL_DIR "the dog crossed the street because it was tired" -o attention.png

Rows are grouped by kind: encoder self-attention (source x source), decoder self-attention
(target x target, causal) and cross-attention (target queries x source keys); the classification
heads have only the first. Panel (layer l, head h) shows the weights A'[i, j] of query i on key j,
so the notes' "it -> dog / street" example is the row of "it". For a seq2seq model the target is
the model's own greedy output unless ``target`` gives a reference (teacher forcing).

The weights come from attention_weights.py (``compute_attention``). Drawn with matplotlib's Agg canvas (no display, no pyplot state). The PNG's "Panels" text chunk
records the grid as JSON, so tests and tools can check the picture without reading pixels.
"""

import argparse
import json
from pathlib import Path

from .attention_weights import KINDS, AttentionMaps, compute_attention
from .inference import load_saved

PANEL_INCHES = 2.0  # smallest panel side
TOKEN_INCHES = 0.12  # room per token along an axis
CHAR_INCHES = 0.06  # width of one label character at TOKEN_FONT
TOKEN_FONT = 7
GAP_INCHES = 0.2  # between panels
COLORBAR_INCHES = 1.0
TITLE_INCHES = 0.5
DPI = 100


def panel_inches(maps: AttentionMaps) -> float:
    """Side of one panel: room for TOKEN_INCHES per token on the longest axis, at least PANEL_INCHES."""
    return max(PANEL_INCHES, TOKEN_INCHES * max(len(maps.source_tokens), len(maps.target_tokens)))


def label_inches(maps: AttentionMaps) -> float:
    """Room for the longest token label (the left margin, and under each section's bottom row)."""
    longest = max(len(token) for token in maps.source_tokens + maps.target_tokens)
    return 0.25 + CHAR_INCHES * min(longest, 24)


def layout(maps: AttentionMaps) -> dict:
    """Every size of the figure in inches: a function of the grid and the tokens only."""
    kinds = [k for k in KINDS if maps.maps.get(k)]
    cols = max(w.shape[0] for k in kinds for w in maps.maps[k])
    side, labels = panel_inches(maps), label_inches(maps)
    sections = [len(maps.maps[k]) * (side + GAP_INCHES) + labels + TITLE_INCHES for k in kinds]
    width = labels + cols * side + (cols - 1) * GAP_INCHES + COLORBAR_INCHES
    return {
        "kinds": kinds,
        "cols": cols,
        "side": side,
        "labels": labels,
        "sections": sections,
        "size": (width, sum(sections) + TITLE_INCHES),
    }


def figure_size(maps: AttentionMaps) -> tuple[float, float]:
    """(width, height) in inches of the drawn figure."""
    return layout(maps)["size"]


def draw(maps: AttentionMaps, title: str = ""):
    """A matplotlib Figure: one row per (kind, layer), one column per head, one colour scale (0 .. largest
    weight) for all panels.

    Token labels only on the outer panels (queries left, keys under each section's last row): the panels of
    a section share their axes, and ticks are most of matplotlib's drawing time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: the CLI starts faster
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not any(maps.maps.values()):
        raise ValueError("no attention weights to draw (the model returned none)")
    box = layout(maps)
    width, height = box["size"]
    vmax = max(float(w.max()) for k in box["kinds"] for w in maps.maps[k]) or 1.0
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    heading, *subfigs = fig.subfigures(
        len(box["kinds"]) + 1, 1, height_ratios=[TITLE_INCHES, *box["sections"]], squeeze=False
    )[:, 0]
    heading.suptitle(title, fontsize=11, y=0.5, va="center")
    for subfig, kind, section in zip(subfigs, box["kinds"], box["sections"]):
        layers = maps.maps[kind]
        subfig.suptitle(f"{KINDS[kind]}: query down, key across", fontsize=10, y=1 - 0.12 / section, va="top")
        subfig.subplots_adjust(
            left=box["labels"] / width,
            right=1 - COLORBAR_INCHES / width,
            bottom=box["labels"] / section,
            top=1 - TITLE_INCHES / section,
            wspace=GAP_INCHES / box["side"],
            hspace=GAP_INCHES * 2 / box["side"],
        )
        queries, keys = maps.axes(kind)
        grid = subfig.subplots(len(layers), box["cols"], squeeze=False)
        for layer, weights in enumerate(layers):
            for head in range(box["cols"]):
                ax = grid[layer, head]
                if head >= weights.shape[0]:
                    ax.set_axis_off()
                    continue
                ax.imshow(
                    weights[head].numpy(), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest"
                )
                ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8, pad=2)
                if layer == len(layers) - 1:  # ticks cost most of the drawing: edge panels only
                    ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=TOKEN_FONT)
                else:
                    ax.set_xticks([])
                if head == 0:
                    ax.set_yticks(range(len(queries)), queries, fontsize=TOKEN_FONT)
                else:
                    ax.set_yticks([])
                ax.tick_params(length=2)
    colorbar = fig.add_axes((1 - 0.8 * COLORBAR_INCHES / width, 0.25, 0.15 / width, 0.5))
    fig.colorbar(ScalarMappable(Normalize(0.0, vmax), "viridis"), cax=colorbar, label="attention weight")
    return fig


def save_png(maps: AttentionMaps, path: str | Path, title: str = "") -> Path:
    """Draw and write the PNG (parent folders created); the grid is stored as JSON in its "Panels" chunk."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"attention maps are written as PNG; got output path {str(path)!r} (use a .png name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = draw(maps, title)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Panels": json.dumps(maps.panels())})
    return path


def plot_attention(model, tokenizer, text: str, path: str | Path, target: str | None = None, **kwargs) -> Path:
    """compute_attention + save_png: the picture the CLI and the model card use."""
    maps = compute_attention(model, tokenizer, text, target=target, **kwargs)
    return save_png(maps, path, title=f"{type(model).__name__}: {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `scratchformer attention`."""
    parser.add_argument("model_dir", help="a saved or exported model folder (config.json, weights, tokenizer)")
    parser.add_argument("text", help="the source text whose attention is drawn")
    parser.add_argument("-o", "--output", default="attention_map.png", help="PNG to write")
    parser.add_argument(
        "--target",
        default=None,
        help="seq2seq only: a reference target to feed the decoder (default: the model's own greedy output)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=24, help="seq2seq: longest generated target")
    parser.add_argument("--max-tokens", type=int, default=48, help="refuse texts longer than this many tokens")
    return parser


def run(args: argparse.Namespace) -> int:
    """Draw the attention maps of a saved model on a text (PNG: every layer and head, tokens on the axes)."""
    try:
        saved = load_saved(args.model_dir)
        model, tokenizer = saved.model, saved.tokenizer
        if tokenizer is None:
            raise ValueError(
                f"{args.model_dir} has no tokenizer files (tokenizer_config.json, tokenizer.json); "
                "save the tokenizer with the model"
            )
        path = plot_attention(
            model,
            tokenizer,
            args.text,
            args.output,
            target=args.target,
            max_new_tokens=args.max_new_tokens,
            max_tokens=args.max_tokens,
        )
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"scratchformer attention: {error}") from None
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m scratchformer.training.attention_maps``; `scratchformer attention` is the same."""
    parser = add_arguments(argparse.ArgumentParser(prog="scratchformer attention", description=run.__doc__))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
