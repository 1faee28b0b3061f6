"""`krun-scenario`: run a scenario by name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scenarios import quickstart

SCENARIOS = {"quickstart": quickstart.main}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krun-scenario", description=__doc__)
    parser.add_argument("name", choices=sorted(SCENARIOS), help="the scenario to run")
    args = parser.parse_args(argv)
    return SCENARIOS[args.name]()


if __name__ == "__main__":
    sys.exit(main())
