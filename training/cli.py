"""The `scratchformer` command: a small registry of subcommands.

    scratchformer train --preset default               (or --task ..., --config run.yaml, any flag)
    scratchformer evaluate MODEL_DIR [--split test]    (--test_file etc. to score other data)
    scratchformer predict MODEL_DIR "transformer" ...
    scratchformer export MODEL_DIR OUT_DIR             (the Hub folder on disk; `push` uploads it)

A subcommand is one entry in COMMANDS: name -> (add_arguments(parser), run(args)). Parsers are
HfArgumentParser (an argparse.ArgumentParser), so dataclass arguments can be added too. A command that has
`--preset`/`--config` flags gets their values as defaults; flags given on the command line still win.
"""

import argparse
import json
import sys

from transformers import HfArgumentParser

from . import args as train_args
from . import attention_maps, hub


# ------------------------------------------------------------------------------------------------ train
def add_train_arguments(parser):
    train_args.add_arguments(parser)


def run_train(args):
    """Train a model (default: G2P on CMUdict), evaluate it on test and save it."""
    from .trainer import train

    results = train(*train_args.from_namespace(args))
    return 0 if results else 1


# --------------------------------------------------------------------------------------------- evaluate
def add_evaluate_arguments(parser):
    parser.add_argument("model_dir", help="a folder written by `scratchformer train`")
    parser.add_argument("--split", default="test", help="train, validation or test")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--num_beams", type=int, default=None, help="override the saved generation config")
    parser.add_argument("--max_samples", type=int, default=None, help="score only the first N rows")
    parser.add_argument("--data", nargs="*", default=[], metavar="NAME=VALUE",
                        help="data arguments overriding the saved ones, e.g. test_file=other.tsv data_dir=...")


def run_evaluate(args):
    """Score a saved model on a split of its task's data (metrics as JSON)."""
    from .trainer import evaluate_saved

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


def run_predict(args):
    """Print the model's output for each text: phonemes, a translation, a label, or a tag per word."""
    from .trainer import predict

    for text, output in zip(args.texts, predict(args.model_dir, args.texts, args.num_beams)):
        if isinstance(output, tuple):
            output = f"{output[0]}  (p={output[1]:.3f})"
        elif isinstance(output, list):
            output = " ".join(f"{word}/{tag}" for word, tag in output)
        print(f"{text}\t{output}")
    return 0


COMMANDS = {
    "train": (add_train_arguments, run_train),
    "evaluate": (add_evaluate_arguments, run_evaluate),
    "predict": (add_predict_arguments, run_predict),
    "export": (hub.add_export_arguments, hub.run_export),
    "push": (hub.add_arguments, hub.run),
    "attention": (attention_maps.add_arguments, attention_maps.run),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="scratchformer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=HfArgumentParser)
    subparsers = {}
    for name, (add_arguments, run) in COMMANDS.items():
        subparsers[name] = commands.add_parser(name, help=(run.__doc__ or "").strip().split("\n")[0],
                                               description=run.__doc__)
        add_arguments(subparsers[name])
    return parser, subparsers


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "preset", None) or getattr(args, "config", None):
        try:
            defaults = train_args.config_defaults(args.preset, args.config)
        except ValueError as error:
            parser.error(str(error))
        subparsers[args.command].set_defaults(**defaults)
        args = parser.parse_args(argv)  # the same flags, over the new defaults
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())
