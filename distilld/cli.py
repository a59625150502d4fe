"""The ``distilld`` command line.

Subcommands grow with the issues: the daemon (``run``, ``check-config``) and
the file tools (``reduce``, ``evaluate``) come next; ``demo`` and ``bench``
run the engine on generated streams.
"""

from __future__ import annotations

import argparse
import sys

from distilld import __version__

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="distilld", description="Forward a representative share of a stream.")
    parser.add_argument("--version", action="version", version=f"distilld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="distilld next to random sampling on a generated stream", add_help=False)
    sub.add_parser("bench", help="engine throughput and representativeness figures", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from distilld.demo import main as demo

        return demo(rest)
    if args.command == "bench":
        from distilld.bench.__main__ import main as bench

        sys.argv = ["distilld bench", *rest]
        bench()
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
