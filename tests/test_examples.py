"""The data-preparation scripts of examples/: what they write from small files made here."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

from datasets import load_dataset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PAIRS = {  # split stem -> (en, de) lines, one with a tab and one with quotes inside
    "train": (["A dog runs.", 'A "big" cat\tsleeps.'], ["Ein Hund rennt.", 'Eine "große" Katze\tschläft.']),
    "val": (["Two men."], ["Zwei Männer."]),
    "test_2016_flickr": (["A girl sings.", "Kids play."], ["Ein Mädchen singt.", "Kinder spielen."]),
}


def write_multi30k(folder: Path, pairs=PAIRS) -> Path:
    folder.mkdir()
    for stem, (en, de) in pairs.items():
        for lang, lines in (("en", en), ("de", de)):
            with gzip.open(folder / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
    return folder


def multi30k_jsonl(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, str(EXAMPLES / "multi30k_jsonl.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def test_multi30k_jsonl_keeps_every_pair_as_it_is(tmp_path):
    data = write_multi30k(tmp_path / "multi30k")
    done = multi30k_jsonl(data, tmp_path / "en-de")
    assert done.returncode == 0, done.stderr
    for split, stem in (("train", "train"), ("validation", "val"), ("test", "test_2016_flickr")):
        rows = load_dataset("json", data_files=str(tmp_path / "en-de" / f"{split}.jsonl"), split="train")
        en, de = PAIRS[stem]
        assert rows["source"] == en and rows["target"] == de
    reverse = multi30k_jsonl(data, tmp_path / "de-en", "--source", "de", "--target", "en")
    assert reverse.returncode == 0, reverse.stderr
    first = json.loads((tmp_path / "de-en" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == {"source": "Ein Hund rennt.", "target": "A dog runs."}


def test_multi30k_jsonl_refuses_bad_input(tmp_path):
    uneven = {**PAIRS, "val": (["Two men.", "One more."], ["Zwei Männer."])}
    data = write_multi30k(tmp_path / "multi30k", uneven)
    done = multi30k_jsonl(data, tmp_path / "out")
    assert done.returncode != 0 and "val: 2 en lines but 1 de lines" in done.stderr
    assert not (tmp_path / "out").exists()  # checked before anything is written
    (tmp_path / "out").mkdir()
    assert "exists" in multi30k_jsonl(write_multi30k(tmp_path / "good"), tmp_path / "out").stderr  # never overwritten
    same = multi30k_jsonl(data, tmp_path / "other", "--source", "de", "--target", "de")
    assert same.returncode != 0 and "both 'de'" in same.stderr
