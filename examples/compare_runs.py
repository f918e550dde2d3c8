"""Runs side by side: a markdown table of their test scores and one picture of their validation curves.

    python examples/compare_runs.py outputs/comparison.png \\
        "SST-2 from scratch=outputs/sst2-scratch" "SST-2 pretrained=outputs/sst2-pretrained" ...

Each run is LABEL=FOLDER, a folder written by `scratchformer train` (all_results.json, log.jsonl) or by
examples/bart_peer.py (peer_results.json, and the Seq2SeqTrainer's trainer_state.json in the folder or its latest
checkpoint). The picture has one panel per series the runs log (training loss, validation loss and the task's
metric), every run a curve.
"""

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scratchformer.training.tracking import curves


def read_run(folder: Path) -> tuple[dict, dict]:
    """(all_results.json, the run's curves by name) of a finished run."""
    if (folder / "peer_results.json").is_file():
        return read_peer(folder)
    results = json.loads((folder / "all_results.json").read_text())
    history = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return results, curves(history)


def read_peer(folder: Path) -> tuple[dict, dict]:
    """The same for a bart_peer.py folder: the Trainer's `loss`/`eval_loss` log entries become train/loss and
    eval/loss (both the label-smoothed token cross-entropy, as ours), the lowest eval_loss the validation best."""
    peer = json.loads((folder / "peer_results.json").read_text())
    states = [folder / "trainer_state.json"] if (folder / "trainer_state.json").is_file() else []
    states = states or sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    if not states:
        raise SystemExit(f"{folder}: no trainer_state.json in it or in a checkpoint-* folder")
    history = json.loads(states[-1].read_text())["log_history"]
    renamed = [
        {
            "step": e["step"],
            **{new: e[old] for old, new in (("loss", "train/loss"), ("eval_loss", "eval/loss")) if old in e},
        }
        for e in history
    ]
    series = curves(renamed)
    step, loss = min(series.get("eval/loss", [(None, float("nan"))]), key=lambda point: point[1])
    return {"test": peer["test"], "train": peer["train"], "validation_best": {"loss": loss, "step": step}}, series


def table(runs: dict[str, tuple[dict, dict]]) -> str:
    rows = ["| run | steps | train minutes | validation best | test |", "|---|---|---|---|---|"]
    for label, (results, _) in runs.items():
        split = "test" if "test" in results else "validation"
        scores = ", ".join(f"{k} {v:.4f}" for k, v in results[split].items() if k != "rows")
        best = results["validation_best"]
        best_text = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in best.items())
        train = results["train"]
        rows.append(f"| {label} | {train['steps']} | {train['train_minutes']:.1f} | {best_text} | {scores} |")
    return "\n".join(rows)


def plot(runs: dict[str, tuple[dict, dict]], path: Path):
    logged = {k for _, series in runs.values() for k in series}
    names = [k for k in ("train/loss",) if k in logged] + sorted(k for k in logged if k.startswith("eval/"))
    fig = Figure(figsize=(5 * len(names), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        for label, (_, series) in runs.items():
            if name in series:
                steps, values = zip(*series[name])
                ax.plot(steps, values, "-" if name.startswith("train/") else "o-", label=label)
        kind, metric = name.split("/", 1)
        ax.set(xlabel="step", title=f"{'training' if kind == 'train' else 'validation'} {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, format="png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("picture", type=Path, help="the PNG to write")
    parser.add_argument("runs", nargs="+", metavar="LABEL=FOLDER")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep or not any((Path(folder) / name).is_file() for name in ("all_results.json", "peer_results.json")):
            raise SystemExit(
                f"{item!r}: expected LABEL=FOLDER of a finished run (with all_results.json or peer_results.json)"
            )
        runs[label] = read_run(Path(folder))
    plot(runs, args.picture)
    print(table(runs))
    print(f"\nwrote {args.picture}")


if __name__ == "__main__":
    main()
