"""A fresh user's process: load the test models by repo id (or folder) and record what they compute.

    echo '{"repos": [SEQ2SEQ, SEQ_CLS, TOKEN_CLS], "folders": {NAME: DIR}}' |
        python tests/hub_client.py OUT.pt [--block-package] [--pipelines] [--run-card-snippets]

Started by tests/hub_fixtures.py with HF_ENDPOINT pointing at the loopback Hub server. It imports torch
and transformers first and only then reads its job (one JSON line on stdin), so that the parent can
start it while it is still exporting the models and starting the server. --block-package makes
`import scratchformer` fail, as for someone who has only transformers: the models must come from the
remote code shipped in the repos (trust_remote_code=True). Without it the package is imported and no
remote code is trusted. "folders" are extra seq2seq exports loaded from local folders (the variants of
test_remote_code.py). OUT.pt holds tensors, lists and strings; the parent compares them with the local
models.
"""

import argparse
import contextlib
import importlib.abc
import io
import json
import re
import sys

BLOCKED = "scratchformer"
TEXTS = ["the dog did not cross the street", "it was too tired"]  # the second one is padded in a batch
DECODER_INPUT_IDS = [[1, 4, 5, 6, 7], [1, 8, 9, 4, 0]]  # teacher-forced decoder inputs for the logits
MAX_NEW_TOKENS = 8


class BlockPackage(importlib.abc.MetaPathFinder):
    """Refuse to import the scratchformer package, whether installed or editable."""

    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: this process has only transformers)")
        return None


def seq2seq_outputs(model, inputs, torch):
    """Teacher-forced logits and greedy generation of a seq2seq model; the scores of each generated step
    with the cache and without it."""
    with torch.no_grad():
        greedy = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_dict_in_generate=True, output_scores=True)
        cached, uncached = (model.generate(**inputs, **greedy, use_cache=use_cache) for use_cache in (True, False))
        return {
            "logits": model(**inputs, decoder_input_ids=torch.tensor(DECODER_INPUT_IDS)).logits,
            "generated": cached.sequences,
            "scores": torch.stack(cached.scores, 1),
            "scores_uncached": torch.stack(uncached.scores, 1),
        }


def run_card_snippets(repos: dict[str, str]) -> dict:
    """Download each repo's README.md over HTTP and run its Python snippet exactly as written."""
    from huggingface_hub import hf_hub_download

    snippets = {}
    for key, repo_id in repos.items():
        with open(hf_hub_download(repo_id, "README.md"), encoding="utf-8") as readme:
            code = re.search(r"```python\n(.*?)```", readme.read(), flags=re.S).group(1)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(compile(code, f"{repo_id}/README.md", "exec"), {"__name__": "__snippet__"})
        snippets[key] = {"code": code, "stdout": stdout.getvalue()}
    return snippets


def run_pipelines(seq_cls, token_cls, base, tokenizer, torch) -> dict:
    """The three pipelines on the pulled models and tokenizer (the card snippets build theirs from repo ids)."""
    from transformers import pipeline

    results = {}
    classify = pipeline("text-classification", model=seq_cls, tokenizer=tokenizer)
    results["text-classification"] = [{"label": r["label"], "score": float(r["score"])} for r in classify(TEXTS)]
    tag = pipeline("token-classification", model=token_cls, tokenizer=tokenizer)
    results["token-classification"] = [
        [
            {"entity": e["entity"], "score": float(e["score"]), "index": int(e["index"]), "word": e["word"]}
            for e in entities
        ]
        for entities in tag(TEXTS)
    ]
    extract = pipeline("feature-extraction", model=base, tokenizer=tokenizer)
    results["feature-extraction"] = [torch.tensor(extract(text)) for text in TEXTS]
    return results


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--block-package", action="store_true")
    parser.add_argument("--pipelines", action="store_true", help="run the pipelines on the pulled models")
    parser.add_argument("--run-card-snippets", action="store_true")
    args = parser.parse_args(argv)
    if args.block_package:
        sys.meta_path.insert(0, BlockPackage())
    else:
        import scratchformer  # noqa: F401  (registers the Auto classes: no remote code needed)

    import torch
    from transformers import (
        AutoModel,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    job = json.loads(sys.stdin.readline())  # sent once the models are exported and the server answers
    trust = {"trust_remote_code": True} if args.block_package else {}
    repos = dict(zip(("seq2seq", "seq_cls", "token_cls"), job["repos"]))
    results = {"modules": {}, "outputs": {}, "pipelines": {}, "variants": {}, "snippets": {}}

    def load(auto_class, repo_id, key):
        model = auto_class.from_pretrained(repo_id, **trust).eval()
        results["modules"][key] = type(model).__module__
        return model

    tokenizer = AutoTokenizer.from_pretrained(repos["seq2seq"], **trust)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    results["input_ids"] = batch["input_ids"]

    seq2seq = load(AutoModelForSeq2SeqLM, repos["seq2seq"], "seq2seq")
    base = load(AutoModel, repos["seq2seq"], "base")
    seq_cls = load(AutoModelForSequenceClassification, repos["seq_cls"], "seq_cls")
    token_cls = load(AutoModelForTokenClassification, repos["token_cls"], "token_cls")
    with torch.no_grad():
        results["outputs"] |= {f"seq2seq_{k}": v for k, v in seq2seq_outputs(seq2seq, inputs, torch).items()}
        results["outputs"]["base_hidden"] = base(**inputs).last_hidden_state
        results["outputs"]["seq_cls_logits"] = seq_cls(**inputs).logits
        results["outputs"]["token_cls_logits"] = token_cls(**inputs).logits

    if args.pipelines:
        results["pipelines"] = run_pipelines(seq_cls, token_cls, base, tokenizer, torch)

    for name, folder in job.get("folders", {}).items():
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, **trust).eval()
        results["variants"][name] = seq2seq_outputs(model, inputs, torch) | {"module": type(model).__module__}

    if args.run_card_snippets:
        results["snippets"] = run_card_snippets(repos)

    results["package_imported"] = any(name.split(".")[0] == BLOCKED for name in sys.modules)
    torch.save(results, args.out)


if __name__ == "__main__":
    main()
