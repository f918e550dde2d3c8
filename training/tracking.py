"""What a run records as it goes, and the one picture of it.

The history is a list of entries ``{"step": s, "train/loss": ..., "train/lr": ...}`` (every log_every steps)
and ``{"step": s, "eval/loss": ..., "eval/<metric>": ...}`` (every evaluation). The trainer keeps it in
trainer_state.json (so it survives resume) and passes every entry to accelerate's trackers: the JSON-lines
log below always, TensorBoard when installed. `plot_history` draws it for the run folder and the model card.
"""

import json
import os
from dataclasses import asdict
from pathlib import Path

from accelerate.tracking import GeneralTracker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


class JSONLinesTracker(GeneralTracker):
    """An accelerate tracker writing one JSON object per log call; needs no extra package."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "hparams.json").write_text(json.dumps(values, indent=2))

    def log(self, values: dict, step=None, **kwargs):
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def truncate_after(self, step: int):
        """Forget the entries logged after `step` (a resumed run logs them again)."""
        if self.path.exists():
            lines = [line for line in self.path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
            self.path.write_text("".join(line + "\n" for line in lines))


def flat_hparams(*args) -> dict:
    """Scalars only (TensorBoard's hparams refuse lists and None)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for a in args for k, v in asdict(a).items()}


def curves(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """name -> (step, value) points of every train/ and eval/ series in the history."""
    series = {}
    for entry in history:
        for key, value in entry.items():
            if key != "step" and key.startswith(("train/", "eval/")):
                series.setdefault(key, []).append((entry["step"], value))
    return series


def plot_history(history: list[dict], path: str | Path) -> Path | None:
    """Training and validation loss against the step (left) and the validation metrics (right), as a PNG
    written atomically; None when the history has no loss."""
    series = curves(history)
    losses = {k: v for k, v in series.items() if k in ("train/loss", "eval/loss")}
    if not losses:
        return None
    metrics = {k: v for k, v in series.items() if k.startswith("eval/") and k != "eval/loss"}
    fig = Figure(figsize=(11 if metrics else 6, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, *ax_metric = fig.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    labels = {"train/loss": "training loss", "eval/loss": "validation loss"}
    for key, points in losses.items():
        steps, values = zip(*points)
        ax_loss.plot(steps, values, "o-" if key == "eval/loss" or len(points) < 30 else "-", label=labels[key])
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss", title="loss")
    for key, points in metrics.items():
        steps, values = zip(*points)
        ax_metric[0].plot(steps, values, "o-", label=key.removeprefix("eval/"))
    if metrics:
        ax_metric[0].set(xlabel="step", title="validation metrics")
    for ax in (ax_loss, *ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


__all__ = ["JSONLinesTracker", "curves", "flat_hparams", "plot_history"]
