"""What a run keeps on disk, each file written once and every replacement atomic (temporary name + os.replace).

    output_dir/
      tokenizer.json tokenizer_config.json training_args.json    written when the run starts
      config.json generation_config.json model.safetensors       the best model so far, replaced when validation improves
      log.jsonl hparams.json                                     appended as the run goes
      all_results.json test_predictions.jsonl card_info.json loss_curve.png    written when the run ends
      checkpoints/checkpoint-NNNNNNN  checkpoints/latest         what --resume needs

So the folder is a loadable model (`from_pretrained(output_dir)`) from the first evaluation on, and the
finished release needs no copy: the best weights are already where they belong. A checkpoint holds the model,
optimiser, scheduler and RNG states (accelerator.save_state) plus trainer_state.json; it is written to a
temporary folder and renamed, then the `latest` symlink is replaced, so a kill never breaks `latest`.
"""

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainerState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (per process)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list = field(default_factory=list)  # tracking.py's entries: train/... and eval/... by step

    @classmethod
    def load(cls, checkpoint: Path) -> "TrainerState":
        return cls(**json.loads((Path(checkpoint) / TRAINER_STATE).read_text()))


def write_atomic(path: Path, content: str):
    """Write a text file under a temporary name, then rename it over `path`."""
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def save_model_in_place(model, out_dir: Path):
    """save_pretrained into a temporary sibling folder, then move each file over its namesake in `out_dir`."""
    tmp = out_dir / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for item in tmp.iterdir():
        os.replace(item, out_dir / item.name)
    tmp.rmdir()


def latest_checkpoint(output_dir) -> Path | None:
    """checkpoints/latest, else the newest complete checkpoint-N (one holding trainer_state.json)."""
    root = Path(output_dir) / CHECKPOINTS
    if (root / "latest" / TRAINER_STATE).is_file():
        return (root / "latest").resolve()
    complete = sorted(p for p in root.glob("checkpoint-*") if (p / TRAINER_STATE).is_file())
    return complete[-1] if complete else None


def save_checkpoint(accelerator: Accelerator, output_dir, state: TrainerState, total_limit: int):
    """save_state into a temporary folder, rename it, then repoint `latest`; keep the newest `total_limit`."""
    root = Path(output_dir) / CHECKPOINTS
    name = f"checkpoint-{state.step:07d}"
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(asdict(state)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link = root / ".latest-tmp"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(name)
        os.replace(link, root / "latest")
        for old in sorted(root.glob("checkpoint-*"))[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


__all__ = ["TrainerState", "latest_checkpoint", "save_checkpoint", "save_model_in_place", "write_atomic"]
