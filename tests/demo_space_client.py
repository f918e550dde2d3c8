"""A Space's process: only gradio, torch and transformers; the repo's files downloaded and its app.py run.

    echo REPO_ID | python tests/demo_space_client.py OUT.json

Started by test_demo.py with HF_ENDPOINT pointing at the loopback Hub (hub_fixtures), before the parent exports
the models and starts the server: it blocks `scratchformer` (hub_client.BlockPackage), imports gradio, torch and
transformers, and then reads the repo id on stdin. It downloads the repo as a Space would have it, imports its app.py, builds
the app as `python app.py` does (app.main, its launch replaced) and from the Hub id itself, runs a text
through each, serves one on a loopback port and fetches its page. OUT.json holds what the parent checks.
"""

import json
import sys
import urllib.request

from hub_client import BLOCKED, TEXTS, BlockPackage

KIND, LAYER, HEAD = "cross", "2", "3"
MAX_NEW_TOKENS = 8


def run(app_module, gradio_app) -> dict:
    """The output and the explorer's payload for TEXTS[0] (greedy, MAX_NEW_TOKENS), at (KIND, LAYER, HEAD)."""
    demo = gradio_app.scratchformer
    served = demo.models.first
    result = demo.run(served.source, TEXTS[0], 1, False, 1.0, 1.0, MAX_NEW_TOKENS, KIND, LAYER, HEAD)
    page = result[demo.explorer]
    return {
        "output": result[demo.outputs[served.head.output]],
        "message": result[demo.message],
        "payload": app_module.payload(result[demo.maps], KIND, int(LAYER), int(HEAD)),
        "html_has_payload": "data-payload=" in page,
        "model_module": type(served.model).__module__,
    }


def main(out: str) -> None:
    sys.meta_path.insert(0, BlockPackage())
    import gradio  # noqa: F401  (the slow imports, while the parent prepares the repo)
    import transformers  # noqa: F401
    from huggingface_hub import snapshot_download

    repo_id = sys.stdin.readline().strip()
    folder = snapshot_download(repo_id)
    sys.path.insert(0, folder)
    import app

    built = {}
    app.launch = lambda gradio_app, **kwargs: built.setdefault("app", gradio_app)  # what `python app.py` serves
    app.main([])
    results = {"app_file": app.__file__, "folder": folder, "space": run(app, built["app"])}
    by_id = app.build_app(repo_id, trust_remote_code=True, model_picker=False)
    results["hub_id"] = run(app, by_id)

    served = built["app"]
    served.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(served.local_url, timeout=30) as page:
            results["page"] = {"status": page.status, "has_title": b"scratchformer demo" in page.read()}
    finally:
        served.close()
    results["package_imported"] = sorted(name for name in sys.modules if name.split(".")[0] == BLOCKED)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
