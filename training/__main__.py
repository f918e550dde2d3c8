"""`python -m scratchformer.training ...` / `accelerate launch -m scratchformer.training ...`.

With no subcommand name first, the arguments are those of `scratchformer train`.
"""

import sys

from .cli import COMMANDS, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]
    sys.exit(main(argv))
