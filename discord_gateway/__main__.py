"""Command line: ``python -m discord_gateway <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .fsm import mermaid_diagram


def _diagram(args: argparse.Namespace) -> int:
    sys.stdout.write(mermaid_diagram())
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "diagram": ("print the lifecycle state diagram (mermaid)", _diagram),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m discord_gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    raise SystemExit(main())
