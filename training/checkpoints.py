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
temporary folder and renamed, then the `latest` symlink is replaced, so a kill never breaks `latest`; the
checksums written with it let --resume pass over a checkpoint whose files were damaged later.
"""

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"
CHECKSUMS = "checksums.json"  # bytes and sha256 of every file of a checkpoint, written last


@dataclass
class TrainerState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (per process)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    skipped_batches: int = 0  # batches whose loss was NaN/inf, under nonfinite_loss="skip"
    history: list = field(default_factory=list)  # tracking.py's entries: train/... and eval/... by step

    @classmethod
    def load(cls, checkpoint: Path) -> "TrainerState":
        return cls(**json.loads((Path(checkpoint) / TRAINER_STATE).read_text()))


def write_atomic(path: Path, content: str):
    """Write a text file under a temporary name, then rename it over `path`."""
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def save_model_in_place(model, out_dir: Path, state_dict: dict | None = None):
    """save_pretrained into a temporary sibling folder, then move each file over its namesake in `out_dir`.
    `state_dict`: the whole weights when the model is sharded across processes (accelerator.get_state_dict)."""
    tmp = out_dir / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    for item in tmp.iterdir():
        os.replace(item, out_dir / item.name)
    tmp.rmdir()


def file_digests(folder: Path) -> dict[str, dict]:
    """relative path -> {"bytes": size, "sha256": digest} of every file below `folder` but the list itself."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS):
        with path.open("rb") as f:
            digests[str(path.relative_to(folder))] = {
                "bytes": path.stat().st_size,
                "sha256": hashlib.file_digest(f, "sha256").hexdigest(),
            }
    return digests


def damage(checkpoint: Path) -> list[str]:
    """What is wrong with a checkpoint, file by file, against the checksums written with it ([]: intact)."""
    if not (checkpoint / TRAINER_STATE).is_file():
        return [f"{TRAINER_STATE} is missing (the write did not finish)"]
    if not (checkpoint / CHECKSUMS).is_file():
        return []  # written before checksums existed: nothing to check against
    expected = json.loads((checkpoint / CHECKSUMS).read_text())
    found = file_digests(checkpoint)
    problems = []
    for name, want in expected.items():
        have = found.get(name)
        if have is None:
            problems.append(f"{name} is missing")
        elif have["bytes"] != want["bytes"]:
            problems.append(f"{name} has {have['bytes']} bytes, {want['bytes']} were written (truncated?)")
        elif have["sha256"] != want["sha256"]:
            problems.append(
                f"{name} differs from what was written (sha256 {have['sha256'][:12]}..., "
                f"expected {want['sha256'][:12]}...)"
            )
    return problems


def latest_checkpoint(output_dir) -> Path | None:
    """checkpoints/latest, else the newest complete checkpoint-N (one holding trainer_state.json)."""
    root = Path(output_dir) / CHECKPOINTS
    if (root / "latest" / TRAINER_STATE).is_file():
        return (root / "latest").resolve()
    complete = sorted(p for p in root.glob("checkpoint-*") if (p / TRAINER_STATE).is_file())
    return complete[-1] if complete else None


def intact_checkpoint(output_dir) -> Path | None:
    """The newest checkpoint whose files are all as written; each newer damaged one is reported (with the file
    and what is wrong) and passed over. Raises when there are checkpoints but none is intact."""
    root = Path(output_dir) / CHECKPOINTS
    candidates = sorted((p for p in root.glob("checkpoint-*") if p.is_dir()), reverse=True)
    reports = []
    for checkpoint in candidates:
        problems = damage(checkpoint)
        if not problems:
            for report in reports:
                logger.warning("%s; resuming from %s instead", report, checkpoint.name)
            return checkpoint
        reports.append(f"{checkpoint} is damaged: " + "; ".join(problems))
    if reports:
        raise RuntimeError("no intact checkpoint to resume from:\n  " + "\n  ".join(reports))
    return None


def save_checkpoint(accelerator: Accelerator, output_dir, state: TrainerState, total_limit: int):
    """save_state into a temporary folder, add trainer_state.json and the checksums of every file, rename the
    folder, then repoint `latest`; keep the newest `total_limit`. A write that fails (a full disk) removes its
    temporary folder and raises, naming the checkpoint that stays intact."""
    root = Path(output_dir) / CHECKPOINTS
    name = f"checkpoint-{state.step:07d}"
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / TRAINER_STATE).write_text(json.dumps(asdict(state)))
            (tmp / CHECKSUMS).write_text(json.dumps(file_digests(tmp), indent=1))
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(output_dir)
        intact = f"{previous.name} is intact and `latest` points to it" if previous else "there is no earlier one"
        raise OSError(
            error.errno,
            f"could not write checkpoint {name} ({error.strerror or error}); {intact}. "
            "Free some space, then continue with --resume",
        ) from error
    if accelerator.is_main_process:
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


def average_weights(output_dir, last: int) -> tuple[dict, list[str]]:
    """(the element-wise mean of the model weights of the newest `last` complete checkpoints, their names):
    checkpoint averaging (Vaswani et al. 2017, 6.1). Sums in float64; non-float tensors come from the newest."""
    root = Path(output_dir) / CHECKPOINTS
    checkpoints = sorted(p for p in root.glob("checkpoint-*") if (p / TRAINER_STATE).is_file())[-last:]
    if len(checkpoints) < last:
        raise ValueError(
            f"average_checkpoints={last}, but {root} holds {len(checkpoints)} complete checkpoint(s): "
            f"{[c.name for c in checkpoints]} (train longer, or save more often with --save_every)"
        )
    weights = [load_file(c / "model.safetensors") for c in checkpoints]
    newest = weights[-1]
    average = {
        name: (sum(w[name].double() for w in weights) / last).to(tensor.dtype) if tensor.is_floating_point() else tensor
        for name, tensor in newest.items()
    }
    return average, [c.name for c in checkpoints]


__all__ = [
    "TrainerState",
    "average_weights",
    "damage",
    "file_digests",
    "intact_checkpoint",
    "latest_checkpoint",
    "save_checkpoint",
    "save_model_in_place",
    "write_atomic",
]
