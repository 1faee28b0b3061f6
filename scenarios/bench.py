"""Start-up cost of worlds, measured against a baseline taken in the same run.

    python -m scenarios.bench [--runs N]     (nox -s bench; needs root and runsc)

Reported (medians, seconds, and each as a ratio to the baseline):

* `baseline`: create a namespace, run `true` in it with `ip netns exec`, delete it;
* `world_up`: bring up and tear down a world with no instance or pod;
* `gen2_ready`, `gen1_ready`: from "start an instance" to its port accepting
  connections, for the echo app in a plain namespace and in gVisor;
* `pod_ready`: from "start a pod" (the basic world's `echo-server`) to Ready: its
  namespace and rules, the Pod registered, a token, Envoy started as uid 1337 and
  LIVE with istiod having seen it ACK its current configuration, the app's port
  accepting, the Pod marked Ready.

Nothing here is asserted: machines differ, ratios travel better than seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scenarios.world import netns
from scenarios.world.plan import new_prefix
from scenarios.world.spec import build_spec, load_spec

BASIC = Path(__file__).parent / "worlds" / "basic.yaml"


def positive_runs(text: str) -> int:
    """`--runs`: a count from 1 to 1000."""
    runs = int(text)
    if not 1 <= runs <= 1000:
        raise argparse.ArgumentTypeError(f"--runs must be from 1 to 1000, not {runs}")
    return runs


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _time(action: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        out.append(time.perf_counter() - start)
    return out


def _baseline() -> None:
    name = f"{new_prefix()}-bench"
    netns.create(name)
    try:
        subprocess.run(netns.exec_argv(name, ["true"]), check=True, timeout=30)  # noqa: S603
    finally:
        netns.remove(name)


def measure(runs: int) -> dict[str, dict[str, Any]]:
    from scenarios.world.builder import world_up  # noqa: PLC0415 - after the gRPC setting

    basic = load_spec(BASIC)
    empty = build_spec({"emulator": basic.emulator, "clients": []}, base=BASIC.parent)
    results: dict[str, list[float]] = {"baseline": _time(_baseline, runs)}

    def up_and_down() -> None:
        with world_up(empty, grace=0.5):
            pass

    results["world_up"] = _time(up_and_down, runs)
    with world_up(basic, grace=0.5) as world:
        for generation, service in (("gen2", "echo-gen2"), ("gen1", "echo-gen1")):
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                instance = world.start_instance(service)
                samples.append(time.perf_counter() - start)
                world.stop_instance(instance.name)
            results[f"{generation}_ready"] = samples
        samples = []
        for _ in range(runs):
            world.stop_pod("echo-server")
            start = time.perf_counter()
            world.start_pod("echo-server")
            samples.append(time.perf_counter() - start)
        results["pod_ready"] = samples
    base = _median(results["baseline"])
    return {
        name: {
            "median_s": round(_median(s), 4),
            "ratio": round(_median(s) / base, 2),
            "runs": len(s),
        }
        for name, s in results.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scenarios.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=positive_runs, default=5, help="measured runs (5)")
    args = parser.parse_args(argv)
    # grpcio (imported by the emulator) logs on every fork while its threads run.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from scenarios.world.builder import require_privileges  # noqa: PLC0415

    require_privileges()
    print(json.dumps(measure(args.runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
