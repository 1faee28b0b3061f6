"""Harness world files: the emulator's world plus how its participants run.

Validation collects every problem and names each by field path
(`services[0].generation: must be gen1 or gen2`), as emulator world files do,
through the same field reader (`emulator/fieldcheck.py`). The shape is documented
in docs/worlds.md; `scenarios/worlds/basic.yaml` is an example.

    name: basic                      # optional; default: the emulator world's name
    emulator: ../../emulator/worlds/demo.yaml   # a path (relative to this file) or a mapping
    network: 10.77.0.0/16            # the world's addresses (at least a /22)
    grace_s: 10                      # SIGTERM -> SIGKILL for instances and pods
    services:                        # how each Cloud Run service's instances run
      - service: fortio              # a run service (NAME, or PROJECT/REGION/NAME)
        generation: gen2             # gen1 (gVisor) or gen2 (plain namespace)
        command: ["{python}", -m, scenarios.apps.echo]
        env: {GREETING: hi}
        root: /                      # gen1: the container's root directory (read-only)
        user: 0                      # uid (and gid) the command runs as
        connector: true              # a route from instances to the pod network
    pods:
      - name: echo-a
        cluster: istio               # a cluster of the emulator world (optional)
        namespace: default
        service_account: default
        labels: {app: echo}
        ports: [8080]                # container ports; the pod is ready once they accept
        command: ["{python}", -m, scenarios.apps.echo, --port, "8080"]
        interception: istio          # istio (istio-init style rules) or none
        sidecar: true                # a real Envoy fed by the cluster's istiod (istio only)
    kube_services:                   # Kubernetes Services of a cluster, for the pods
      - name: echo
        cluster: istio
        namespace: default
        selector: {app: echo}
        ports: [{port: 8080, name: http, target_port: 8080}]
    clients: [client]                # plain namespaces for test drivers
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emulator.fieldcheck import FieldChecker, kind_of
from scenarios.world.errors import WorldSpecError

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP = {
    "name",
    "emulator",
    "network",
    "grace_s",
    "services",
    "pods",
    "kube_services",
    "clients",
}
_SERVICE = {"service", "generation", "command", "env", "root", "user", "connector"}
_POD = {
    "name",
    "cluster",
    "namespace",
    "service_account",
    "labels",
    "ports",
    "command",
    "env",
    "user",
    "interception",
    "sidecar",
}
_KUBE_SERVICE = {"name", "cluster", "namespace", "selector", "ports"}
_KUBE_PORT = {"port", "name", "target_port", "app_protocol"}
GENERATIONS = ("gen1", "gen2")
INTERCEPTIONS = ("istio", "none")
PYTHON = "{python}"
"""In a command, replaced by the harness's own interpreter (the project's venv)."""


@dataclass(frozen=True, slots=True)
class ServiceRun:
    """How the instances of one Cloud Run service run."""

    service: str
    generation: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    root: str = "/"
    user: int = 0
    connector: bool = False

    def matches(self, project: str, region: str, name: str) -> bool:
        return self.service in (name, f"{project}/{region}/{name}")


@dataclass(frozen=True, slots=True)
class PodRun:
    """One pod: its Kubernetes identity, its app, and how its traffic is intercepted."""

    name: str
    command: tuple[str, ...]
    namespace: str = "default"
    service_account: str = "default"
    cluster: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    """Container ports; the pod is ready once each accepts a connection."""
    env: dict[str, str] = field(default_factory=dict)
    user: int = 0
    interception: str = "istio"
    sidecar: bool = True
    """A real Envoy fed by the cluster's istiod (needs `interception: istio` and a mesh cluster)."""


@dataclass(frozen=True, slots=True)
class KubePort:
    port: int
    name: str = ""
    target_port: int | None = None
    app_protocol: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The Kubernetes ServicePort."""
        obj: dict[str, Any] = {
            "port": self.port,
            "targetPort": self.target_port or self.port,
            "protocol": "TCP",
        }
        if self.name:
            obj["name"] = self.name
        if self.app_protocol:
            obj["appProtocol"] = self.app_protocol
        return obj


@dataclass(frozen=True, slots=True)
class KubeService:
    """A Kubernetes Service the harness applies to a cluster before the pods start."""

    name: str
    cluster: str
    ports: tuple[KubePort, ...]
    namespace: str = "default"
    selector: dict[str, str] = field(default_factory=dict)

    def selects(self, pod: PodRun) -> bool:
        return (
            pod.cluster == self.cluster
            and pod.namespace == self.namespace
            and bool(self.selector)
            and all(pod.labels.get(k) == v for k, v in self.selector.items())
        )

    def to_json(self) -> dict[str, Any]:
        """The Service object (the API server allocates its cluster IP)."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "type": "ClusterIP",
                "selector": dict(self.selector),
                "ports": [p.to_json() for p in self.ports],
            },
        }


@dataclass(frozen=True, slots=True)
class WorldSpec:
    name: str
    emulator: dict[str, Any]
    """The emulator world, parsed YAML (emulator.worldfile.build_world validates it)."""
    network: ipaddress.IPv4Network
    grace_s: float = 10.0
    services: tuple[ServiceRun, ...] = ()
    pods: tuple[PodRun, ...] = ()
    kube_services: tuple[KubeService, ...] = ()
    clients: tuple[str, ...] = ("client",)
    source: str = "<data>"
    emulator_dir: Path | None = None
    """Where the emulator world's relative paths (cluster manifests) start."""

    def service_run(self, project: str, region: str, name: str) -> ServiceRun | None:
        return next((s for s in self.services if s.matches(project, region, name)), None)


def expand(command: tuple[str, ...], python: str = sys.executable) -> list[str]:
    return [python if part == PYTHON else part for part in command]


class _Problems(FieldChecker):
    """The shared field reader plus the harness's own field kinds."""

    def command(self, obj: dict[str, Any], where: str) -> tuple[str, ...]:
        value = obj.get("command")
        if value is None:
            self.fail(f"{where}.command", "required")
            return ()
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value)
        ):
            self.fail(f"{where}.command", "must be a non-empty list of strings")
            return ()
        return tuple(str(v) for v in value)

    def env(self, obj: dict[str, Any], where: str) -> dict[str, str]:
        env = self.str_map(obj, "env", where)
        for key in [k for k in env if _ENV.fullmatch(k) is None]:
            self.fail(f"{where}.env.{key}", "is not a valid variable name")
            del env[key]
        return env

    def user(self, obj: dict[str, Any], where: str) -> int:
        return self.integer(obj, "user", where, low=0, high=65535, default=0) or 0

    def flag(self, obj: dict[str, Any], key: str, where: str, *, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", "must be true or false")
            return default
        return value

    def choice(self, obj: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
        value = obj.get(key, choices[0] if key == "interception" else None)
        if value not in choices:
            self.fail(f"{where}.{key}", f"must be one of {', '.join(choices)}, got {value!r}")
            return choices[0]
        return str(value)

    def name(self, obj: dict[str, Any], key: str, where: str, *, required: bool) -> str:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", "required")
            return ""
        if not isinstance(value, str) or _NAME.fullmatch(value) is None:
            self.fail(f"{where}.{key}", f"{value!r} must match {_NAME.pattern} (at most 32 chars)")
            return ""
        return value

    def ports(self, obj: dict[str, Any], where: str) -> tuple[int, ...]:
        found: list[int] = []
        for at, item in self.items(obj, "ports", where):
            port = self.integer({"port": item}, "port", at, low=1, high=65535, default=None)
            if port is not None:
                found.append(port)
        return tuple(found)


def load_spec(path: Path) -> WorldSpec:
    """Read a harness world file; WorldSpecError lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorldSpecError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    return parse_spec(text, source=str(path), base=path.parent)


def parse_spec(text: str, *, source: str = "<string>", base: Path | None = None) -> WorldSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorldSpecError(source, [f"not valid YAML: {exc}"]) from exc
    return build_spec(raw, source=source, base=base or Path.cwd())


def build_spec(raw: Any, *, source: str = "<data>", base: Path) -> WorldSpec:
    """Validate parsed YAML into a WorldSpec; emulator worlds given by path are read here."""
    check = _Problems()
    top = check.mapping(raw, "world", _TOP)
    emulator: dict[str, Any] = {}
    emulator_dir = base
    value = top.get("emulator")
    if value is None:
        check.fail("world.emulator", "required: a world file path or an inline world")
    elif isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            check.fail("world.emulator", f"cannot read {path}: {exc}")
        else:
            if isinstance(loaded, dict):
                emulator = loaded
                emulator_dir = path.parent
            else:
                check.fail("world.emulator", f"{path} is not a world mapping")
    elif isinstance(value, dict):
        emulator = value
    else:
        check.fail("world.emulator", f"must be a path or a mapping, got {kind_of(value)}")
    name = top.get("name", emulator.get("name", "world"))
    if not isinstance(name, str) or not name:
        check.fail("world.name", "must be a non-empty string")
        name = "world"
    network = ipaddress.IPv4Network("10.77.0.0/16")
    if "network" in top:
        try:
            network = ipaddress.IPv4Network(str(top["network"]))
        except ValueError as exc:
            check.fail("world.network", f"not an IPv4 network: {exc}")
        else:
            if network.prefixlen > 22:
                check.fail("world.network", "needs at least a /22 (four /24 subnets)")
    grace = top.get("grace_s", 10)
    if not isinstance(grace, int | float) or isinstance(grace, bool) or not 0 <= grace <= 600:
        check.fail("world.grace_s", f"must be a number of seconds in [0, 600], got {grace!r}")
        grace = 10
    services = _services(check, top)
    pods = _pods(check, top)
    kube_services = _kube_services(check, top)
    clients_raw = top.get("clients", ["client"])
    clients: list[str] = []
    if not isinstance(clients_raw, list):
        check.fail("world.clients", "must be a list of names")
    else:
        for i, item in enumerate(clients_raw):
            got = check.name({"name": item}, "name", f"world.clients[{i}]", required=True)
            if got in clients:
                check.fail(f"world.clients[{i}]", f"duplicate client {got!r}")
            if got:
                clients.append(got)
    if check.problems:
        raise WorldSpecError(source, check.problems)
    return WorldSpec(
        name=name,
        emulator=emulator,
        network=network,
        grace_s=float(grace),
        services=tuple(services),
        pods=tuple(pods),
        kube_services=tuple(kube_services),
        clients=tuple(clients),
        source=source,
        emulator_dir=emulator_dir,
    )


def _services(check: _Problems, top: dict[str, Any]) -> list[ServiceRun]:
    out: list[ServiceRun] = []
    for where, item in check.items(top, "services", "world"):
        obj = check.mapping(item, where, _SERVICE)
        if not obj:
            continue
        service = obj.get("service")
        if not isinstance(service, str) or not service:
            check.fail(f"{where}.service", "required: a run service NAME or PROJECT/REGION/NAME")
            service = ""
        generation = check.choice(obj, "generation", where, GENERATIONS)
        root = obj.get("root", "/")
        if not isinstance(root, str) or not root.startswith("/"):
            check.fail(f"{where}.root", "must be an absolute directory")
            root = "/"
        elif root != "/" and generation == "gen2":
            check.fail(f"{where}.root", "only gen1 instances run in their own root for now")
        if any(s.service == service for s in out):
            check.fail(f"{where}.service", f"duplicate entry for {service!r}")
        out.append(
            ServiceRun(
                service=service,
                generation=generation,
                command=check.command(obj, where),
                env=check.env(obj, where),
                root=root,
                user=check.user(obj, where),
                connector=check.flag(obj, "connector", where, default=False),
            )
        )
    return out


def _pods(check: _Problems, top: dict[str, Any]) -> list[PodRun]:
    out: list[PodRun] = []
    for where, item in check.items(top, "pods", "world"):
        obj = check.mapping(item, where, _POD)
        if not obj:
            continue
        name = check.name(obj, "name", where, required=True)
        if name and any(p.name == name for p in out):
            check.fail(f"{where}.name", f"duplicate pod {name!r}")
        interception = check.choice(obj, "interception", where, INTERCEPTIONS)
        sidecar = check.flag(obj, "sidecar", where, default=interception == "istio")
        if sidecar and interception != "istio":
            check.fail(f"{where}.sidecar", "a sidecar needs interception: istio")
        out.append(
            PodRun(
                name=name,
                command=check.command(obj, where),
                namespace=check.name(obj, "namespace", where, required=False) or "default",
                service_account=check.name(obj, "service_account", where, required=False)
                or "default",
                cluster=check.name(obj, "cluster", where, required=False) or None,
                labels=check.str_map(obj, "labels", where),
                ports=check.ports(obj, where),
                env=check.env(obj, where),
                user=check.user(obj, where),
                interception=interception,
                sidecar=sidecar,
            )
        )
    return out


def _kube_services(check: _Problems, top: dict[str, Any]) -> list[KubeService]:
    out: list[KubeService] = []
    for where, item in check.items(top, "kube_services", "world"):
        obj = check.mapping(item, where, _KUBE_SERVICE)
        if not obj:
            continue
        name = check.name(obj, "name", where, required=True)
        cluster = check.name(obj, "cluster", where, required=True)
        namespace = check.name(obj, "namespace", where, required=False) or "default"
        key = (cluster, namespace, name)
        if name and any((s.cluster, s.namespace, s.name) == key for s in out):
            check.fail(f"{where}.name", f"duplicate Service {namespace}/{name} in {cluster!r}")
        selector = check.str_map(obj, "selector", where)
        if not selector:
            check.fail(f"{where}.selector", "required: the labels of the pods behind the Service")
        ports: list[KubePort] = []
        for at, raw_port in check.items(obj, "ports", where):
            port_obj = check.mapping(raw_port, at, _KUBE_PORT)
            if not port_obj:
                continue
            number = check.integer(port_obj, "port", at, low=1, high=65535, default=None)
            target = check.integer(port_obj, "target_port", at, low=1, high=65535, default=0)
            if number is not None:
                ports.append(
                    KubePort(
                        number,
                        check.name(port_obj, "name", at, required=False),
                        target or None,
                        check.string(port_obj, "app_protocol", at) or None,
                    )
                )
        if not ports:
            check.fail(f"{where}.ports", "required: at least one port")
        elif len(ports) > 1 and not all(p.name for p in ports):
            check.fail(f"{where}.ports", "every port needs a name when there are several")
        out.append(KubeService(name, cluster, tuple(ports), namespace, selector))
    return out
