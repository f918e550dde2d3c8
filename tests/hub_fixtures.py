"""Fixtures of the Hub tests: tiny exported models, a real Hub-protocol server on loopback, pulled outputs.

Loaded as a pytest plugin (``pytest_plugins = ["hub_fixtures"]``) by test_hub.py, test_pipelines.py
and test_remote_code.py, so the session fixtures run once for all of them.

The server is olah (PyPI) in offline mode: each exported folder becomes a git repo
``<mirror>/models/<org>/<name>`` (olah's local-mirror layout, read from olah/server_mirror.py) and
olah answers the Hub's HTTP API for it (``/api/models/...``, ``/<repo>/resolve/<rev>/<file>``) on a
free 127.0.0.1 port (tests/olah_hub.py launches it, with the Hub's 404 for absent files). Clients are
subprocesses (tests/hub_client.py) whose HF_ENDPOINT points there: huggingface_hub reads it once, at import.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hub_client import DECODER_INPUT_IDS, MAX_NEW_TOKENS, TEXTS
from model_tester import ModelTester
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from scratchformer import (
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
)
from scratchformer.training.export import CardInfo, export_for_hub

TESTS = Path(__file__).parent
ORG = "scratchformer-tests"
WORDS = "the dog did not cross street because it was too tired a cat sat on mat".split()
SENTIMENT = {0: "negative", 1: "positive"}
TAGS = {0: "DET", 1: "NOUN", 2: "VERB", 3: "ADV"}
HEADS = {
    "seq2seq": (ScratchformerForConditionalGeneration, {}),
    "seq_cls": (ScratchformerForSequenceClassification, {"id2label": SENTIMENT, "num_labels": len(SENTIMENT)}),
    "token_cls": (ScratchformerForTokenClassification, {"id2label": TAGS, "num_labels": len(TAGS)}),
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer with the project's special ids (<pad>=0 <s>=1 </s>=2 <unk>=3), </s> appended."""
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


SEEDS = {"seq2seq": 25, "seq_cls": 1, "token_cls": 1}  # seeds whose outputs differ between texts and tokens


def build_model(head: str, **overrides):
    """A tiny model of one head (ModelTester's config), with non-trivial random weights."""
    model_class, head_overrides = HEADS[head]
    config = ModelTester().get_config(vocab_size=4 + len(WORDS), **(head_overrides | overrides))
    torch.manual_seed(SEEDS[head])
    model = model_class(config).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so that heads and tokens differ visibly
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    return model


# Every value of every CHOICES axis at least once, for the remote-code copies of the sources.
REMOTE_CODE_VARIANTS = {
    "additive-relu-window-learned-pre": dict(
        attention_score="additive",
        attention_normalizer="relu",
        attention_pattern="window",
        attention_window=2,
        position_encoding="learned",
        norm_placement="pre",
    ),
    "dot-sigmoid-full-rotary-post": dict(attention_normalizer="sigmoid", position_encoding="rotary"),
    "dot-softmax-linear-none-pre": dict(attention_pattern="linear", position_encoding="none", norm_placement="pre"),
}


def card_info(head: str, repo_id: str | None) -> CardInfo:
    """The card facts the trainer would record."""
    metrics = {
        "seq2seq": {"bleu": 12.5, "chrf": 31.25},
        "seq_cls": {"accuracy": 0.75},
        "token_cls": {"accuracy": 0.5, "f1": 0.4},
    }[head]
    dataset = {
        "seq2seq": ("multi30k", "Multi30k"),
        "seq_cls": ("sst2", "SST-2"),
        "token_cls": ("universal_dependencies", "UD English EWT"),
    }[head]
    return CardInfo(
        repo_id=repo_id,
        dataset=dataset[0],
        dataset_name=dataset[1],
        language=["en"],
        metrics=metrics,
        training={"learning_rate": 0.001, "epochs": 2, "batch_size": 8},
        history=[{"step": s, "train/loss": 4.0 / (1 + s), "train/lr": 1e-3} for s in range(0, 50, 10)]
        + [{"step": 40, "eval/loss": 0.5, "eval/accuracy": 0.75}],
        example_text=TEXTS[0],
    )


def export_head(head: str, out_dir: Path, repo_id: str | None = None, **overrides):
    """Build, export and return (model, tokenizer, folder)."""
    model, tokenizer = build_model(head, **overrides), build_tokenizer()
    export_for_hub(model, out_dir, tokenizer, card_info(head, repo_id))
    return model, tokenizer, out_dir


@pytest.fixture(scope="session")
def variant_exports(tmp_path_factory):
    """Seq2seq exports of REMOTE_CODE_VARIANTS (no tokenizer): name -> SimpleNamespace(model, folder)."""
    root = tmp_path_factory.mktemp("variants")
    exports = {}
    for name, overrides in REMOTE_CODE_VARIANTS.items():
        model = build_model("seq2seq", **overrides)
        export_for_hub(model, root / name)
        exports[name] = SimpleNamespace(model=model, folder=root / name)
    return exports


@pytest.fixture(scope="session")
def hub_exports(tmp_path_factory):
    """The three heads, exported with Hub repo ids: head -> SimpleNamespace(model, tokenizer, folder, repo_id)."""
    root = tmp_path_factory.mktemp("exports")
    exports = {}
    for head in HEADS:
        repo_id = f"{ORG}/tiny-{head.replace('_', '-')}"
        model, tokenizer, folder = export_head(head, root / head, repo_id)
        exports[head] = SimpleNamespace(model=model, tokenizer=tokenizer, folder=folder, repo_id=repo_id)
    return exports


def make_mirror_repo(folder: Path, mirror_root: Path, repo_id: str) -> Path:
    """Commit `folder`'s files to a git repo at olah's mirror path <root>/models/<org>/<name>, branch main."""
    target = mirror_root / "models" / repo_id
    target.mkdir(parents=True)
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    git = ["git", "-c", "user.name=scratchformer tests", "-c", "user.email=tests@localhost", "-C", str(target)]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "export"]):
        subprocess.run(git + command, check=True, capture_output=True)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def olah_server(mirror_root: Path, work_dir: Path, probe_repo: str, port: int, timeout: float = 60.0):
    """Run olah offline (tests/olah_hub.py) on a loopback port, serving the git repos under mirror_root;
    yield its URL once it answers; stop it on exit."""
    config = work_dir / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{(work_dir / "cache").as_posix()}"\n'
        f'mirrors-path = ["{mirror_root.as_posix()}"]\n'
        "[accessibility]\noffline = true\n"
    )
    log = open(work_dir / "olah.log", "wb")
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "olah_hub.py"), "-c", str(config), "--log-path", str(work_dir / "logs")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work_dir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"olah exited with {process.returncode}: {(work_dir / 'olah.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/models/{probe_repo}/revision/main", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"olah did not answer on {url} within {timeout}s: {(work_dir / 'olah.log').read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def hub_port():
    """The server's port, chosen first: the clients, started early, need HF_ENDPOINT at import."""
    return free_port()


@pytest.fixture(scope="session")
def hub_endpoint(hub_port, hub_exports, tmp_path_factory):
    """URL of a loopback Hub serving every export of hub_exports under its repo id."""
    work = tmp_path_factory.mktemp("olah")
    mirror = work / "mirror"
    for export in hub_exports.values():
        make_mirror_repo(export.folder, mirror, export.repo_id)
    with olah_server(mirror, work, probe_repo=hub_exports["seq2seq"].repo_id, port=hub_port) as url:
        yield url


def client_env(endpoint: str, hf_home: Path) -> dict:
    """A user's environment: HF_ENDPOINT at the loopback server, a fresh HF_HOME, online, no token."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "PYTHONPATH")
    }
    return env | {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "OMP_WAIT_POLICY": "PASSIVE",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(TESTS),
    }


def start_client(work: Path, name: str, env: dict, *flags: str) -> subprocess.Popen:
    log = open(work / f"{name}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "hub_client.py"), str(work / f"{name}.pt"), *flags],
        env=env,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child holds its own copy
    return process


@pytest.fixture(scope="session")
def hub_clients(hub_port, tmp_path_factory):
    """Both client processes, started before anything else: they import torch and transformers while this
    process exports the models and starts the server, then wait for their job on stdin."""
    work = tmp_path_factory.mktemp("pulled")
    endpoint = f"http://127.0.0.1:{hub_port}"
    clients = {
        "remote_code": start_client(
            work,
            "remote_code",
            client_env(endpoint, work / "home-remote"),
            "--block-package",
            "--pipelines",
            "--run-card-snippets",
        ),
        "package": start_client(work, "package", client_env(endpoint, work / "home-package")),
    }
    yield work, clients
    for process in clients.values():  # only left running when a fixture before `pulled` failed
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def pulled(hub_clients, hub_endpoint, hub_exports, variant_exports):
    """What the two fresh processes compute from the repos pulled over HTTP, run side by side:
    'remote_code': package blocked, trust_remote_code=True; also runs the pipelines on the pulled models,
    loads the variant folders and runs the card snippets. 'package': package imported, no remote code."""
    work, clients = hub_clients
    repos = [hub_exports[head].repo_id for head in HEADS]
    jobs = {
        "remote_code": {"repos": repos, "folders": {n: str(e.folder) for n, e in variant_exports.items()}},
        "package": {"repos": repos},
    }
    for name, process in clients.items():
        process.stdin.write((json.dumps(jobs[name]) + "\n").encode())
        process.stdin.close()
    results = {}
    for name, process in clients.items():
        process.wait(timeout=300)
        assert process.returncode == 0, f"hub_client {name} failed:\n{(work / f'{name}.log').read_text()[-6000:]}"
        results[name] = torch.load(work / f"{name}.pt", weights_only=True)
    return results


@torch.no_grad()
def local_outputs(exports) -> dict:
    """The computations of hub_client.py, on the in-memory models that were exported."""
    batch = exports["seq2seq"].tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return {
        "input_ids": batch["input_ids"],
        "inputs": inputs,
        **{f"seq2seq_{k}": v for k, v in seq2seq_outputs(exports["seq2seq"].model, inputs).items()},
        "base_hidden": exports["seq2seq"].model.model(**inputs).last_hidden_state,
        "seq_cls_logits": exports["seq_cls"].model(**inputs).logits,
        "token_cls_logits": exports["token_cls"].model(**inputs).logits,
    }


@torch.no_grad()
def seq2seq_outputs(model, inputs) -> dict:
    return {
        "logits": model(**inputs, decoder_input_ids=torch.tensor(DECODER_INPUT_IDS)).logits,
        "generated": model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False),
    }
