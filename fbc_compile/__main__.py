"""Command line: ``python -m fbc_compile demo [--threshold T] [--steps N] [--device D] [--dtype T] [--model PATH]``."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import demo

    parser = argparse.ArgumentParser(
        prog="python -m fbc_compile",
        description="fbc_compile: First Block Cache for diffusion transformers as a torch.compile backend.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo_parser = commands.add_parser(
        "demo", help="run a diffusers pipeline compiled with fbc_backend next to a plain torch.compile",
        description=demo.__doc__.split("\n\n", 1)[1].strip() if demo.__doc__ else None)
    demo.add_arguments(demo_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import DemoError, run

        try:
            run(args)
        except DemoError as error:
            print(f"{parser.prog} demo: error: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
