"""`krun`: the launcher's command line.

The launcher itself (discovery, identity, interception, supervision) arrives
in later issues; today the command reports its version and says so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from krun import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="krun", description="Run a workload in the mesh (launcher under construction)."
    )
    parser.add_argument("--version", action="version", version=f"krun {__version__}")
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    print("\nkrun: no launch mode is implemented yet; see the issue tracker.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
