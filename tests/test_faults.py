"""Faults that must lose nothing: a kill at any point of a checkpoint write, a full disk, a damaged checkpoint
file, and a NaN loss. Each is tried for real on a tiny run (the kill as an exception no code catches, raised
at each filesystem step of the write in turn)."""

import errno
import json
import random
import shutil

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from scratchformer import ScratchformerForConditionalGeneration
from scratchformer.training import checkpoints
from scratchformer.training.args import from_flat
from scratchformer.training.checkpoints import TrainerState, intact_checkpoint, latest_checkpoint, save_checkpoint
from scratchformer.training.trainer import train

LETTERS = {"a": "AA", "b": "B", "d": "D", "e": "EH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "OW", "t": "T"}


@pytest.fixture(scope="module")
def g2p_file(tmp_path_factory):
    rng = random.Random(0)
    words = sorted({"".join(rng.choice(list(LETTERS)) for _ in range(rng.randint(2, 5))) for _ in range(200)})
    path = tmp_path_factory.mktemp("data") / "g2p.tsv"
    path.write_text("source\ttarget\n" + "".join(f"{w}\t{' '.join(LETTERS[c] for c in w)}\n" for w in words))
    return str(path)


def run(output_dir, g2p_file, **kwargs):
    values = (
        dict(
            task="g2p",
            train_file=g2p_file,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            attention_heads=2,
            ffn_dim=32,
            output_dir=str(output_dir),
            report_to=[],
            batch_size=16,
            batch_tokens=0,
            max_steps=6,
            save_every=2,
            eval_every=6,
            save_total_limit=5,
            learning_rate=3e-3,
            warmup_steps=2,
            log_every=1,
            max_eval_samples=5,
        )
        | kwargs
    )
    return train(*from_flat(values))


class Killed(BaseException):
    """A kill: nothing catches it, no cleanup runs (as with SIGKILL, what is on disk stays as it is)."""


@pytest.fixture
def saver(tmp_path):
    """An accelerator with a prepared tiny model and optimiser, and a first complete checkpoint at step 2."""
    model = ScratchformerForConditionalGeneration._from_config(
        ScratchformerForConditionalGeneration.config_class(
            vocab_size=20, d_model=8, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=8, decoder_ffn_dim=8
        )
    )
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
    save_checkpoint(accelerator, tmp_path, TrainerState(step=2), total_limit=1)
    return accelerator, tmp_path


FILESYSTEM_STEPS = [  # (module or object, attribute): every call a checkpoint write makes to the disk
    (checkpoints.os, "replace"),
    (checkpoints.shutil, "rmtree"),
    (checkpoints.Path, "write_text"),
    (checkpoints.Path, "symlink_to"),
    (checkpoints.Path, "unlink"),
    (checkpoints.Path, "mkdir"),
]


def kill_at(monkeypatch, accelerator, point: int) -> list[str]:
    """Make the `point`-th filesystem step of the next write raise Killed; returns the steps seen."""
    seen = []

    def wrap(name, original):
        def step(*args, **kwargs):
            seen.append(name)
            if len(seen) == point + 1:
                raise Killed(name)
            return original(*args, **kwargs)

        return step

    for owner, attribute in FILESYSTEM_STEPS:
        monkeypatch.setattr(owner, attribute, wrap(attribute, getattr(owner, attribute)))
    monkeypatch.setattr(accelerator, "save_state", wrap("save_state", accelerator.save_state))
    return seen


def test_a_kill_at_any_step_of_a_checkpoint_write_leaves_a_loadable_checkpoint(saver, monkeypatch):
    accelerator, out = saver
    points = 0
    while True:
        with monkeypatch.context() as patch:
            seen = kill_at(patch, accelerator, points)
            try:
                save_checkpoint(accelerator, out, TrainerState(step=4), total_limit=1)
                finished = True
            except Killed:
                finished = False
        for found in {latest_checkpoint(out), intact_checkpoint(out)}:
            assert found is not None and checkpoints.damage(found) == [], (points, seen)
            accelerator.load_state(str(found))  # loads: model, optimiser, RNG
            assert TrainerState.load(found).step in (2, 4)
        if finished:
            break
        points += 1
        shutil.rmtree(out / "checkpoints")  # the next kill point starts from one good checkpoint again
        save_checkpoint(accelerator, out, TrainerState(step=2), total_limit=1)
    assert points >= 8, seen  # save_state, the state and checksum files, rename, link, rotation...
    assert TrainerState.load(latest_checkpoint(out)).step == 4


def test_a_full_disk_names_the_intact_checkpoint_and_leaves_no_partial_one(saver, monkeypatch):
    accelerator, out = saver
    original = accelerator.save_state

    def full_disk(folder):
        original(folder)  # the files are written ... and the last one does not fit
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(accelerator, "save_state", full_disk)
    with pytest.raises(
        OSError,
        match=r"could not write checkpoint checkpoint-0000004 \(No space left on device\); "
        r"checkpoint-0000002 is intact and `latest` points to it",
    ) as error:
        save_checkpoint(accelerator, out, TrainerState(step=4), total_limit=1)
    assert error.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-0000002", "latest"]
    accelerator.load_state(str(latest_checkpoint(out)))


def test_damaged_checkpoints_are_named_and_passed_over_and_resume_stays_exact(tmp_path, g2p_file, caplog):
    run(tmp_path / "straight", g2p_file)
    damaged = tmp_path / "damaged"
    run(damaged, g2p_file, stop_after_steps=6, max_steps=8)  # checkpoints 2, 4, 6 of an 8-step run
    root = damaged / "checkpoints"
    weights = root / "checkpoint-0000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    optimizer = root / "checkpoint-0000004" / "optimizer.bin"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size
    optimizer.write_bytes(bytes(data))
    assert intact_checkpoint(damaged) == root / "checkpoint-0000002"
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "checkpoint-0000006 is damaged: model.safetensors has 1000 bytes" in m
        and "truncated" in m
        and "resuming from checkpoint-0000002 instead" in m
        for m in messages
    ), messages
    assert any("checkpoint-0000004 is damaged: optimizer.bin differs from what was written" in m for m in messages)
    # resumed from step 2, the 8-step run ends as an uninterrupted 8-step run does
    run(damaged, g2p_file, max_steps=8, resume=True)
    run(tmp_path / "eight", g2p_file, max_steps=8)
    a, b = (
        load_file(damaged / "checkpoints" / "latest" / "model.safetensors"),
        load_file(tmp_path / "eight" / "checkpoints" / "latest" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every checkpoint damaged: an error listing each
    for checkpoint in root.glob("checkpoint-*"):
        (checkpoint / "model.safetensors").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"no intact checkpoint to resume from:\n  .*checkpoint-0000008 is damaged"):
        intact_checkpoint(damaged)


@pytest.fixture
def nan_at_batch(monkeypatch):
    """The training loss of the 3rd training batch is NaN (evaluation is untouched)."""
    calls = {"n": 0}
    original = ScratchformerForConditionalGeneration.forward

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(ScratchformerForConditionalGeneration, "forward", forward)
    return calls


def test_a_nan_loss_stops_the_run_saying_what_is_intact(tmp_path, g2p_file, nan_at_batch):
    with pytest.raises(
        FloatingPointError,
        match=r"the training loss is nan at step 3 \(epoch 0, batch 2 of it\); "
        r"nothing was saved from this step: the checkpoint checkpoint-0000002",
    ):
        run(tmp_path, g2p_file)
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000002" and not (tmp_path / "all_results.json").exists()


def test_a_nan_loss_skipped_is_counted_and_no_weight_becomes_nan(tmp_path, g2p_file, nan_at_batch):
    results = run(tmp_path, g2p_file, nonfinite_loss="skip")
    assert results["train"]["skipped_batches"] == 1 and results["train"]["steps"] == 6
    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "model.safetensors").values())
    assert json.loads((tmp_path / "all_results.json").read_text())["train"]["skipped_batches"] == 1
    losses = [
        e["train/loss"] for e in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "train/loss" in e
    ]
    assert len(losses) == 6 and all(loss == loss for loss in losses)  # no NaN logged


BAD_INPUTS = {  # name -> (file name, bytes, extra arguments, the error, naming the file and the line)
    "empty text": (
        "a.tsv",
        b"text\tlabel\ngood film\tpos\n \tneg\nbad film\tneg\n",
        [],
        r"a.tsv:3: empty 'text' \(1 of 3 train rows\)",
    ),
    "empty text, jsonl": (
        "a.jsonl",
        b'{"text": "good", "label": "pos"}\n\n{"text": "", "label": "neg"}\n',
        [],
        r"a.jsonl:3: empty 'text'",
    ),
    "not UTF-8": (
        "a.tsv",
        b"text\tlabel\ngood film\tpos\nbad \xff film\tneg\n",
        [],
        r"a.tsv:3: not UTF-8 \(byte 0xff at column 5\)",
    ),
    "label outside the list": (
        "a.tsv",
        b"text\tlabel\ngood\tpos\nbad\tmeh\nok\tneg\nfine\tmeh\n",
        ["label_names=pos,neg"],
        r"a.tsv:3, a.tsv:5: labels \['meh'\] are not in the label list",
    ),
    "all-padding row": (
        "a.tsv",
        b"text\tlabel\ngood film\tpos\n<pad> <pad>\tneg\nbad film\tneg\n",
        ["tokenizer_type=wordpiece"],
        r"a.tsv:3: the input has no token but special ones",
    ),
    "over-long line": (
        "a.tsv",
        b"text\tlabel\ngood\tpos\nbad " + b"very " * 40 + b"bad\tneg\n",
        ["max_source_length=16", "too_long=error"],
        r"1 of 2 text sequences are longer than 16 tokens \(longest \d+, at a.tsv:3;",
    ),
    "unknown tag, CoNLL-U": (
        "a.conllu",
        b"# c\n1\tthe\t_\tDET\t_\t_\t_\t_\t_\t_\n\n# c\n1\tdog\t_\tNOUN\t_\t_\t_\t_\t_\t_\n"
        b"2\truns\t_\tVRB\t_\t_\t_\t_\t_\t_\n\n",
        ["label_names=DET,NOUN,VERB"],
        r"a.conllu:5: labels \['VRB'\] are not in the label list",
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_an_error_naming_the_file_and_line_before_training(tmp_path, name, monkeypatch):
    filename, content, extra, message = BAD_INPUTS[name]
    monkeypatch.chdir(tmp_path)  # the message names the file as given
    (tmp_path / filename).write_bytes(content)
    task = "token-classification" if filename.endswith(".conllu") else "sequence-classification"
    values = dict(
        task=task,
        train_file=filename,
        validation_file=filename,
        tokenizer_type="char",
        max_steps=2,
        d_model=16,
        encoder_layers=1,
        attention_heads=2,
        ffn_dim=16,
        output_dir="out",
        report_to=[],
    )
    for item in extra:
        key, value = item.split("=")
        values[key] = value.split(",") if key == "label_names" else int(value) if value.isdigit() else value
    with pytest.raises(ValueError, match=message):
        train(*from_flat(values))
    assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "log.jsonl").exists()


def test_over_long_rows_truncated_are_counted_and_located(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.tsv").write_text("text\tlabel\ngood\tpos\nbad " + "very " * 40 + "bad\tneg\nfine\tpos\nawful\tneg\n")
    values = dict(
        task="sequence-classification",
        train_file="a.tsv",
        validation_file="a.tsv",
        tokenizer_type="char",
        max_steps=2,
        d_model=16,
        encoder_layers=1,
        attention_heads=2,
        ffn_dim=16,
        output_dir="out",
        report_to=[],
        max_source_length=16,
    )
    results = train(*from_flat(values))
    warnings = [r.getMessage() for r in caplog.records if "longer than 16 tokens" in r.getMessage()]
    assert len(warnings) == 2 and all("1 of 4 text sequences" in w and "at a.tsv:3" in w for w in warnings)
    assert results["validation"]["rows"] == 4  # nothing dropped
