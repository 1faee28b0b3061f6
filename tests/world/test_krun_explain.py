"""`krun explain` inside Cloud Run instances of a world: gen1 (gVisor) and gen2 goldens."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.testing import demo_world_text
from scenarios.world.builder import RunningWorld, python_for_participants, world_up
from scenarios.world.spec import build_spec

pytestmark = pytest.mark.world

GOLDEN = Path(__file__).parent.parent / "golden" / "krun"
FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"


def spec_raw() -> dict[str, Any]:
    """The demo's mesh cluster, with one Cloud Run service per generation running as fortio."""
    demo = yaml.safe_load(demo_world_text())
    istio = demo["projects"][0]["clusters"][0]
    service = {"region": "us-central1", "service_account": FORTIO, "invokers": ["allUsers"]}
    echo = ["{python}", "-m", "scenarios.apps.echo"]
    return {
        "name": "krun-explain",
        "emulator": {
            "name": "krun-explain",
            "projects": [
                {
                    "id": "mesh-demo",
                    "number": 123456789012,
                    "iam": {
                        "roles/container.clusterViewer": [f"serviceAccount:{FORTIO}"],
                        "roles/browser": [f"serviceAccount:{FORTIO}"],
                    },
                    "service_accounts": [{"name": "k8s-fortio"}],
                    "clusters": [istio],
                    "run_services": [
                        {"name": "fortio-gen1", **service},
                        {"name": "fortio-gen2", **service},
                    ],
                }
            ],
        },
        "services": [
            {"service": "fortio-gen1", "generation": "gen1", "command": echo},
            {"service": "fortio-gen2", "generation": "gen2", "command": echo},
        ],
    }


@pytest.fixture(scope="module")
def mesh_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    spec = build_spec(spec_raw(), source="<krun explain world>", base=Path.cwd())
    logs = tmp_path_factory.mktemp("krun-explain-logs")
    with world_up(spec, grace=1, logs_dir=logs) as up:
        yield up


def explain_in(world: RunningWorld, service: str) -> tuple[int, dict[str, Any], str]:
    instance = world.start_instance(service)
    try:
        argv = [python_for_participants(), "-m", "krun.cli", "explain"]
        if instance.generation == "gen1":
            # runsc exec runs inside the sandbox with the container's environment.
            done = world.exec(instance.name, argv, timeout=60)
        else:
            contract = {
                "K_SERVICE": service,
                "K_REVISION": instance.service.revision,
                "K_CONFIGURATION": service,
                "PORT": str(instance.service.container_port),
            }
            done = world.run(instance.name, argv, env=contract, timeout=60)
    finally:
        world.stop_instance(instance.name)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def normalise(document: dict[str, Any]) -> dict[str, Any]:
    """Instance ids (per world prefix), times, timings and lifetimes change between runs."""
    document = dict(document)
    document["timings_ms"] = sorted(document["timings_ms"])
    document["decisions"]["instance_id"]["value"] = "INSTANCE_ID"
    issued = (document.get("certificate") or {}).get("issued")
    if issued:
        issued["lifetime_s"] = round(issued["lifetime_s"], -2)
    text = json.dumps(document, indent=2, sort_keys=True)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "TIME", text)
    text = re.sub(r"iptables-restore/[0-9.]+", "iptables-restore/VERSION", text)
    return dict(json.loads(text))


def check_golden(name: str, document: dict[str, Any], update: bool) -> None:
    path = GOLDEN / name
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if update:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden"
    assert path.read_text() == text


def test_explain_in_gen1_says_iptables_is_unavailable(
    mesh_world: RunningWorld, update_golden: bool
) -> None:
    """Inside gVisor krun is root without CAP_NET_ADMIN: whitebox, and a real certificate."""
    code, document, err = explain_in(mesh_world, "fortio-gen1")

    assert 0 == code, err
    interception = document["interception"]
    assert "whitebox" == interception["mode"]
    assert "iptables is unavailable" in interception["why"]
    assert (True, False, False) == tuple(
        interception["probes"][k] for k in ("root", "cap_net_admin", "iptables")
    )
    assert ["spiffe://mesh-demo.svc.id.goog/ns/fortio/sa/default"] == document["certificate"]["san"]
    check_golden("explain-world-gen1.json", normalise(document), update_golden)


def test_explain_in_gen2_says_iptables_works(mesh_world: RunningWorld, update_golden: bool) -> None:
    """In a gen2 instance krun is root with CAP_NET_ADMIN and the probe chain is accepted."""
    code, document, err = explain_in(mesh_world, "fortio-gen2")

    assert 0 == code, err
    assert "iptables-redirect" == document["interception"]["mode"]
    assert "iptables works" in document["interception"]["why"]
    assert "10.77.0.40:15012" == document["decisions"]["xds_address"]["value"]
    check_golden("explain-world-gen2.json", normalise(document), update_golden)
