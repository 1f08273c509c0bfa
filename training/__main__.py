"""``python -m training <command>``: a thin dispatcher; each command lives in its own module.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when
their command runs, so ``--help`` and ``synth`` stay fast and never load TensorFlow.
"""

import argparse
import importlib
import sys

from training.errors import UsageError

COMMANDS = {
    "prepare": ("training.data", "read a CelebA-layout folder into a compact training cache"),
    "synth": ("training.synth", "render a procedural face data set in CelebA's layout"),
    "train": ("training.loop", "train a conditional GAN from a cache or data folder"),
    "export": ("training.export", "export a training run's generator as a TensorFlow SavedModel"),
    "evaluate": ("training.evaluate", "measure a model's quality and write the figures into its manifest"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        # Argument definitions are light (argparse only), so import the module's argument hook lazily here.
        importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
