"""examples/hub_roundtrip.py: an export served by the loopback Hub (olah), pulled by a fresh process, compared."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import TEXTS, export_head  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "hub_roundtrip.py"


def roundtrip(folder: Path) -> tuple[int, dict | str]:
    answer = subprocess.run([sys.executable, str(SCRIPT), str(folder), *TEXTS], capture_output=True, text=True)
    try:
        return answer.returncode, json.loads(answer.stdout)
    except json.JSONDecodeError:
        return answer.returncode, answer.stdout + answer.stderr


@pytest.mark.parametrize("head", ["seq2seq", "seq_cls"])
def test_export_round_trips(tmp_path, head):
    """The pulled files equal the folder's, the card's results equal card_info's, the pulled model gives the
    local folder's outputs (generate() for seq2seq, the pipeline for a classifier), the card's snippet runs."""
    _, tokenizer, folder = export_head(head, tmp_path / "export", repo_id=f"scratchformer-tests/roundtrip-{head}")
    code, report = roundtrip(folder)
    assert code == 0, report
    assert report["checks"] == {
        "files_equal": True,
        "card_results_equal": True,
        "outputs_equal": True,
        "card_snippet_prints": True,
    }
    assert report["files"] == len([p for p in folder.iterdir() if p.is_file()])
    assert report["pipeline_tag"] == {"seq2seq": "text2text-generation", "seq_cls": "text-classification"}[head]
    assert len(report["outputs"]) == len(TEXTS)


def test_a_card_that_disagrees_with_card_info_fails(tmp_path):
    """The check can fail: results edited in card_info.json after the card was rendered no longer match it."""
    _, _, folder = export_head("seq_cls", tmp_path / "export", repo_id="scratchformer-tests/roundtrip-edited")
    info = json.loads((folder / "card_info.json").read_text())
    info["metrics"]["accuracy"] = 0.99
    (folder / "card_info.json").write_text(json.dumps(info))
    code, report = roundtrip(folder)
    assert code == 1 and report["checks"]["card_results_equal"] is False and report["checks"]["files_equal"]


def test_refuses_an_export_without_a_repo_id(tmp_path):
    _, _, folder = export_head("seq2seq", tmp_path / "export")
    code, message = roundtrip(folder)
    assert code == 1 and "--repo_id" in message
