"""examples/bart_peer.py, the same-budget peer of the results: BART under transformers' Seq2SeqTrainer, on our data
and tokenizer, scored by our metric (a few steps on tiny G2P files)."""

import json
import sys
from pathlib import Path

import jiwer
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import bart_peer  # noqa: E402
import compare_runs  # noqa: E402


def test_the_peer_trains_bart_and_scores_it_like_ours(tmp_path):
    words = ["cab", "bad", "dab", "ace", "bead", "face", "fade", "cafe", "deaf", "bed", "fed", "dad"]
    for split, rows in (("train", words * 3), ("validation", words[:6]), ("test", words[6:])):
        (tmp_path / f"{split}.tsv").write_text(
            "source\ttarget\n" + "".join(f"{w}\t{' '.join(c.upper() for c in w)}\n" for w in rows)
        )
    results = bart_peer.main(
        [
            "--preset",
            "default",
            "--output_dir",
            str(tmp_path / "peer"),
            "--max_steps",
            "6",
            *[f"--{s}_file={tmp_path / s}.tsv" for s in ("train", "validation", "test")],
        ]  # fmt: skip
    )
    assert results["train"]["steps"] == 6 and results["test"]["rows"] == 6
    assert json.loads((tmp_path / "peer" / "peer_results.json").read_text()) == results
    rows = [json.loads(line) for line in (tmp_path / "peer" / "test_predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == words[6:]
    wrong = sum(r["prediction"] not in r["references"] for r in rows)  # WER by hand: a word is right or wrong
    assert results["test"]["wer"] == wrong / len(rows)
    # PER: phoneme edits over reference phonemes (one reference per word here), by jiwer at the phoneme level
    per = jiwer.wer([r["references"][0] for r in rows], [r["prediction"] for r in rows])
    assert results["test"]["per"] == pytest.approx(per)

    # compare_runs.py draws the peer beside our runs from the Trainer's own log history
    history = json.loads((tmp_path / "peer" / "trainer_state.json").read_text())["log_history"]
    evals = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    assert evals and evals[-1][0] == 6  # the Trainer validates at the last step
    peer, series = compare_runs.read_run(tmp_path / "peer")
    assert series["eval/loss"] == evals and peer["test"] == results["test"]
    assert peer["validation_best"] == {
        "loss": min(loss for _, loss in evals),
        "step": min(evals, key=lambda e: e[1])[0],
    }
    assert "| peer | 6 |" in compare_runs.table({"peer": (peer, series)})


def test_the_peer_predicts_in_dataset_order(tmp_path):
    """Length-grouped batches make transformers' Trainer group evaluation rows by length as well, and predict()
    returns them in that order; predict_in_order must give row i the output of row i. An untrained BART with
    large random weights (its greedy outputs differ from input to input) against generate() on each row alone, rows of growing length
    (the grouped sampler puts the longest first)."""
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from scratchformer.training.args import ModelArguments

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: 4 + i for i, c in enumerate("abcdefghij")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    model = bart_peer.bart(
        ModelArguments(d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=64), tokenizer, 64
    )
    torch.manual_seed(0)
    for weight in model.parameters():  # at BART's init (std 0.02) every input gives the same output; at std 1, not
        torch.nn.init.normal_(weight, std=1.0)
    model.generation_config.max_new_tokens, model.generation_config.num_beams = 6, 1
    sources = ["abcdefghij"[: 1 + i % 10] * (1 + i // 10) for i in range(24)]  # lengths 1 .. 30
    rows = Dataset.from_dict({"input_ids": [tokenizer(s)["input_ids"] for s in sources]})
    rows = rows.add_column("labels", [[1, 2]] * len(rows))
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, predict_with_generate=True, report_to="none",
        use_cpu=True, **bart_peer.length_grouped(),
    )  # fmt: skip
    trainer = Seq2SeqTrainer(model=model, args=args, data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    output = bart_peer.predict_in_order(trainer, rows)
    model.eval()
    assert len({tuple(p) for p in output.predictions.tolist()}) >= 5  # outputs that tell rows apart (7 kinds here)
    for i, row in enumerate(rows):
        alone = model.generate(torch.tensor([row["input_ids"]]))[0].tolist()
        got = [t for t in output.predictions[i].tolist() if t >= 0]
        assert got[: len(alone)] == alone and not any(t != tokenizer.pad_token_id for t in got[len(alone) :]), i
    assert args.to_dict() == trainer.args.to_dict()  # the grouping is back on for training
