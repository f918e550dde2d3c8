"""The trainer end to end on tiny local data: each task kind learns, resume is exact, the CLI works, bad input
fails before training, and the models also train under transformers' Trainer / Seq2SeqTrainer."""

import json
import logging
import random
from dataclasses import asdict

import jiwer
import pytest
import sacrebleu
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from scratchformer.training import building, checkpoints, cli, trainer
from scratchformer.training.args import TrainArguments, check_args, config_defaults, from_flat
from scratchformer.training.checkpoints import latest_checkpoint
from scratchformer.training.export import CardInfo
from scratchformer.training.optim import noam
from scratchformer.training.presets import PRESETS
from scratchformer.training.tracking import curves
from scratchformer.training.trainer import train

LETTERS = {
    "a": "AA",
    "b": "B",
    "c": "K",
    "d": "D",
    "e": "EH",
    "f": "F",
    "g": "G",
    "h": "HH",
    "i": "IH",
    "k": "K",
    "l": "L",
    "m": "M",
    "n": "N",
    "o": "OW",
    "p": "P",
    "r": "R",
    "s": "S",
    "t": "T",
    "u": "UH",
}
TINY = dict(d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=64, dropout=0.1)


def g2p_rows(n, seed):
    rng = random.Random(seed)
    words = {"".join(rng.choice(list(LETTERS)) for _ in range(rng.randint(2, 6))) for _ in range(n)}
    return [(w, " ".join(LETTERS[c] for c in w)) for w in sorted(words)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    out = {}
    for split, (n, seed) in {"train": (300, 0), "validation": (30, 1), "test": (30, 2)}.items():
        path = root / f"g2p_{split}.tsv"
        path.write_text("source\ttarget\n" + "".join(f"{w}\t{p}\n" for w, p in g2p_rows(n, seed)))
        out[f"g2p_{split}"] = str(path)
    rng = random.Random(0)
    vocab = {"ich": "i", "du": "you", "sehe": "see", "mag": "like", "den": "the", "hund": "dog", "ball": "ball"}
    rows = []
    for _ in range(200):
        words = [rng.choice(list(vocab)) for _ in range(rng.randint(2, 5))]
        rows.append({"translation": {"de": " ".join(words), "en": " ".join(vocab[w] for w in words)}})
    (root / "mt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out["mt"] = str(root / "mt.jsonl")
    good, bad = ["great", "fine", "superb", "lovely"], ["awful", "poor", "dull", "boring"]
    filler = ["the", "film", "was", "plot", "really", "acting"]
    lines = ["sentence\tsentiment"]
    for i in range(200):
        label = i % 2
        words = rng.sample(filler, 3) + [rng.choice(good if label else bad)]
        rng.shuffle(words)
        lines.append(" ".join(words) + "\t" + ("pos" if label else "neg"))
    (root / "sst.tsv").write_text("\n".join(lines) + "\n")
    out["sst"] = str(root / "sst.tsv")
    tags = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sees": "VERB", "big": "ADJ"}
    sentences = []
    for _ in range(120):
        words = [
            rng.choice(["the", "a"]),
            rng.choice(["big", "dog", "cat"]),
            rng.choice(["dog", "cat"]),
            rng.choice(["runs", "sees"]),
        ]
        sentences.append("\n".join(f"{j}\t{w}\t{w}\t{tags[w]}\t_\t_\t0\t_\t_\t_" for j, w in enumerate(words, 1)))
    (root / "pos.conllu").write_text("\n\n".join(sentences) + "\n\n")
    out["pos"] = str(root / "pos.conllu")
    return out


def run(tmp_path, model=None, **kwargs):
    """train() with tiny defaults; kwargs go to whichever dataclass has the field."""
    values = {
        **TINY,
        **(model or {}),
        "output_dir": str(tmp_path),
        "report_to": [],
        "log_every": 1,
        "eval_every": 1000,
        "save_every": 1000,
        "batch_size": 16,
        "batch_tokens": 0,
        "learning_rate": 3e-3,
        "warmup_steps": 5,
        "eval_batch_size": 64,
        **kwargs,
    }
    return train(*from_flat(values))


def losses(output_dir):
    log = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    return [entry["train/loss"] for entry in log if "train/loss" in entry]


def predictions_file(output_dir, split):
    return [json.loads(line) for line in (output_dir / f"{split}_predictions.jsonl").read_text().splitlines()]


def generated(output_dir, sources):
    """What the release, loaded by the Auto classes alone, generates for `sources` (one at a time: no padding)."""
    model, tokenizer = (
        AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval(),
        AutoTokenizer.from_pretrained(output_dir),
    )
    with torch.no_grad():
        return [
            tokenizer.decode(model.generate(**tokenizer([s], return_tensors="pt"))[0], skip_special_tokens=True)
            for s in sources
        ]


def assert_loss_falls(output_dir, factor=0.7):
    curve = losses(output_dir)
    first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
    assert last < factor * first, f"loss did not fall: {first:.3f} -> {last:.3f}"


RELEASE = {
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_args.json",
    "log.jsonl",
    "hparams.json",
    "all_results.json",
    "test_predictions.jsonl",
    "card_info.json",
    "loss_curve.png",
    "checkpoints",
}  # the layout of checkpoints.py's docstring


def test_g2p_learns_and_saves_a_complete_release(tmp_path, files, capsys, monkeypatch):
    out = tmp_path / "g2p"
    writes, model_saves = [], []
    monkeypatch.setattr(
        trainer, "write_atomic", lambda path, text: (writes.append(path.name), checkpoints.write_atomic(path, text))
    )
    monkeypatch.setattr(
        trainer,
        "save_model_in_place",
        lambda model, folder, weights: (
            model_saves.append(folder),
            checkpoints.save_model_in_place(model, folder, weights),
        ),
    )
    results = run(
        out,
        task="g2p",
        train_file=files["g2p_train"],
        validation_file=files["g2p_validation"],
        test_file=files["g2p_test"],
        max_steps=80,
        eval_every=20,
        batch_tokens=600,
        learning_rate=5e-3,
    )
    assert_loss_falls(out, 0.8)
    assert {p.name for p in out.iterdir()} == RELEASE  # no best/, .release/, tokenizer/ or temporary files
    # each file once; the model once per improvement of the validation WER, into the run folder itself
    assert sorted(writes) == sorted(
        ["training_args.json", "test_predictions.jsonl", "card_info.json", "all_results.json"]
    )
    wers = [h["eval/wer"] for h in json.loads((out / "card_info.json").read_text())["history"] if "eval/wer" in h]
    assert len(model_saves) == sum(w < min(wers[:i], default=float("inf")) for i, w in enumerate(wers))
    assert set(model_saves) == {out}

    # the release loads with the Auto classes alone, and generates what the trainer scored
    rows = predictions_file(out, "test")
    n_test = len(open(files["g2p_test"]).read().splitlines()) - 1
    assert results["test"]["rows"] == len(rows) == n_test
    assert generated(out, [r["source"] for r in rows]) == [r["prediction"] for r in rows]
    # the scores, recomputed from the predictions file: a word is right when it equals its reference;
    # PER = phoneme edits / reference phonemes (jiwer's word-level edit counts on phoneme strings)
    assert results["test"]["wer"] == pytest.approx(sum(r["prediction"] not in r["references"] for r in rows) / n_test)
    edits = jiwer.process_words([r["references"][0] for r in rows], [r["prediction"] or "<empty>" for r in rows])
    assert results["test"]["per"] == pytest.approx(
        (edits.substitutions + edits.deletions + edits.insertions) / sum(len(r["references"][0].split()) for r in rows)
    )
    assert json.loads((out / "all_results.json").read_text())["test"] == results["test"]
    printed = capsys.readouterr().out
    assert f"== test ({n_test} rows) ==" in printed and f"WER: {100 * results['test']['wer']:.2f}%" in printed

    # the card's history is the run's log: the Hub's loss curve has the validation loss too
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    history = curves(CardInfo.from_folder(out).history)
    assert history["eval/loss"] == [(e["step"], e["eval/loss"]) for e in logged if "eval/loss" in e]
    assert history["train/loss"] == [(e["step"], e["train/loss"]) for e in logged if "train/loss" in e]
    assert len(history["eval/loss"]) == 4  # steps 20, 40, 60, 80

    # predict and evaluate subcommands on the saved folder
    first = rows[0]
    assert cli.main(["predict", str(out), first["source"]]) == 0
    assert capsys.readouterr().out.rstrip("\n").split("\t") == [first["source"], first["prediction"]]
    assert cli.main(["evaluate", str(out), "--split", "test"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["wer"] == pytest.approx(results["test"]["wer"]) and scores["rows"] == n_test
    # other data, given as data-argument overrides (strings converted by the argument parser)
    assert (
        cli.main(
            [
                "evaluate",
                str(out),
                "--data",
                f"test_file={files['g2p_validation']}",
                "max_test_samples=3",
                "--max_samples",
                "5",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == 5
    with pytest.raises(ValueError, match=r"unknown data argument\(s\) \['test_fle'\]"):
        cli.main(["evaluate", str(out), "--data", "test_fle=x.tsv"])


def test_translation_learns(tmp_path, files):
    results = run(
        tmp_path,
        task="translation",
        train_file=files["mt"],
        source_lang="de",
        target_lang="en",
        tokenizer_type="wordpiece",
        vocab_size=60,
        max_steps=60,
        batch_size=16,
    )
    assert_loss_falls(tmp_path)
    rows = predictions_file(tmp_path, "validation")  # no test split: scored on the validation split held out
    assert len(rows) == results["validation"]["rows"] == 10  # 5% of 200
    assert generated(tmp_path, [r["source"] for r in rows]) == [r["prediction"] for r in rows]
    references = [[r["references"][0] for r in rows]]
    assert results["validation"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([r["prediction"] for r in rows], references).score
    )
    assert results["validation"]["chrf"] == pytest.approx(
        sacrebleu.corpus_chrf([r["prediction"] for r in rows], references).score
    )


def test_sequence_classification_learns(tmp_path, files, capsys):
    results = run(
        tmp_path,
        task="sequence-classification",
        train_file=files["sst"],
        text_column="sentence",
        label_column="sentiment",
        tokenizer_type="bpe",
        vocab_size=80,
        max_steps=100,
    )
    assert_loss_falls(tmp_path)
    rows = predictions_file(tmp_path, "validation")
    assert results["validation"]["accuracy"] == pytest.approx(
        sum(r["prediction"] == r["reference"] for r in rows) / len(rows)
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["architectures"] == [
        "ScratchformerForSequenceClassification"
    ]
    capsys.readouterr()
    cli.main(["predict", str(tmp_path), "the film was superb"])
    label, probability = capsys.readouterr().out.split("\t")[1].split()
    # predict == the argmax of the saved model's logits, loaded the way any transformers user would
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        p = model(**tokenizer(["the film was superb"], return_tensors="pt")).logits.softmax(-1)[0]
    assert label == model.config.id2label[int(p.argmax())] and probability == f"(p={p.max().item():.3f})"


def test_token_classification_learns(tmp_path, files, capsys):
    results = run(
        tmp_path,
        task="token-classification",
        train_file=files["pos"],
        tokenizer_type="bpe",
        vocab_size=60,
        max_steps=50,
    )
    assert_loss_falls(tmp_path)
    rows = predictions_file(tmp_path, "validation")
    pairs = [(p, r) for row in rows for p, r in zip(row["prediction"], row["reference"], strict=True)]
    assert results["validation"]["accuracy"] == pytest.approx(sum(p == r for p, r in pairs) / len(pairs))
    assert results["validation"]["accuracy"] > 0.5  # chance is about 1/4: it learned
    capsys.readouterr()
    cli.main(["predict", str(tmp_path), "the dog runs"])
    assert [pair.split("/")[0] for pair in capsys.readouterr().out.split("\t")[1].split()] == ["the", "dog", "runs"]


@pytest.mark.parametrize("mixed_precision", ["no", "bf16-weights"])
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, files, mixed_precision):
    """bf16-weights too: its fp32 master weights are the model the checkpoints hold and the release saves."""
    common = dict(
        mixed_precision=mixed_precision,
        task="g2p",
        train_file=files["g2p_train"],
        validation_file=files["g2p_validation"],
        max_steps=12,
        save_every=3,
        eval_every=12,
        batch_tokens=300,
        gradient_accumulation_steps=2,
    )
    run(tmp_path / "straight", **common)
    stopped = run(tmp_path / "resumed", stop_after_steps=7, **common)  # checkpoint at 6 and at 7 (mid-epoch)
    assert stopped == {"step": 7, "stopped": "stop_after_steps=7"}
    assert latest_checkpoint(tmp_path / "resumed").name == "checkpoint-0000007"
    assert not (tmp_path / "resumed" / "model.safetensors").exists()  # no evaluation yet: no best model
    assert not (tmp_path / "resumed" / "all_results.json").exists()
    run(tmp_path / "resumed", resume=True, **common)
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert straight[name].dtype == torch.float32 and torch.equal(straight[name], resumed[name]), name
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    assert_loss_falls(tmp_path / "straight", factor=0.95)  # 12 steps: 3.73 -> 3.39 in fp32


def test_latest_checkpoint_ignores_an_unfinished_write(tmp_path, files):
    run(
        tmp_path,
        task="g2p",
        train_file=files["g2p_train"],
        validation_file=files["g2p_validation"],
        max_steps=4,
        save_every=2,
        eval_every=4,
        batch_tokens=300,
        max_eval_samples=5,
    )
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-0000002", "checkpoint-0000004", "latest"]
    (root / ".tmp-checkpoint-0000006").mkdir()  # a write killed before its rename
    assert latest_checkpoint(tmp_path) == (root / "checkpoint-0000004").resolve()
    (root / "latest").unlink()  # even without the link, the newest complete checkpoint is found
    assert latest_checkpoint(tmp_path) == root / "checkpoint-0000004"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(task="pos-tagging"),
            "task='pos-tagging'; allowed: g2p, translation, token-classification, sequence-classification",
        ),
        (dict(task="sequence-classification", text_column="review"), r"column\(s\) not found: --text_column 'review'"),
        (dict(task="g2p", lr_scheduler="exponential"), "lr_scheduler='exponential'; allowed: noam, linear"),
        (dict(task="g2p", max_target_length=4, too_long="error"), "target sequences are longer than 4 tokens"),
        (
            dict(task="g2p", max_source_length=600),
            "max_source_length=600 exceeds the model's max_position_embeddings=512",
        ),
        (dict(task="g2p", position_encoding="alibi"), "position_encoding='alibi' is invalid; allowed: 'sinusoidal'"),
        (dict(task="g2p", lm_loss="chunked"), "lm_loss='chunked'; allowed: auto, logits, fused"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, files, kwargs, message):
    data = {"g2p": dict(train_file=files["g2p_train"]), "sequence-classification": dict(train_file=files["sst"])}
    with pytest.raises(ValueError, match=message):
        run(tmp_path, **data.get(kwargs["task"], {"train_file": files["g2p_train"]}), **kwargs)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "log.jsonl").exists()


def test_noam_peaks_at_the_learning_rate_after_warmup():
    f = noam(100)
    assert f(99) == pytest.approx(1.0)
    assert f(49) == pytest.approx(0.5)
    assert f(399) == pytest.approx(0.5)  # sqrt(100 / 400)
    assert max(f(s) for s in range(1000)) == pytest.approx(1.0)


def test_argument_precedence_preset_config_flags(tmp_path, monkeypatch, capsys):
    """Through the command line, as `scratchformer train` parses it."""
    config = tmp_path / "run.yaml"
    config.write_text("d_model: 64\nlearning_rate: 0.002\nwarmup_steps: 7\n")
    argv = ["train", "--preset", "g014b2b", "--config", str(config), "--d_model", "96"]
    command, (model_args, data_args, train_args) = cli.parse(argv)
    assert command == "train"
    assert model_args.d_model == 96  # flag beats config
    assert train_args.learning_rate == 0.002 and train_args.warmup_steps == 7  # config beats preset
    assert train_args.num_beams == 4 == config_defaults("g014b2b")["num_beams"]  # preset beats field default
    assert TrainArguments().num_beams == 1  # ... which differs
    assert "seed" not in config_defaults("g014b2b") and train_args.seed == TrainArguments().seed  # field default
    # main runs exactly what parse returns
    seen = []
    monkeypatch.setattr(cli, "train", lambda *parsed: seen.append(parsed) or {"ok": 1})
    assert cli.main(argv) == 0 and seen == [(model_args, data_args, train_args)]

    json_config = tmp_path / "run.json"
    json_config.write_text(json.dumps({"d_modle": 64}))
    for bad, message in (
        (["--config", str(json_config)], "unknown argument(s) ['d_modle']"),
        (["--preset", "huge"], "preset='huge'; allowed: default, g014b2b"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.parse(["train", *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_every_preset_is_a_valid_set_of_arguments():
    """Each recipe parses as `scratchformer train --preset NAME` would, passes the checks a run makes before any
    work, and arrives unchanged in the argument dataclasses."""
    for name, preset in PRESETS.items():
        _, parsed = cli.parse(["train", "--preset", name])
        check_args(*parsed)
        flat = {key: value for arguments in parsed for key, value in asdict(arguments).items()}
        assert {key: flat[key] for key in preset} == preset, name


def test_every_command_parses_its_own_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.parse([name, "--help"])
        assert exit_info.value.code == 0 and capsys.readouterr().out.startswith(f"usage: scratchformer {name}")
    with pytest.raises(SystemExit):
        cli.parse(["--help"])
    listing = capsys.readouterr().out
    assert all(f"  {name:<10} {command.help}" in listing for name, command in cli.COMMANDS.items())


def test_module_entry_point_defaults_to_train(monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["scratchformer.training", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("scratchformer.training", run_name="__main__")
    assert exit_info.value.code == 0
    assert "usage: scratchformer" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["scratchformer.training", "--task", "g2p", "--help"])  # no subcommand: train
    with pytest.raises(SystemExit):
        runpy.run_module("scratchformer.training", run_name="__main__")
    assert "--max_train_minutes" in capsys.readouterr().out


def test_the_average_of_the_last_checkpoints_competes_for_best(tmp_path, files):
    results = run(
        tmp_path,
        task="g2p",
        train_file=files["g2p_train"],
        validation_file=files["g2p_validation"],
        max_steps=12,
        save_every=3,
        eval_every=12,
        save_total_limit=4,
        average_checkpoints=4,
        batch_tokens=300,
        num_beams=2,
        length_penalty=0.6,
    )
    names = results["average"]["checkpoints"]
    assert names == [f"checkpoint-{step:07d}" for step in (3, 6, 9, 12)]
    weights = [load_file(tmp_path / "checkpoints" / name / "model.safetensors") for name in names]
    mean = {k: sum(w[k] for w in weights) / 4 for k in weights[0]}
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    average, final = (next(e for e in log if f"{p}/wer" in e) for p in ("eval_average", "eval"))
    assert results["average"]["kept"] == (average["eval_average/wer"] < final["eval/wer"])
    saved = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).state_dict()
    expected = mean if results["average"]["kept"] else weights[-1]  # the average, or the model at step 12
    assert all(torch.allclose(saved[k], expected[k].float(), atol=1e-6) for k in expected)
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path).generation_config.length_penalty == 0.6
    with pytest.raises(ValueError, match="average_checkpoints=5; allowed: 0 .off. or 2 .. save_total_limit=2"):
        run(tmp_path / "bad", task="g2p", train_file=files["g2p_train"], average_checkpoints=5)


@pytest.mark.parametrize("fused_from, expected", [(4096, "logits"), (8, "fused")])
def test_lm_loss_auto_takes_the_fused_loss_from_a_large_vocabulary(tmp_path, files, monkeypatch, fused_from, expected):
    """--lm_loss auto (the default): the fused loss from FUSED_LOSS_FROM_VOCAB tokens on, the loss on stored logits
    below (G2P's few dozen symbols); the saved model says which one trained it."""
    monkeypatch.setattr(building, "FUSED_LOSS_FROM_VOCAB", fused_from)
    run(tmp_path, task="g2p", train_file=files["g2p_train"], max_steps=2)
    config = json.loads((tmp_path / "config.json").read_text())
    assert 8 <= config["vocab_size"] < 4096
    assert config["lm_loss"] == expected


def test_the_trainer_tells_cpu_users_about_bf16():
    """fp32 with native bf16: a hint; bf16 autocast on a small model: it can be slower than fp32; 16 bits without
    native bf16: emulated; bf16 with sleeping threads (PASSIVE): the wake-ups; GPUs: nothing."""
    level, message = trainer.bf16_advice("no", "cpu", ["avx512_bf16"], 256)
    assert level == logging.INFO and "avx512_bf16" in message and "--mixed_precision bf16" in message
    level, message = trainer.bf16_advice("no", "cpu", ["amx_bf16"], 512)
    assert level == logging.INFO and "--mixed_precision bf16-weights" in message
    level, message = trainer.bf16_advice("bf16", "cpu", ["amx_bf16"], 128)
    assert level == logging.WARNING and "0.92x" in message and "bf16-weights" in message
    level, message = trainer.bf16_advice("bf16-weights", "cpu", [], 256)
    assert level == logging.WARNING and "emulated" in message
    assert trainer.bf16_advice("bf16-weights", "cpu", ["amx_bf16"], 128) is None  # not slower than fp32 there
    level, message = trainer.bf16_advice("bf16", "cpu", [], 512)
    assert level == logging.WARNING and "emulated" in message
    level, message = trainer.bf16_advice("no", "cpu", ["avx512_bf16"], 128)  # the default job: bf16-weights pays
    assert level == logging.INFO and "1.65x" in message
    assert trainer.bf16_advice("bf16", "cpu", ["amx_bf16"], 512) is None  # asked for, and it pays
    assert trainer.bf16_advice("no", "cuda", [], 1024) is None
    # sleeping threads (OMP_WAIT_POLICY=PASSIVE, more than one): said when bf16 is on, not otherwise
    for mixed_precision in ("bf16", "bf16-weights"):
        level, message = trainer.bf16_advice(mixed_precision, "cpu", ["amx_bf16"], 512, "passive", 2)
        assert level == logging.INFO and "OMP_WAIT_POLICY=PASSIVE with 2 threads" in message and "2.24-2.36x" in message
    assert trainer.bf16_advice("bf16-weights", "cpu", ["amx_bf16"], 512, "PASSIVE", 1) is None  # nothing to wake
    assert trainer.bf16_advice("bf16-weights", "cpu", ["amx_bf16"], 512, None, 2) is None  # spinning: torch's default
    assert trainer.bf16_advice("bf16-weights", "cuda", [], 512, "PASSIVE", 2) is None
    assert "natively" in trainer.bf16_advice("no", "cpu", ["amx_bf16"], 512, "PASSIVE", 2)[1]  # fp32: the bf16 hint
    assert set(trainer.cpu_bf16_flags()) <= set(trainer.NATIVE_BF16)
