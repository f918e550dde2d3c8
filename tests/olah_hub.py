"""Launch olah (offline) so that a path missing from a local mirror repo gets the Hub's answer.

    python tests/olah_hub.py -c olah.toml --log-path LOGS      (same arguments as olah-cli)

olah 0.5 serves a local git mirror, but a HEAD/GET of a file, or a tree listing of a folder, that the
mirror repo lacks falls through to the upstream Hub; offline that ends in 401 "Repository not found".
huggingface.co answers 404 with ``X-Error-Code: EntryNotFound``, which clients read as "this optional
file is absent" (AutoTokenizer probes tokenizer.model, chat_template.jinja, additional_chat_templates/,
...). This launcher wraps olah's three handlers: when one answers 401 for a repo that a local mirror
holds at the requested revision, the answer becomes olah's own 404 EntryNotFound. Everything else,
the HTTP routes and the git-backed files included, is olah's unchanged code.
"""

import functools

import olah.server
import olah.server_api_routes
import olah.server_file_routes
from olah.errors import error_entry_not_found
from olah.server_access import build_repo_ref
from olah.server_mirror import has_local_mirror, load_local_mirror_payload


def in_local_mirror(app, repo_type, org, repo, commit) -> bool:
    """True when a local mirror repo exists and knows the revision."""
    ref = build_repo_ref(repo_type, org, repo)
    return (
        has_local_mirror(app, ref)
        and load_local_mirror_payload(app, ref, lambda local: local.get_meta(commit), app.state.logger) is not None
    )


def missing_entry_is_404(handler):
    """Turn the offline fallback's 401 into the Hub's 404 for a path absent from a known mirror revision."""

    @functools.wraps(handler)
    async def wrapped(app, **kwargs):
        response = await handler(app, **kwargs)
        if response.status_code == 401 and in_local_mirror(
            app, kwargs["repo_type"], kwargs["org"], kwargs["repo"], kwargs["commit"]
        ):
            return error_entry_not_found()
        return response

    return wrapped


for module, name in (
    (olah.server_file_routes, "file_head_common"),
    (olah.server_file_routes, "file_get_common"),
    (olah.server_api_routes, "tree_proxy_common"),
):
    setattr(module, name, missing_entry_is_404(getattr(module, name)))

if __name__ == "__main__":
    olah.server.main()
