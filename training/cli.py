"""The `scratchformer` command: a small registry of subcommands.

    scratchformer train --preset default               (or --task ..., --config run.yaml, any flag)
    scratchformer evaluate MODEL_DIR [--split test]    (--data test_file=... to score other data)
    scratchformer predict MODEL_DIR "transformer" ...
    scratchformer attention MODEL_DIR "a text"         (a PNG of every layer's and head's weights)
    scratchformer export MODEL_DIR OUT_DIR             (the Hub folder on disk; `push` uploads the same)
    scratchformer push MODEL_DIR user/name
    scratchformer demo MODEL_DIR_OR_REPO [--port N]   (a Gradio app with an attention explorer; the [demo] extra)

A subcommand is one entry in COMMANDS: its parser and what it runs. `parse` turns a command line into
(command, parsed arguments) and `main` runs them; `train` parses through `args.parse_args`, the one
implementation of the defaults < --preset < --config < flags precedence.
"""

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import args as train_args
from . import attention_maps, hub
from .inference import evaluate_saved, predict
from .trainer import train


@dataclass(frozen=True)
class Command:
    help: str
    parse: Callable[[list[str], str], object]  # (arguments after the command name, prog) -> parsed
    run: Callable[[object], int]


def argparse_command(add_arguments, run, description: str) -> Command:
    """A command whose flags are plain argparse arguments."""

    def parse(argv, prog):
        parser = argparse.ArgumentParser(prog=prog, description=description)
        add_arguments(parser)
        return parser.parse_args(argv)

    return Command(description.strip().split("\n")[0], parse, run)


# ------------------------------------------------------------------------------------------------ train
def run_train(parsed) -> int:
    """Train a model (default: G2P on CMUdict), evaluate it on test and save it."""
    results = train(*parsed)
    return 0 if results else 1


# --------------------------------------------------------------------------------------------- evaluate
def add_evaluate_arguments(parser):
    parser.add_argument("model_dir", help="a folder written by `scratchformer train`")
    parser.add_argument("--split", default="test", help="train, validation or test")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--num_beams", type=int, default=None, help="override the saved generation config")
    parser.add_argument("--max_samples", type=int, default=None, help="score only the first N rows")
    parser.add_argument(
        "--data",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="data arguments overriding the saved ones, e.g. test_file=other.tsv data_dir=...",
    )
    return parser


def run_evaluate(args) -> int:
    """Score a saved model on a split of its task's data (metrics as JSON)."""
    overrides = {}
    for item in args.data:
        if "=" not in item:
            raise SystemExit(f"--data expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        overrides[name] = value
    scores = evaluate_saved(args.model_dir, overrides, args.split, args.batch_size, args.num_beams, args.max_samples)
    print(json.dumps(scores, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- predict
def add_predict_arguments(parser):
    parser.add_argument("model_dir", help="a folder written by `scratchformer train`")
    parser.add_argument("texts", nargs="+", help="words (g2p), sentences, or space-separated tokens (tagging)")
    parser.add_argument("--num_beams", type=int, default=None)
    parser.add_argument(
        "--engine",
        default="torch",
        choices=("torch", "ctranslate2"),
        help="ctranslate2 (seq2seq): decode with CTranslate2, from its export folder or the saved run",
    )
    return parser


def run_predict(args) -> int:
    """Print the model's output for each text: phonemes, a translation, a label, or a tag per word."""
    task, outputs = predict(args.model_dir, args.texts, args.num_beams, args.engine)
    for text, output in zip(args.texts, outputs):
        print(f"{text}\t{task.format_prediction(output)}")
    return 0


# ------------------------------------------------------------------------------------------------- demo
def add_demo_arguments(parser):
    parser.add_argument("model", help="a saved or exported folder, or a Hub repo id")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (0.0.0.0: every interface)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="load with the repo's own model code (as from_pretrained(trust_remote_code=True)); "
        "by default the installed package's classes load the weights",
    )
    return parser


def run_demo(args) -> int:
    """Serve a Gradio app for a folder or Hub repo: its task's output and an attention explorer."""
    try:
        from . import demo  # gradio: the optional [demo] extra
    except ImportError as error:
        raise SystemExit(f"scratchformer demo needs gradio: pip install 'scratchformer[demo]' ({error})") from None
    try:
        app = demo.build_app(args.model, trust_remote_code=args.trust_remote_code)
    except demo.DemoError as error:
        raise SystemExit(f"scratchformer demo: {error}") from None
    demo.launch(app, host=args.host, port=args.port)
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(run_train.__doc__, train_args.parse_args, run_train),
    "evaluate": argparse_command(add_evaluate_arguments, run_evaluate, run_evaluate.__doc__),
    "predict": argparse_command(add_predict_arguments, run_predict, run_predict.__doc__),
    "attention": argparse_command(attention_maps.add_arguments, attention_maps.run, attention_maps.run.__doc__),
    "export": argparse_command(hub.add_export_arguments, hub.run_export, hub.run_export.__doc__),
    "push": argparse_command(hub.add_arguments, hub.run, hub.run.__doc__),
    "demo": argparse_command(add_demo_arguments, run_demo, run_demo.__doc__),
}


def top_parser() -> argparse.ArgumentParser:
    """`scratchformer COMMAND ...`: the command's name; what follows goes to the command's own parser."""
    listing = "\n".join(f"  {name:<10} {command.help}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="scratchformer",
        description=__doc__.split("\n\n")[0],
        epilog=f"commands:\n{listing}\n\n`scratchformer COMMAND --help` for its flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help=", ".join(COMMANDS))
    return parser


def parse(argv: list[str]) -> tuple[str, object]:
    """(command name, its parsed arguments): what `main` runs."""
    top = top_parser().parse_args(argv[:1])
    return top.command, COMMANDS[top.command].parse(argv[1:], f"scratchformer {top.command}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name, parsed = parse(argv)
    return COMMANDS[name].run(parsed)


if __name__ == "__main__":
    sys.exit(main())
