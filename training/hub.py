"""Push a saved model folder to the Hugging Face Hub with the standard huggingface_hub API.

    HF_TOKEN=hf_... scratchformer push outputs/g2p user/scratchformer-g2p --private -m "first model"

The folder (weights, config, tokenizer, card_info.json) is exported afresh into a temporary
folder: remote code, auto_map, the model card rendered with the final repo id, loss curve and
attention map. Only that folder is uploaded; checkpoints and logs next to the weights are not.
The token comes from the `token` argument, HF_TOKEN or `hf auth login`; it goes to HfApi only,
never into a file, a log or the card (the CLI has no --token option: it would land in the
shell history).
"""

import argparse
import logging
import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .export import DEFAULT_MAX_SHARD_SIZE, CardInfo, export_for_hub, load_model_dir

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload scratchformer model"


class NoTokenError(RuntimeError):
    """No Hugging Face token was found."""


def resolve_token(token: str | None = None) -> str:
    """The explicit token, else HF_TOKEN, else the one stored by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise NoTokenError("no Hugging Face token: set the HF_TOKEN environment variable or run `hf auth login` "
                           "(a token with write access, from https://huggingface.co/settings/tokens)")
    return token


def check_repo_id(repo_id: str) -> None:
    """'namespace/name' or 'name' (the token's user namespace), as the Hub accepts them."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repo id {repo_id!r}: expected 'namespace/name' or 'name' "
                         f"(letters, digits, '-', '_', '.'); {error}") from None


def push_to_hub(model_dir: str | Path, repo_id: str, private: bool = False,
                commit_message: str = DEFAULT_COMMIT_MESSAGE, token: str | None = None,
                max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> CommitInfo:
    """Export `model_dir` for the Hub and upload it to `repo_id` (created if missing) in one commit.

    `private` applies when the repo is created; an existing repo keeps its visibility.
    Returns the CommitInfo of the upload (its `commit_url` names the commit).
    """
    check_repo_id(repo_id)
    api = HfApi(token=resolve_token(token))
    model, tokenizer = load_model_dir(model_dir)  # fail on a bad folder before touching the Hub
    info = CardInfo.from_folder(model_dir)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info.repo_id = repo.repo_id  # with the namespace the Hub chose for a bare name
    with tempfile.TemporaryDirectory(prefix="scratchformer-push-") as staging:
        export_for_hub(model, staging, tokenizer, info, max_shard_size=max_shard_size)
        commit = api.upload_folder(repo_id=repo.repo_id, folder_path=staging, commit_message=commit_message,
                                   repo_type="model")
    logger.info("pushed %s to %s", model_dir, commit.commit_url)
    return commit


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `scratchformer push`."""
    parser.add_argument("model_dir", help="the saved model folder (config.json, weights, tokenizer)")
    parser.add_argument("repo_id", help="Hub repo, 'namespace/name' (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("-m", "--message", default=DEFAULT_COMMIT_MESSAGE, help="commit message")
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
                        help="largest safetensors file before the weights are sharded")
    return parser


def run(args: argparse.Namespace) -> int:
    """Push a saved model to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`)."""
    try:
        commit = push_to_hub(args.model_dir, args.repo_id, private=args.private, commit_message=args.message,
                             max_shard_size=args.max_shard_size)
    except (NoTokenError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"scratchformer push: {error}") from None
    print(f"pushed {args.model_dir} to {commit.commit_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m scratchformer.training.hub``; `scratchformer push` is the same."""
    parser = add_arguments(argparse.ArgumentParser(prog="scratchformer push", description=run.__doc__))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
