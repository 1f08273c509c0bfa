"""``python -m facegen COMMAND ...``: a thin dispatcher; each command is a module with ``main(argv) -> int``."""

import importlib
import sys

# command -> (module, one line of help)
COMMANDS = {
    "generate": ("app.generate", "write a labelled synthetic face data set (the service's faces, CelebAMask-HQ layout)"),
    "verify": ("facegen.verify", "report the provenance marks (metadata, C2PA credentials, watermark) of images"),
}


def usage() -> str:
    lines = ["usage: python -m facegen COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:10s} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"python -m facegen: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
