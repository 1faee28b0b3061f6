"""`krun`: the launcher's command line; the only module that reads `os.environ`.

`krun explain` runs discovery and prints what it decided (see `krun.explain`). Launching a
workload arrives in later issues; without a subcommand krun says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence

from krun import __version__


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="krun", description="Run a workload in the mesh (launcher under construction)."
    )
    parser.add_argument("--version", action="version", version=f"krun {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "explain",
        help="run discovery without changing anything; print every decision as JSON",
    )
    args = parser.parse_args(argv)
    if args.command == "explain":
        return _explain(os.environ if environ is None else environ)
    parser.print_help(sys.stderr)
    print("\nkrun: no launch mode is implemented yet; see the issue tracker.", file=sys.stderr)
    return 2


def _explain(environ: Mapping[str, str]) -> int:
    from krun.errors import ConfigError  # noqa: PLC0415 - keep `krun --version` instant
    from krun.explain import explain, sentence  # noqa: PLC0415

    document, failure = explain(environ)
    print(json.dumps(document, indent=2))
    if failure is None:
        return 0
    print(sentence(document["failed_step"], failure), file=sys.stderr)
    return 2 if isinstance(failure, ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())
