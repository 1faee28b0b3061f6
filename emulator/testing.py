"""Running an emulator in-process, for pytest fixtures, the demo and scenarios.

with start(state_dir=tmp) as emu:
    env = emu.metadata_env("vm-1")    # GCE_METADATA_HOST / GCE_METADATA_IP
    url = emu.url("container")        # https://127.0.0.1:PORT
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from emulator.clock import OffsetClock
from emulator.istio.meshenv import publish_mesh_env
from emulator.kube.kubeconfig import publish
from emulator.serve import EmulatorThread
from emulator.services import build_services
from emulator.world import World
from emulator.worldfile import parse_world


def demo_world_text() -> str:
    return resources.files("emulator").joinpath("worlds/demo.yaml").read_text(encoding="utf-8")


@dataclass
class RunningEmulator:
    world: World
    clock: OffsetClock
    endpoints: dict[str, str]
    ca_file: Path
    state_dir: Path
    kubeconfigs: dict[str, str] = field(default_factory=dict)
    """`kube/PROJECT/LOCATION/CLUSTER` -> the admin kubeconfig written for that API server."""

    def url(self, service: str) -> str:
        try:
            return self.endpoints[service]
        except KeyError:
            raise KeyError(f"no service {service!r}; have {sorted(self.endpoints)}") from None

    def hostport(self, service: str) -> str:
        """`127.0.0.1:PORT` of a service, as GCE_METADATA_HOST and api_endpoint want it."""
        return self.url(service).split("://", 1)[1]

    def kubeconfig(self, key: str = "kube/mesh-demo/us-central1-c/istio") -> Path:
        """The admin kubeconfig of a cluster's API server (the demo's `istio` by default)."""
        try:
            return Path(self.kubeconfigs[key])
        except KeyError:
            raise KeyError(f"no cluster {key!r}; have {sorted(self.kubeconfigs)}") from None

    def metadata_env(self, instance: str | None = None) -> dict[str, str]:
        """Variables that point google-auth and the Go client at this metadata server."""
        key = "metadata" if instance is None else f"metadata/{instance}"
        host = self.hostport(key)
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}


PointGoogleAuth = Callable[[RunningEmulator, str | None], dict[str, str]]
"""The type of the `point_google_auth` test fixture."""


@contextmanager
def start(
    state_dir: Path, *, world_text: str | None = None, **world_args: Any
) -> Iterator[RunningEmulator]:
    """Build a world (the demo one by default) and serve it on loopback until exit."""
    clock = OffsetClock()
    world = parse_world(world_text or demo_world_text(), clock=clock, **world_args)
    endpoints: dict[str, str] = {}
    thread = EmulatorThread(world, build_services(world, endpoints=endpoints), state_dir)
    with thread:
        endpoints.update(thread.endpoints)
        kubeconfigs = publish(world, thread.endpoints, state_dir)
        publish_mesh_env(world, thread.endpoints)
        yield RunningEmulator(world, clock, endpoints, thread.ca_file, state_dir, kubeconfigs)
