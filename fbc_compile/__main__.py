"""Command line: ``fbc-compile demo [--threshold T] [--steps N] [--device D] [--dtype T] [--model PATH]`` (or
``python -m fbc_compile demo ...``)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import demo

    parser = argparse.ArgumentParser(
        prog=_program(),
        description="fbc_compile: First Block Cache for diffusion transformers as a torch.compile backend.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo_parser = commands.add_parser(
        "demo", help="run a diffusers pipeline compiled with fbc_backend next to a plain torch.compile",
        description=demo.__doc__.split("\n\n", 1)[1].strip() if demo.__doc__ else None)
    demo.add_arguments(demo_parser)
    return parser


def _program() -> str:
    """How the user ran us: ``python -m fbc_compile``, or the ``fbc-compile`` console script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return "python -m fbc_compile" if spec is not None and spec.name == "fbc_compile.__main__" else "fbc-compile"


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
