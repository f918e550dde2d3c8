"""Push without network: HfApi.create_repo / upload_folder are replaced by recorders, and the test checks
the exact files (names and contents) that would reach the Hub, the calls' arguments, and the token's path.
"""

import json
import logging
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl, constants
from safetensors.torch import load_file

from scratchformer.training import cli
from scratchformer.training.export import remote_code_sources
from scratchformer.training.hub import NoTokenError, push_to_hub, resolve_token

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import build_model, build_tokenizer, card_info  # noqa: E402

TOKEN = "hf_scratchformerTestToken0123456789abcdef"  # a fake token, searched for everywhere afterwards
REPO = "someone/tiny-g2p"
UPLOADED = {  # what a seq2seq export holds
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_scratchformer.py",
    "modeling_scratchformer.py",
    "attention_scratchformer.py",
    "masks_scratchformer.py",
    "positions_scratchformer.py",
    "loss_scratchformer.py",
    "linear_scratchformer.py",
    "compat_scratchformer.py",
    "README.md",
    "card_info.json",
    "loss_curve.png",
    "attention_map.png",
    "app.py",  # the demo (a Gradio Space), with the modules it imports and its requirements
    "attention_weights.py",
    "predictions.py",
    "requirements.txt",
}


def save_run(folder, head):
    """A folder as `scratchformer train` leaves it: the release plus run files that must not be uploaded."""
    build_model(head).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    (folder / "card_info.json").write_text(card_info(head, None).to_json())
    (folder / "log.jsonl").write_text('{"step": 1, "train/loss": 3.0}\n')
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1" / "optimizer.bin").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture
def saved_dir(tmp_path):
    return save_run(tmp_path / "run", "seq2seq")


@pytest.fixture
def saved_cls_dir(tmp_path):
    """A sequence classifier: its export (and attention picture) is the cheapest."""
    return save_run(tmp_path / "run", "seq_cls")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Record HfApi calls and snapshot the uploaded folder (a temporary one, gone after the push); start with no
    token in the environment and no login."""
    calls = {"create_repo": [], "upload_folder": [], "files": {}}

    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None, **kwargs):
        calls["create_repo"].append(
            {
                "token": self.token,
                "repo_id": repo_id,
                "private": private,
                "exist_ok": exist_ok,
                "repo_type": repo_type,
                **kwargs,
            }
        )
        return RepoUrl(f"{constants.ENDPOINT}/{repo_id}", endpoint=constants.ENDPOINT)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, repo_type=None, **kwargs):
        calls["upload_folder"].append(
            {
                "token": self.token,
                "repo_id": repo_id,
                "commit_message": commit_message,
                "repo_type": repo_type,
                **kwargs,
            }
        )
        calls["files"] = {
            p.relative_to(folder_path).as_posix(): p.read_bytes()
            for p in sorted(Path(folder_path).rglob("*"))
            if p.is_file()
        }
        return CommitInfo(
            commit_url=f"{constants.ENDPOINT}/{repo_id}/commit/abc123",
            commit_message=commit_message,
            commit_description="",
            oid="abc123",
            _endpoint=constants.ENDPOINT,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    return calls


def test_push_uploads_exactly_the_export(saved_dir, hub, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    commit = push_to_hub(saved_dir, REPO, private=True, commit_message="first model")

    assert hub["create_repo"] == [
        {"token": TOKEN, "repo_id": REPO, "private": True, "exist_ok": True, "repo_type": "model"}
    ]
    assert len(hub["upload_folder"]) == 1
    upload = hub["upload_folder"][0]
    assert (upload["token"], upload["repo_id"], upload["commit_message"], upload["repo_type"]) == (
        TOKEN,
        REPO,
        "first model",
        "model",
    )
    assert commit.commit_url.endswith(f"/{REPO}/commit/abc123")

    files = hub["files"]
    assert set(files) == UPLOADED  # no log.jsonl, no checkpoints/
    for name, text in remote_code_sources().items():
        assert files[name].decode() == text
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_scratchformer.ScratchformerForConditionalGeneration"
    assert config["architectures"] == ["ScratchformerForConditionalGeneration"]
    (saved_dir / "uploaded.safetensors").write_bytes(files["model.safetensors"])
    uploaded, original = load_file(saved_dir / "uploaded.safetensors"), load_file(saved_dir / "model.safetensors")
    assert uploaded.keys() == original.keys()
    assert all(torch.equal(uploaded[k], original[k]) for k in original)
    assert json.loads(files["tokenizer.json"]) == json.loads((saved_dir / "tokenizer.json").read_text())
    assert json.loads(files["card_info.json"])["repo_id"] == REPO
    card = ModelCard(files["README.md"].decode())
    assert f'"{REPO}"' in card.text and card.data.model_name == "tiny-g2p"
    assert files["loss_curve.png"].startswith(b"\x89PNG") and files["attention_map.png"].startswith(b"\x89PNG")

    leaks = [name for name, data in files.items() if TOKEN.encode() in data]
    assert not leaks, f"the token is in {leaks}"
    assert TOKEN not in caplog.text and TOKEN not in "".join(capsys.readouterr())


def test_the_token_comes_from_the_argument_the_environment_or_the_login(hub, monkeypatch, tmp_path):
    assert resolve_token("hf_explicit") == "hf_explicit"
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert resolve_token() == TOKEN
    monkeypatch.delenv("HF_TOKEN")
    token_file = tmp_path / "home" / "token"  # where `hf auth login` stores it
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    assert resolve_token() == TOKEN


def test_push_without_token_fails_before_touching_the_hub(saved_dir, hub):
    with pytest.raises(NoTokenError, match="HF_TOKEN.*hf auth login"):
        push_to_hub(saved_dir, REPO)
    assert hub["create_repo"] == [] and hub["upload_folder"] == []


@pytest.mark.parametrize("repo_id", ["a/b/c", "bad repo", "-x/y", ""])
def test_push_refuses_bad_repo_ids(saved_dir, hub, monkeypatch, repo_id):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(ValueError, match="invalid repo id.*namespace/name"):
        push_to_hub(saved_dir, repo_id)
    assert hub["create_repo"] == []


def test_push_refuses_a_folder_without_a_model(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        push_to_hub(tmp_path / "missing", REPO)
    assert hub["create_repo"] == []


def test_cli_push(saved_cls_dir, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli.main(["push", str(saved_cls_dir), REPO, "--private", "-m", "from the CLI"]) == 0
    assert hub["create_repo"][0]["private"] is True
    assert hub["upload_folder"][0]["commit_message"] == "from the CLI"
    assert "generation_config.json" not in hub["files"] and "model.safetensors" in hub["files"]
    out = capsys.readouterr().out
    assert f"/{REPO}/commit/abc123" in out and TOKEN not in out

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SystemExit, match="scratchformer push: no Hugging Face token"):
        cli.main(["push", str(saved_cls_dir), REPO])


def test_trainer_push_to_hub_uploads_the_finished_run(tmp_path, hub, monkeypatch):
    """`train --push_to_hub REPO` ends with one upload of the export of the trained folder."""
    from test_training import g2p_rows, run

    data = {}
    for split, (n, seed) in {"train": (60, 0), "validation": (10, 1), "test": (10, 2)}.items():
        data[split] = tmp_path / f"{split}.tsv"
        data[split].write_text("source\ttarget\n" + "".join(f"{w}\t{p}\n" for w, p in g2p_rows(n, seed)))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run(
        tmp_path / "out",
        task="g2p",
        train_file=str(data["train"]),
        validation_file=str(data["validation"]),
        test_file=str(data["test"]),
        max_steps=3,
        push_to_hub=REPO,
        hub_private=True,
    )
    assert [c["private"] for c in hub["create_repo"]] == [True]
    assert len(hub["upload_folder"]) == 1 and hub["upload_folder"][0]["repo_id"] == REPO
    assert set(hub["files"]) == UPLOADED
    assert not any(TOKEN.encode() in content for content in hub["files"].values())


def test_trainer_push_to_hub_without_a_token_fails_before_training(tmp_path, hub):
    from test_training import run

    with pytest.raises(NoTokenError):
        run(tmp_path / "out", task="g2p", train_file=str(tmp_path / "missing.tsv"), push_to_hub=REPO)
    assert not (tmp_path / "out").exists() and hub["create_repo"] == []


def test_cli_export_writes_exactly_what_push_uploads(saved_dir, hub, monkeypatch, tmp_path, capsys):
    """`scratchformer export DIR OUT --repo_id R` on disk == the folder `push DIR R` uploads, byte for byte."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_to_hub(saved_dir, REPO)
    out = tmp_path / "hub-folder"
    assert cli.main(["export", str(saved_dir), str(out), "--repo_id", REPO]) == 0
    exported = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert set(exported) == set(hub["files"]) == UPLOADED
    assert {name for name in exported if exported[name] != hub["files"][name]} == set()
    assert str(out) in capsys.readouterr().out


def test_cli_export_refuses_to_overwrite_and_bad_folders(saved_cls_dir, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="scratchformer export: .*taken exists and is not an empty folder"):
        cli.main(["export", str(saved_cls_dir), str(taken)])
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]  # nothing written next to it
    with pytest.raises(SystemExit, match="scratchformer export: .*no config.json"):
        cli.main(["export", str(tmp_path / "missing"), str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="scratchformer export: invalid repo id"):
        cli.main(["export", str(saved_cls_dir), str(tmp_path / "out"), "--repo_id", "not a/valid/id"])
    assert not (tmp_path / "out").exists()
    out = tmp_path / "local"
    assert cli.main(["export", str(saved_cls_dir), str(out)]) == 0  # no repo id: the card loads the folder
    assert "This folder is not on the Hub yet" in (out / "README.md").read_text()


def test_cli_export_card_flags_rename_the_data_and_set_the_languages(saved_dir, tmp_path):
    """--card_dataset / --card_language replace what the run recorded, in card_info.json and the card's YAML."""
    out = tmp_path / "named"
    flags = ["--card_dataset", "Multi30k Task 1 (en-de)", "--card_language", "en", "de"]
    assert cli.main(["export", str(saved_dir), str(out), "--repo_id", REPO, *flags]) == 0
    info = json.loads((out / "card_info.json").read_text())
    assert info["dataset"] == info["dataset_name"] == "Multi30k Task 1 (en-de)" and info["language"] == ["en", "de"]
    card = ModelCard.load(out / "README.md")
    assert card.data.language == ["en", "de"]
    assert card.data.datasets is None  # a description, not a Hub dataset id
    assert {r.dataset_name for r in card.data.eval_results} == {"Multi30k Task 1 (en-de)"}
    hub_id = tmp_path / "hub-id"
    assert cli.main(["export", str(saved_dir), str(hub_id), "--card_dataset", "bentrevett/multi30k"]) == 0
    assert ModelCard.load(hub_id / "README.md").data.datasets == ["bentrevett/multi30k"]
    saved_info = json.loads((saved_dir / "card_info.json").read_text())
    assert saved_info["dataset"] != "Multi30k Task 1 (en-de)"  # the run's own record is left alone


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--card_language", "English"], r"--card_language \['English'\]: expected ISO 639 codes"),
        (["--card_dataset", " "], "--card_dataset is empty"),
        (["--format", "ctranslate2", "--card_language", "en"], "apply to --format hub only"),
    ],
)
def test_cli_export_card_flags_refuse_bad_values(saved_dir, tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(["export", str(saved_dir), str(tmp_path / "out"), *flags])
    assert not (tmp_path / "out").exists()
