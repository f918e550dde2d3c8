"""Export a saved model folder for the Hub, and push it with the standard huggingface_hub API.

    scratchformer export outputs/g2p hub/g2p [--repo_id user/scratchformer-g2p]   (on disk, no upload)
    HF_TOKEN=hf_... scratchformer push outputs/g2p user/scratchformer-g2p --private -m "first model"

The folder (weights, config, tokenizer, card_info.json) is exported afresh (``export_folder``): remote
code, auto_map, the model card rendered with the repo id, loss curve and attention map. `push`
uploads exactly that folder, written to a temporary place; checkpoints and logs next to the weights
are not part of it. `export` writes the same folder where you say, to inspect or upload yourself.
The token comes from the `token` argument, HF_TOKEN or `hf auth login`; it goes to HfApi only,
never into a file, a log or the card (the CLI has no --token option: it would land in the
shell history).
"""

import argparse
import dataclasses
import logging
import re
import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from . import ctranslate2_export
from .export import DEFAULT_MAX_SHARD_SIZE, CardInfo, export_for_hub
from .files import require_empty_folder
from .inference import load_saved

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload scratchformer model"


class NoTokenError(RuntimeError):
    """No Hugging Face token was found."""


def resolve_token(token: str | None = None) -> str:
    """The explicit token, else HF_TOKEN, else the one stored by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise NoTokenError(
            "no Hugging Face token: set the HF_TOKEN environment variable or run `hf auth login` "
            "(a token with write access, from https://huggingface.co/settings/tokens)"
        )
    return token


def check_repo_id(repo_id: str) -> None:
    """'namespace/name' or 'name' (the token's user namespace), as the Hub accepts them."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"invalid repo id {repo_id!r}: expected 'namespace/name' or 'name' "
            f"(letters, digits, '-', '_', '.'); {error}"
        ) from None


def load_for_export(model_dir: str | Path) -> tuple:
    """(model, tokenizer or None) of a saved folder."""
    saved = load_saved(model_dir)
    return saved.model, saved.tokenizer


def export_folder(
    model_dir: str | Path,
    out_dir: str | Path,
    repo_id: str | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    loaded=None,
    info: CardInfo | None = None,
) -> Path:
    """Write the Hub folder of the saved run `model_dir` to `out_dir` (which must be empty or absent): what
    `push` uploads. With `repo_id` the card's snippets load that repo; without, the folder itself.
    `loaded`, `info`: the (model, tokenizer) and CardInfo of `model_dir` when the caller holds them already
    (the trainer, as a run ends, or the CLI with its --card_* flags: card_info); otherwise they are read from
    the folder."""
    if repo_id is not None:
        check_repo_id(repo_id)
    out = Path(out_dir)
    require_empty_folder(out)
    model, tokenizer = loaded or load_for_export(model_dir)
    info = dataclasses.replace(info or CardInfo.from_folder(model_dir), repo_id=repo_id)
    return export_for_hub(model, out, tokenizer, info, max_shard_size=max_shard_size)


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    loaded=None,
    info: CardInfo | None = None,
) -> CommitInfo:
    """Export `model_dir` for the Hub and upload it to `repo_id` (created if missing) in one commit.

    `private` applies when the repo is created; an existing repo keeps its visibility. `loaded`, `info`: as
    in `export_folder`. Returns the CommitInfo of the upload (its `commit_url` names the commit).
    """
    check_repo_id(repo_id)
    api = HfApi(token=resolve_token(token))
    loaded = loaded or load_for_export(model_dir)  # fail on a bad folder before touching the Hub
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="scratchformer-push-") as staging:
        # repo.repo_id: with the namespace the Hub chose for a bare name
        export_folder(model_dir, staging, repo.repo_id, max_shard_size=max_shard_size, loaded=loaded, info=info)
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=staging, commit_message=commit_message, repo_type="model"
        )
    logger.info("pushed %s to %s", model_dir, commit.commit_url)
    return commit


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """What the card may say otherwise than the run recorded (export and push)."""
    parser.add_argument(
        "--card_dataset",
        default=None,
        help="the training data as the card names it: a Hub dataset id (then listed under datasets:) or a "
        "description such as 'Multi30k Task 1 (en-de)'; default: the run's --dataset_name or --train_file",
    )
    parser.add_argument(
        "--card_language",
        nargs="+",
        default=None,
        help="the card's languages, ISO 639-1 codes (e.g. en de for translation); default: the task's",
    )


def card_info(args: argparse.Namespace) -> CardInfo | None:
    """The run's CardInfo with --card_dataset / --card_language applied; None when neither is given (the
    export then reads the folder's own)."""
    card = {}
    if args.card_dataset is not None:
        if not args.card_dataset.strip():
            raise ValueError("--card_dataset is empty; give a Hub dataset id or a description")
        card |= {"dataset": args.card_dataset, "dataset_name": args.card_dataset}
    if args.card_language is not None:
        bad = [code for code in args.card_language if not re.fullmatch(r"[a-z]{2,3}", code)]
        if bad:
            raise ValueError(f"--card_language {bad}: expected ISO 639 codes such as en, de")
        card["language"] = list(args.card_language)
    return dataclasses.replace(CardInfo.from_folder(args.model_dir), **card) if card else None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `scratchformer push`."""
    parser.add_argument("model_dir", help="the saved model folder (config.json, weights, tokenizer)")
    parser.add_argument("repo_id", help="Hub repo, 'namespace/name' (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("-m", "--message", default=DEFAULT_COMMIT_MESSAGE, help="commit message")
    parser.add_argument(
        "--max-shard-size",
        default=DEFAULT_MAX_SHARD_SIZE,
        help="largest safetensors file before the weights are sharded",
    )
    add_card_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Push a saved model to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`)."""
    try:
        commit = push_to_hub(
            args.model_dir,
            args.repo_id,
            private=args.private,
            commit_message=args.message,
            max_shard_size=args.max_shard_size,
            info=card_info(args),
        )
    except (NoTokenError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"scratchformer push: {error}") from None
    print(f"pushed {args.model_dir} to {commit.commit_url}")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `scratchformer export`."""
    parser.add_argument("model_dir", help="the saved model folder (config.json, weights, tokenizer)")
    parser.add_argument("out_dir", help="where to write the Hub folder (new or empty)")
    parser.add_argument(
        "--repo_id", default=None, help="the Hub repo the card's snippets load ('namespace/name'); default: the folder"
    )
    parser.add_argument(
        "--format",
        default="hub",
        choices=("hub", "ctranslate2"),
        help="hub: the Hub folder (what `push` uploads); ctranslate2: a CTranslate2 model (seq2seq)",
    )
    parser.add_argument(
        "--quantization",
        default=None,
        help="ctranslate2 only: CTranslate2's weight quantization (int8, int8_float32, float16, ...)",
    )
    parser.add_argument(
        "--max-shard-size",
        default=DEFAULT_MAX_SHARD_SIZE,
        help="largest safetensors file before the weights are sharded",
    )
    add_card_arguments(parser)
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Write the Hub folder of a saved model to disk: exactly what `push` uploads (or, --format ctranslate2, a
    CTranslate2 model)."""
    try:
        if args.format == "ctranslate2":
            if card_info(args) is not None:
                raise ValueError(
                    "--card_dataset / --card_language apply to --format hub only (a CTranslate2 model has no card)"
                )
            saved = load_saved(args.model_dir)
            out = ctranslate2_export.export_ctranslate2(saved.model, saved.tokenizer, args.out_dir, args.quantization)
        elif args.quantization:
            raise ValueError("--quantization applies to --format ctranslate2 only")
        else:
            out = export_folder(
                args.model_dir, args.out_dir, args.repo_id, max_shard_size=args.max_shard_size, info=card_info(args)
            )
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        raise SystemExit(f"scratchformer export: {error}") from None
    print(f"exported {args.model_dir} to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m scratchformer.training.hub``; `scratchformer push` is the same."""
    parser = add_arguments(argparse.ArgumentParser(prog="scratchformer push", description=run.__doc__))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
