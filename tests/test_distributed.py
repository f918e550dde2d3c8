"""Two processes on this CPU, started the way accelerate documents it for CPUs (torchrun, ACCELERATE_USE_CPU=1,
gloo): they train as one process with twice the batch, evaluate every row once, save from one process, resume
bit-exactly after a SIGKILL, and fail fast and clearly when a worker dies."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from scratchformer import ScratchformerForSequenceClassification
from scratchformer.training.args import DataArguments, ModelArguments
from scratchformer.training.building import build_model
from scratchformer.training.data import load_task, train_tokenizer
from scratchformer.training.inference import evaluate_saved

LAUNCH_TIMEOUT = 300  # seconds: a run here takes 15-40 s; a hang must fail the test, not the suite


def sentiment_files(root: Path, train_rows=192, validation_rows=25):
    """A learnable two-class task: the class is given by one of the words."""
    rng = random.Random(0)
    good, bad, filler = ["great", "fine", "superb"], ["awful", "poor", "dull"], ["the", "film", "was", "plot", "acting"]

    def rows(n):
        lines = ["text\tlabel"]
        for i in range(n):
            label = i % 2
            words = rng.sample(filler, rng.randint(1, 4)) + [rng.choice(good if label else bad)]
            rng.shuffle(words)
            lines.append(" ".join(words) + "\t" + ("pos" if label else "neg"))
        return "\n".join(lines) + "\n"

    (root / "train.tsv").write_text(rows(train_rows))
    (root / "validation.tsv").write_text(rows(validation_rows))
    return ["--train_file", str(root / "train.tsv"), "--validation_file", str(root / "validation.tsv")]


COMMON = [
    "--task",
    "sequence-classification",
    "--tokenizer_type",
    "wordpiece",
    "--vocab_size",
    "60",
    "--d_model",
    "32",
    "--encoder_layers",
    "1",
    "--attention_heads",
    "2",
    "--ffn_dim",
    "64",
    "--batch_tokens",
    "0",
    "--learning_rate",
    "3e-3",
    "--warmup_steps",
    "2",
    "--log_every",
    "1",
    "--eval_batch_size",
    "4",
    "--report_to",
    "none",
    "--seed",
    "7",
]


def launch(nproc: int, *args, wait=True):
    """`torchrun --standalone --nproc_per_node N -m scratchformer.training train ...` in a session of its own."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "scratchformer.training",
        "train",
        *COMMON,
        *args,
    ]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if not wait:
        return process
    out, err = process.communicate(timeout=LAUNCH_TIMEOUT)
    assert process.returncode == 0, f"exit {process.returncode}\n{out[-3000:]}\n{err[-6000:]}"
    return out


def weights(folder):
    return load_file(Path(folder) / "model.safetensors")


def last_step_weights(folder):
    """The weights of the newest checkpoint (the model as training ended, not the best one)."""
    return load_file(Path(folder) / "checkpoints" / "latest" / "model.safetensors")


def log_entries(folder):
    return [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sentiment_files(tmp_path_factory.mktemp("data"))


def untrained(folder: Path, data, dropout: float) -> Path:
    """An untrained model and its tokenizer, the start of runs that are compared (a tokenizer trained twice may
    number tied symbols differently: the `tokenizers` trainers do not fix their order)."""
    args = DataArguments(
        task="sequence-classification",
        train_file=data[1],
        validation_file=data[3],
        tokenizer_type="wordpiece",
        vocab_size=60,
    )
    task_data = load_task(args)
    tokenizer = train_tokenizer(task_data, args)
    torch.manual_seed(0)
    model = build_model(
        task_data.task,
        tokenizer,
        task_data.label_list,
        ModelArguments(d_model=32, encoder_layers=1, attention_heads=2, ffn_dim=64, dropout=dropout),
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def initial(tmp_path_factory, data):
    return untrained(tmp_path_factory.mktemp("initial"), data, dropout=0.0)


TWO_RUNS = ["--max_steps", "10", "--eval_every", "5", "--save_every", "5"]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data, initial):
    out = tmp_path_factory.mktemp("two")
    launch(2, *data, "--model_name_or_path", str(initial), "--output_dir", str(out), "--batch_size", "8", *TWO_RUNS)
    return out


def test_two_processes_train_as_one_with_twice_the_batch(two_process_run, data, initial, tmp_path):
    """2 processes x 8 rows == 1 process x 16 rows: the same global batches (the sampler cuts each in two, one
    half per process), the gradients averaged by DDP equal the 16-row mean (every half has 8 rows, one label
    each). Tolerance: fp32 sums in another order (gloo's allreduce vs one 16-row reduction) differ by ~1 ulp
    per step; after 10 AdamW steps the weights agree to 1e-5 absolute and the losses to 1e-5 relative."""
    one = tmp_path / "one"
    launch(1, *data, "--model_name_or_path", str(initial), "--output_dir", str(one), "--batch_size", "16", *TWO_RUNS)
    a, b = last_step_weights(two_process_run), last_step_weights(one)
    start = ScratchformerForSequenceClassification.from_pretrained(initial).state_dict()  # memory names, as a, b
    assert a.keys() == b.keys() and a.keys() <= start.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
        assert not torch.equal(a[name], start[name]), name  # every tensor was trained
    losses = [[e["train/loss"] for e in log_entries(folder) if "train/loss" in e] for folder in (two_process_run, one)]
    assert len(losses[0]) == 10
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=0)


def test_evaluation_gathers_every_row_once(two_process_run, data):
    """25 validation rows in batches of 4: 7 batches, 4 for one process and 3 for the other. Every row is
    predicted once, and the scores equal one process's evaluation of the saved model."""
    results = json.loads((two_process_run / "all_results.json").read_text())["validation"]
    rows = [json.loads(line) for line in (two_process_run / "validation_predictions.jsonl").read_text().splitlines()]
    lines = (Path(data[3])).read_text().splitlines()[1:]
    assert sorted(r["text"] for r in rows) == sorted(line.split("\t")[0] for line in lines)
    assert results["rows"] == len(rows) == 25
    single = evaluate_saved(two_process_run, split="validation", batch_size=5)
    assert single["accuracy"] == pytest.approx(results["accuracy"]) and single["rows"] == 25
    assert single["loss"] == pytest.approx(results["loss"], rel=1e-5)


def test_one_process_writes_the_run(two_process_run):
    checkpoint = two_process_run / "checkpoints" / "latest"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "checksums.json",
        "custom_checkpoint_0.pkl",
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "random_states_1.pkl",
        "trainer_state.json",
    ]  # model, optimizer, scheduler (custom_...) once; RNG per process
    steps = [e["step"] for e in log_entries(two_process_run) if "train/loss" in e]
    assert steps == list(range(1, 11))  # logged once per step, not once per process
    predictions = (two_process_run / "validation_predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 25


def test_resume_after_sigkill_is_bit_equal(tmp_path, data):
    start = untrained(tmp_path / "initial", data, dropout=0.1)  # dropout: each process's RNG must resume too
    args = [
        *data,
        "--model_name_or_path",
        str(start),
        "--batch_size",
        "8",
        "--max_steps",
        "16",
        "--save_every",
        "2",
        "--eval_every",
        "8",
    ]
    launch(2, *args, "--output_dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    target = random.Random().randint(2, 12)  # a random step, after the checkpoint of which the job is killed
    process = launch(2, *args, "--output_dir", str(killed), wait=False)
    deadline = time.time() + LAUNCH_TIMEOUT
    while not any(int(p.name.split("-")[1]) >= target for p in (killed / "checkpoints").glob("checkpoint-*")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers, at once
    process.wait(timeout=60)
    assert not (killed / "all_results.json").exists()
    launch(2, *args, "--output_dir", str(killed), "--resume")
    straight, resumed = weights(tmp_path / "straight"), weights(killed)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), f"killed after step {target}"
    losses = [
        [(e["step"], e["train/loss"]) for e in log_entries(f) if "train/loss" in e]
        for f in (tmp_path / "straight", killed)
    ]
    assert losses[0] == losses[1]  # every step logged once, with the same loss (tokens/s differ)


def test_a_dying_worker_fails_the_job_fast_and_clearly(tmp_path, data):
    process = launch(
        2,
        *data,
        "--batch_size",
        "8",
        "--max_steps",
        "100000",
        "--save_every",
        "1000",
        "--eval_every",
        "1000",
        "--output_dir",
        str(tmp_path / "run"),
        wait=False,
    )
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + LAUNCH_TIMEOUT
    while not (log.is_file() and log.read_text().strip()):  # training has started
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    workers = [p for p in psutil.Process(process.pid).children(recursive=True) if p.environ().get("LOCAL_RANK")]
    rank_1 = next(p for p in workers if p.environ()["LOCAL_RANK"] == "1")
    killed_at = time.time()
    rank_1.send_signal(signal.SIGKILL)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert time.time() - killed_at < 120
    assert "local_rank: 1" in err and "Signal 9 (SIGKILL)" in err, err[-3000:]
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers if p.pid != rank_1.pid)


def test_pretraining_runs_on_two_processes_and_evaluates_as_one(tmp_path, data):
    """masked-lm under torchrun: each row's corruption depends on (seed, epoch, row) only, so the validation rows
    the two processes score are those one process scores, and the gathered loss and accuracy equal its."""
    out = tmp_path / "mlm"
    launch(2, *data, "--task", "masked-lm", "--output_dir", str(out), "--batch_size", "8", *TWO_RUNS)
    results = json.loads((out / "all_results.json").read_text())["validation"]
    single = evaluate_saved(out, split="validation", batch_size=4)  # the run's batches: the token losses' weights
    assert single["rows"] == results["rows"] == 25
    assert single["accuracy"] == pytest.approx(results["accuracy"])
    assert single["loss"] == pytest.approx(results["loss"], rel=1e-5)


def test_bf16_weights_average_the_fp32_gradients_over_processes(data, initial, tmp_path):
    """--mixed_precision bf16-weights reduces the fp32 master gradients itself (the bf16 copy is not DDP's): 2
    processes x 8 rows end where 1 process x 16 rows does, up to the bf16 rounding of each half's gradients, which
    AdamW's normalised steps turn into a few weights a learning rate apart. The mean tells the two apart: measured
    2e-5 to 3e-5 (with the reduction left out, 3e-3). The largest difference cannot: AdamW moves a weight by about
    the learning rate a step, so one whose rounded gradient changes sign drifts up to 10 steps x 3e-3 from its
    twin (measured 1e-3 to 1.1e-2 with the reduction, 2e-2 without); it is bounded by that."""
    runs = {}
    for nproc, rows in ((2, "8"), (1, "16")):
        runs[nproc] = tmp_path / f"{nproc}"
        launch(nproc, *data, "--model_name_or_path", str(initial), "--output_dir", str(runs[nproc]),
               "--batch_size", rows, "--mixed_precision", "bf16-weights", *TWO_RUNS)  # fmt: skip
    a, b = last_step_weights(runs[2]), last_step_weights(runs[1])
    assert a.keys() == b.keys() and all(a[name].dtype == torch.float32 for name in a)
    difference = torch.cat([(a[name] - b[name]).abs().flatten() for name in a])
    assert difference.mean() < 3e-4 and difference.max() < 10 * 3e-3
