"""Round-trip an exported model through a real Hub-protocol server on loopback, as a user would pull it.

    scratchformer export outputs/m30k-en-de outputs/hub/m30k-en-de --repo_id scratchformer/m30k-en-de
    python examples/hub_roundtrip.py outputs/hub/m30k-en-de "A dog runs on the beach." "Two men sit on a bench."

The folder becomes a git repo, under the repo id it was exported for, served by olah (tests/olah_hub.py, the
`test` extra) on a free 127.0.0.1 port.
A fresh process, whose HF_ENDPOINT points there and whose HF_HOME is empty, then pulls it by repo id:
- every file of the repo, downloaded with `snapshot_download`, must equal the folder's byte for byte;
- `ModelCard.load(repo_id)` must parse, and its model-index results must equal card_info.json's;
- on the texts, the repo id must give what the local folder gives: through `pipeline(<the card's pipeline_tag>)`,
  or for seq2seq (transformers 5 has no text2text pipeline) through AutoTokenizer + generate();
- the card's Python snippet, run as written, must print its result.
It prints one JSON report and exits 1 if any check fails.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the Hub tests' server and client helpers (hub_fixtures, hub_client)
from hub_client import run_card_snippets  # noqa: E402


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(folder).parts and ".cache" not in p.relative_to(folder).parts
    }


def model_outputs(task: str, model: str, texts: list[str]) -> list:
    """What a user gets on `texts`: the card's pipeline, or for seq2seq (transformers 5 has no text2text or
    translation pipeline) the tokenizer and generate() with the saved generation config, decoded."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
    from transformers.pipelines import get_supported_tasks

    if task in get_supported_tasks():
        runner = pipeline(task, model=model, trust_remote_code=True)
        return json.loads(json.dumps(runner(texts), default=float))
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
    seq2seq = AutoModelForSeq2SeqLM.from_pretrained(model, trust_remote_code=True)
    generated = seq2seq.generate(**tokenizer(texts, padding=True, return_tensors="pt"))
    return tokenizer.batch_decode(generated, skip_special_tokens=True)


def client(folder: Path, repo_id: str, texts: list[str]) -> dict:
    """Runs in the fresh process (HF_ENDPOINT set before huggingface_hub is imported)."""
    from huggingface_hub import ModelCard, snapshot_download

    pulled = Path(snapshot_download(repo_id))
    local, remote = file_hashes(folder), file_hashes(pulled)
    card = ModelCard.load(repo_id)
    info = json.loads((folder / "card_info.json").read_text(encoding="utf-8"))
    card_results = {r.metric_type: r.metric_value for r in card.data.eval_results or []}
    task = card.data.pipeline_tag
    pulled_outputs = model_outputs(task, repo_id, texts)
    local_outputs = model_outputs(task, str(folder), texts)
    snippet = run_card_snippets({"card": repo_id})["card"]["stdout"]  # the tests' runner: the code as written
    checks = {
        "files_equal": local == remote,
        "card_results_equal": bool(card_results) and card_results == info["metrics"],
        "outputs_equal": pulled_outputs == local_outputs,
        "card_snippet_prints": bool(snippet.strip()),
    }
    return {
        "repo_id": repo_id,
        "files": len(remote),
        "missing": sorted(set(local) - set(remote)),
        "differing": sorted(k for k in local.keys() & remote.keys() if local[k] != remote[k]),
        "card_results": card_results,
        "pipeline_tag": task,
        "outputs": pulled_outputs,
        "card_snippet_output": snippet,
        "checks": checks,
        "ok": all(checks.values()),
    }


def serve_and_pull(folder: Path, repo_id: str, texts: list[str]) -> dict:
    from hub_fixtures import client_env, free_port, make_mirror_repo, olah_server

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_mirror_repo(folder, work / "mirror", repo_id)
        with olah_server(work / "mirror", work, probe_repo=repo_id, port=free_port()) as url:
            answer = subprocess.run(
                [sys.executable, __file__, str(folder), *texts, "--client"],
                env=client_env(url, work / "home"),
                capture_output=True,
                text=True,
            )
    if answer.returncode != 0:
        raise SystemExit(f"the pulling process failed:\n{answer.stderr[-4000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder written by `scratchformer export`")
    parser.add_argument("texts", nargs="+", help="inputs for the pipeline")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.folder / "card_info.json").is_file():
        raise SystemExit(f"{args.folder} has no card_info.json; pass a folder written by `scratchformer export`")
    repo_id = json.loads((args.folder / "card_info.json").read_text(encoding="utf-8"))["repo_id"]
    if not repo_id:
        raise SystemExit(f"{args.folder} was exported without a repo id: export it with --repo_id namespace/name")
    if args.client:
        if "HF_ENDPOINT" not in os.environ:
            raise SystemExit("--client runs under serve_and_pull, with HF_ENDPOINT set")
        print(json.dumps(client(args.folder.resolve(), repo_id, args.texts)))
        return
    report = serve_and_pull(args.folder.resolve(), repo_id, args.texts)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
