"""`krun-scenario up|down`: a world of namespaces from a harness file, and its sweeper.

krun-scenario up WORLD.yaml [--logs DIR]   # prints one JSON line, runs until SIGTERM
krun-scenario down [--all] [--prefix P]    # removes what dead (or all) worlds left
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from emulator.errors import WorldFileError
from scenarios.world.errors import WorldError


def _up(path: Path, logs: Path | None) -> int:
    from scenarios.world.builder import world_up  # noqa: PLC0415 - pyroute2 is slow to import
    from scenarios.world.spec import load_spec  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    spec = load_spec(path)
    with world_up(spec, logs_dir=logs) as running:
        print(json.dumps(running.describe(), separators=(",", ":")), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _down(prefix: str | None, include_live: bool) -> int:
    from scenarios.world.sweep import sweep  # noqa: PLC0415

    report = sweep(prefix=prefix, include_live=include_live)
    print(json.dumps(report.as_dict(), separators=(",", ":")), flush=True)
    return 1 if report.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krun-scenario", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a world and keep it up until SIGTERM")
    up.add_argument("world", type=Path, help="a harness world file (docs/worlds.md)")
    up.add_argument("--logs", type=Path, help="where instance and pod logs go")
    down = sub.add_parser("down", help="sweep what crashed (or, with --all, every) world left")
    down.add_argument("--all", action="store_true", help="also worlds whose owner still runs")
    down.add_argument("--prefix", help="only the world with this prefix")
    args = parser.parse_args(argv)
    # grpcio (imported by the emulator) logs on every fork while its threads run.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        if args.command == "up":
            return _up(args.world, args.logs)
        return _down(args.prefix, args.all)
    except (WorldError, WorldFileError) as exc:
        print(f"krun-scenario: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
