"""The quick start: what the emulator and the harness do, in two short acts.

1. Loopback (any user): the demo world served on 127.0.0.1, and a workload that
   plays the Cloud Run instance `fortio-0` and uses google-auth, unmodified, to
   get an access token and an ID token from the emulated metadata server, then
   verifies the ID token against the world's published keys.
2. A world of namespaces (root): scenarios/worlds/basic.yaml brought up; a
   client calls a gen1 (gVisor) Cloud Run service through the front end with an
   ID token, which starts an instance from zero; a pod calls another pod's
   Service, sidecar to sidecar over mTLS with SPIFFE identities from istiod.
   Everything is torn down at the end.
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


BASIC_WORLD = Path(__file__).resolve().parent / "worlds" / "basic.yaml"
CALLER = "caller@mesh-demo.iam.gserviceaccount.com"


class StepError(Exception):
    """A quick-start step failed; the message says which and why."""


def _curl_json(world: Any, participant: str, argv: list[str]) -> dict[str, Any]:
    done = world.run(participant, ["curl", "-sS", "-m", "30", "--fail-with-body", *argv])
    if done.returncode != 0:
        raise StepError(f"curl from {participant} failed: {done.stderr.strip() or done.stdout}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def run_world() -> dict[str, Any]:
    """Act two: a world of namespaces, a Cloud Run call and a mesh call; needs root."""
    from scenarios.world.builder import world_up  # noqa: PLC0415 - pyroute2 only when used
    from scenarios.world.spec import load_spec  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="krun-quickstart-world-") as logs,
        world_up(load_spec(BASIC_WORLD), grace=1, logs_dir=Path(logs)) as world,
    ):
        service = world.service("echo-gen1")
        token = world.world.tokens.id_token(
            subject=world.world.service_account(CALLER).unique_id,
            audience=service.url,
            now=world.world.clock(),
            email=CALLER,
        )
        front = _curl_json(
            world, "client", [service.url + "/who", "-H", f"Authorization: Bearer {token}"]
        )
        instance = next(i for i in world.instances.values() if i.service is service)
        kernel = world.exec(instance.name, ["uname", "-r"]).stdout.strip()
        mesh = _curl_json(world, "echo-client", ["http://echo.fortio.svc.cluster.local:8080/who"])
        xfcc = dict(
            part.split("=", 1)
            for part in dict(mesh["headers"])["x-forwarded-client-cert"].split(";")
        )
        return {
            "world_prefix": world.prefix,
            "cloud_run": {
                "url": service.url,
                "reached": front["service"],
                "instance": f"{instance.name} ({instance.generation}, kernel {kernel})",
                "protocol_at_instance": f"HTTP/{front['http_version']} cleartext",
                "caller_seen_by_app": dict(front["headers"]).get("x-forwarded-for"),
            },
            "mesh": {
                "client_identity": xfcc.get("URI"),
                "server_identity": xfcc.get("By"),
                "server_app_saw_peer": _peer(mesh),
            },
        }


def _peer(report: dict[str, Any]) -> str:
    client = report.get("client") or ["?"]
    return str(client[0])


def main() -> int:
    result = run()
    print("krun quick start, act 1: the demo world, served on loopback")
    for name, url in sorted(result.endpoints.items()):
        print(f"  {name:26} {url}")
    print("\nA workload in Cloud Run instance fortio-0, using google-auth unmodified:")
    print(json.dumps(result.workload, indent=2))
    if result.returncode != 0:
        print("\nquick start FAILED in act 1", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print(
            "\nact 2 (a world of network namespaces and gVisor) needs root; run as root to see it"
        )
        print("\nquick start OK (act 1 only)")
        return 0
    print("\nkrun quick start, act 2: a world of namespaces (scenarios/worlds/basic.yaml)")
    try:
        world = run_world()
    except Exception as exc:  # report the failing step in one sentence, then fail
        print(f"\nquick start FAILED in act 2: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(world, indent=2))
    print("\nquick start OK; the world was torn down")
    return 0
