"""The quick start: the demo world served on loopback, and a workload inside it.

The workload plays the Cloud Run instance `fortio-0` and uses google-auth,
unmodified, to get an access token and an ID token from the emulated metadata
server, then verifies the ID token against the world's published keys. Until
the scenario harness exists (namespaces, gVisor, Envoy), this is the main job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.testing import start


@dataclass
class QuickstartResult:
    endpoints: dict[str, str]
    workload: dict[str, Any]
    returncode: int


def run(instance: str = "fortio-0", *, timeout: float = 60) -> QuickstartResult:
    with tempfile.TemporaryDirectory(prefix="krun-quickstart-") as tmp, start(Path(tmp)) as emu:
        caller = emu.world.instance(instance)
        audience = next(
            (s.url for s in emu.world.run_services() if s.name == caller.service),
            "https://example.test",
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **emu.metadata_env(instance),
            "REQUESTS_CA_BUNDLE": str(emu.ca_file),
            "PROBE_AUDIENCE": audience,
            "PROBE_CERTS_URL": emu.url("oauth2") + "/oauth2/v1/certs",
            "CLOUDSDK_CONFIG": str(Path(tmp) / "gcloud"),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "scenarios.probes.google_auth"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        try:
            workload = json.loads(proc.stdout)
        except json.JSONDecodeError:
            workload = {"error": proc.stderr.strip()[-2000:] or "the probe printed nothing"}
        return QuickstartResult(dict(emu.endpoints), workload, proc.returncode)


def main() -> int:
    result = run()
    print("krun quick start: the demo world, served on loopback")
    for name, url in sorted(result.endpoints.items()):
        print(f"  {name:22} {url}")
    print("\nA workload in Cloud Run instance fortio-0, using google-auth unmodified:")
    print(json.dumps(result.workload, indent=2))
    if result.returncode != 0:
        print("\nquick start FAILED", file=sys.stderr)
        return 1
    print("\nquick start OK")
    return 0
