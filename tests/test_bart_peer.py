"""examples/bart_peer.py, the same-budget peer of the results: BART under transformers' Seq2SeqTrainer, on our data
and tokenizer, scored by our metric (a few steps on tiny G2P files)."""

import json
import sys
from pathlib import Path

import jiwer
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import bart_peer  # noqa: E402


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
