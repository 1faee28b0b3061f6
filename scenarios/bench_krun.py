"""krun's start-up cost against the loopback emulator, measured against same-run baselines.

    python -m scenarios.bench_krun [--runs N]     (nox -s bench_krun; no root needed)

Reported (medians in milliseconds, each with its ratio to `interpreter`):

* `interpreter`: `python -c pass` (the baseline);
* `import_krun`: `python -c "import krun.prepare"` minus nothing: the interpreter plus every
  module on krun's start-up path (discovery, kube client, identity, Istio CA client);
* `krun_identity`: the whole `krun identity --once` process for Cloud Run instance fortio-0:
  interpreter, imports, discovery, TokenRequest, key, CSR, CA call, files written;
* `discovery` and `identity`: the phases as krun logs them on every start (in-process, from
  the `phase` log lines of the runs above).

Nothing is asserted: machines differ, ratios travel better than milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from emulator.testing import RunningEmulator, start
from scenarios.bench import positive_runs
from scenarios.krun_env import loopback_env

RUN_TIMEOUT = 120.0
"""Bound on each measured process (seconds): a hung run fails instead of hanging the bench."""


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        argv, env=env, capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout


def _krun_env(emu: RunningEmulator, base: Path) -> dict[str, str]:
    return loopback_env(
        emu,
        "fortio-0",
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        MESH_BASE_DIR=str(base),
        K_SERVICE="fortio",
        PORT="8080",
    )


def measure(runs: int) -> dict[str, dict[str, float]]:
    python = sys.executable
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    samples: dict[str, list[float]] = {
        k: [] for k in ("interpreter", "import_krun", "krun_identity", "discovery", "identity")
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-krun-") as scratch,
        start(Path(scratch) / "emulator") as emu,
    ):
        env = _krun_env(emu, Path(scratch) / "base")
        # One unmeasured round warms the page cache and the emulator's connections.
        _run([python, "-m", "krun.cli", "identity", "--once"], env)
        for _ in range(runs):
            samples["interpreter"].append(_run([python, "-c", "pass"], clean)[0])
            samples["import_krun"].append(_run([python, "-c", "import krun.prepare"], clean)[0])
            elapsed, out = _run([python, "-m", "krun.cli", "identity", "--once"], env)
            samples["krun_identity"].append(elapsed)
            for line in out.splitlines():
                event = json.loads(line)
                if event.get("event") == "phase" and event["phase"] in samples:
                    samples[event["phase"]].append(float(event["ms"]))
    baseline = statistics.median(samples["interpreter"])
    return {
        name: {
            "ms": round(statistics.median(values), 2),
            "ratio": round(statistics.median(values) / baseline, 2),
        }
        for name, values in samples.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.bench_krun", description=__doc__)
    parser.add_argument("--runs", type=positive_runs, default=10, help="measured runs (10)")
    args = parser.parse_args(argv)
    print(json.dumps({"runs": args.runs, "results": measure(args.runs)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
