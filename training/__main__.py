"""``python -m training <command>``: a thin dispatcher; each command lives in its own module.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int`` and imports TensorFlow/Keras only
inside ``run``. Only the chosen command's module is imported, so ``--help`` is instant.
"""

import argparse
import importlib
import sys

from facegen.hardware import require_avx
from facegen.model_folder import ManifestError
from training.usage_error import UsageError

# name: (module, help, imports TensorFlow/Keras so needs AVX on x86)
COMMANDS = {
    "prepare": ("training.data", "read a CelebA or CelebAMask-HQ folder into a compact training cache", False),
    "synth": ("training.synth", "render a procedural face data set in CelebA's layout", False),
    "train": ("training.loop", "train a conditional GAN from a cache or data folder", True),
    "upsample": ("training.upsample", "train a 64 -> 128 px upsampling stage on paired photo caches", True),
    "export": ("training.export", "export a training run's generator as a TensorFlow SavedModel", True),
    "evaluate": ("training.evaluate", "measure a model's quality and write the figures into its manifest", True),
    "card": ("training.card", "write a model's sample grids and MODEL_CARD.md from its manifest", True),
}


class OneLineErrors(argparse.ArgumentParser):
    """A bad flag (argparse's error, or a training.arguments type's) answers as a UsageError does: one line naming
    the flag, exit status 2, rather than the usage block."""

    def error(self, message):
        raise UsageError(message)


def build_parser(argv) -> argparse.ArgumentParser:
    """The parser, with the full argument list of the chosen command only (only that module is imported)."""
    parser = OneLineErrors(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text, _) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    if chosen in COMMANDS and COMMANDS[chosen][2] and not {"-h", "--help"} & set(argv):
        # Before anything else, flag checks included: TensorFlow would die with 'Illegal instruction'.
        require_avx()
    try:
        args = build_parser(argv).parse_args(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except (UsageError, ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
