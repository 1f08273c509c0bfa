"""argparse ``type=`` callables the commands share: a bad flag value is refused while the command line is read,
before any slow import, and the one-line error names the flag (``error: argument --samples: must be at least 2,
got 1``; training/__main__.py prints argparse's errors as it prints a UsageError)."""

import argparse
from pathlib import Path


def at_least(minimum):
    """A number (int, or float where ``minimum`` is a float) no smaller than ``minimum``."""
    kind = type(minimum)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def between(low: int, high: int):
    """An integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        value = at_least(-2**62)(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def existing_folder(what: str):
    """The path of a folder that exists (``what`` names it in the error: "no such model folder")."""

    def parse(text: str) -> Path:
        if not Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"no such {what} folder: {text}")
        return Path(text)

    return parse


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return Path(text)


def existing_path(text: str) -> Path:
    """A file or a folder that exists."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return Path(text)


def keras_file(text: str) -> Path:
    """A path ending in .keras (Keras saves and loads by that suffix); it need not exist yet."""
    if Path(text).suffix != ".keras":
        raise argparse.ArgumentTypeError(f"{text} must end in .keras")
    return Path(text)
