"""`krun-scenario`: run a scenario by name, or `up`/`down` a world (scenarios/world/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scenarios import quickstart

SCENARIOS = {"quickstart": quickstart.main}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("up", "down"):
        from scenarios.world.cli import main as world_main  # noqa: PLC0415 - heavy imports

        return world_main(args_list)
    parser = argparse.ArgumentParser(prog="krun-scenario", description=__doc__)
    parser.add_argument("name", choices=sorted(SCENARIOS), help="the scenario to run")
    args = parser.parse_args(argv)
    return SCENARIOS[args.name]()


if __name__ == "__main__":
    sys.exit(main())
