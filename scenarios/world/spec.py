"""Harness world files: the emulator's world plus how its participants run.

Validation collects every problem and names each by field path
(`services[0].generation: must be gen1 or gen2`), as emulator world files do.
The shape is documented in docs/worlds.md; `scenarios/worlds/basic.yaml` is an example.

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
        command: ["{python}", -m, scenarios.apps.echo, --port, "8080"]
        interception: istio          # istio (istio-init style rules) or none
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

from scenarios.world.errors import WorldSpecError

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP = {"name", "emulator", "network", "grace_s", "services", "pods", "clients"}
_SERVICE = {"service", "generation", "command", "env", "root", "user", "connector"}
_POD = {
    "name",
    "cluster",
    "namespace",
    "service_account",
    "command",
    "env",
    "user",
    "interception",
}
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
    name: str
    command: tuple[str, ...]
    namespace: str = "default"
    service_account: str = "default"
    cluster: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    user: int = 0
    interception: str = "istio"


@dataclass(frozen=True, slots=True)
class WorldSpec:
    name: str
    emulator: dict[str, Any]
    """The emulator world, parsed YAML (emulator.worldfile.build_world validates it)."""
    network: ipaddress.IPv4Network
    grace_s: float = 10.0
    services: tuple[ServiceRun, ...] = ()
    pods: tuple[PodRun, ...] = ()
    clients: tuple[str, ...] = ("client",)
    source: str = "<data>"

    def service_run(self, project: str, region: str, name: str) -> ServiceRun | None:
        return next((s for s in self.services if s.matches(project, region, name)), None)


def expand(command: tuple[str, ...], python: str = sys.executable) -> list[str]:
    return [python if part == PYTHON else part for part in command]


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def mapping(self, obj: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            self.fail(where, f"must be a mapping, got {_kind(obj)}")
            return {}
        for key in sorted(set(obj) - allowed, key=str):
            self.fail(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(allowed))})")
        return obj

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
        value = obj.get("env") or {}
        if not isinstance(value, dict):
            self.fail(f"{where}.env", f"must map names to strings, got {_kind(value)}")
            return {}
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or _ENV.fullmatch(key) is None:
                self.fail(f"{where}.env.{key}", "is not a valid variable name")
            elif isinstance(item, dict | list) or item is None:
                self.fail(f"{where}.env.{key}", "must be a string")
            else:
                out[key] = str(item).lower() if isinstance(item, bool) else str(item)
        return out

    def user(self, obj: dict[str, Any], where: str) -> int:
        value = obj.get("user", 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 65536:
            self.fail(f"{where}.user", f"must be a uid in [0, 65535], got {value!r}")
            return 0
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


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


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
            else:
                check.fail("world.emulator", f"{path} is not a world mapping")
    elif isinstance(value, dict):
        emulator = value
    else:
        check.fail("world.emulator", f"must be a path or a mapping, got {_kind(value)}")
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
    services = _services(check, top.get("services") or [])
    pods = _pods(check, top.get("pods") or [])
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
    if check.items:
        raise WorldSpecError(source, check.items)
    return WorldSpec(
        name=name,
        emulator=emulator,
        network=network,
        grace_s=float(grace),
        services=tuple(services),
        pods=tuple(pods),
        clients=tuple(clients),
        source=source,
    )


def _services(check: _Problems, items: Any) -> list[ServiceRun]:
    if not isinstance(items, list):
        check.fail("world.services", "must be a list")
        return []
    out: list[ServiceRun] = []
    for i, item in enumerate(items):
        where = f"world.services[{i}]"
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
        connector = obj.get("connector", False)
        if not isinstance(connector, bool):
            check.fail(f"{where}.connector", "must be true or false")
            connector = False
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
                connector=connector,
            )
        )
    return out


def _pods(check: _Problems, items: Any) -> list[PodRun]:
    if not isinstance(items, list):
        check.fail("world.pods", "must be a list")
        return []
    out: list[PodRun] = []
    for i, item in enumerate(items):
        where = f"world.pods[{i}]"
        obj = check.mapping(item, where, _POD)
        if not obj:
            continue
        name = check.name(obj, "name", where, required=True)
        if name and any(p.name == name for p in out):
            check.fail(f"{where}.name", f"duplicate pod {name!r}")
        out.append(
            PodRun(
                name=name,
                command=check.command(obj, where),
                namespace=check.name(obj, "namespace", where, required=False) or "default",
                service_account=check.name(obj, "service_account", where, required=False)
                or "default",
                cluster=check.name(obj, "cluster", where, required=False) or None,
                env=check.env(obj, where),
                user=check.user(obj, where),
                interception=check.choice(obj, "interception", where, INTERCEPTIONS),
            )
        )
    return out
