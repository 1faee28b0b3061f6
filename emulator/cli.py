"""`krun-emulator`: serve a world, or check a world file.

    krun-emulator serve [--world FILE] [--host ADDR] [--state-dir DIR]
    krun-emulator check FILE

`serve` prints one JSON line (the world's name, the CA file clients must trust,
the endpoint map: service name -> URL, and `kubeconfigs`: each cluster's
`kube/PROJECT/LOCATION/NAME` key -> an admin kubeconfig for `kubectl
--kubeconfig`), then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from emulator.clock import OffsetClock
from emulator.errors import WorldFileError
from emulator.istio.meshenv import publish_mesh_env
from emulator.kube.kubeconfig import publish
from emulator.serve import Emulator
from emulator.services import build_services
from emulator.testing import demo_world_text
from emulator.world import World
from emulator.worldfile import load_world, parse_world

log = logging.getLogger("emulator")


def _load(path: Path | None, clock: OffsetClock) -> World:
    if path is None:
        return parse_world(demo_world_text(), source="<demo world>", clock=clock)
    return load_world(path, clock=clock)


async def _serve(world: World, host: str, state_dir: Path) -> int:
    endpoints: dict[str, str] = {}
    emulator = Emulator(
        world, build_services(world, host=host, endpoints=endpoints), state_dir=state_dir
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        endpoints.update(await emulator.start())
    except OSError as exc:
        print(f"krun-emulator: {exc}", file=sys.stderr)
        return 1
    try:
        kubeconfigs = publish(world, endpoints, state_dir)
        publish_mesh_env(world, endpoints)
        line = {
            "world": world.name,
            "ca_file": str(emulator.ca_file),
            "endpoints": endpoints,
            "kubeconfigs": kubeconfigs,
        }
        print(json.dumps(line, separators=(",", ":")), flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await emulator.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krun-emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Python logging level (WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a world until SIGTERM")
    serve.add_argument("--world", type=Path, help="world file (default: the demo world)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--state-dir", type=Path, help="where certificates go (a temp dir)")
    check = sub.add_parser("check", help="validate a world file and summarise it")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    clock = OffsetClock()
    try:
        world = _load(args.world if args.command == "serve" else args.file, clock)
    except WorldFileError as exc:
        print(f"krun-emulator: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        summary = {
            "world": world.name,
            "projects": sorted(world.projects),
            "clusters": sorted(
                f"{c.project_id}/{c.location}/{c.name}" for c in world.all_clusters()
            ),
            "run_services": sorted(
                f"{s.project_id}/{s.region}/{s.name}" for s in world.run_services()
            ),
            "instances": sorted(world.instances),
            "faults": len(world.faults.active(clock())),
        }
        print(json.dumps(summary, indent=2))
        return 0
    if args.state_dir is not None:
        return asyncio.run(_serve(world, args.host, args.state_dir))
    with tempfile.TemporaryDirectory(prefix="krun-emulator-") as tmp:
        return asyncio.run(_serve(world, args.host, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
