"""The mesh-env map: the mesh's shared key/value settings, and how env layers over it.

It normally is the `data` of ConfigMap `istio-system/mesh-env` (read from the Kubernetes
API). With `MESH=file://PATH` or `MESH=https://URL` it is a document instead, in either
shape, as JSON or YAML:

* the map itself: `{"PROJECT_ID": "p", "CLUSTER_NAME": "c", "PORT_grpc": "9090"}`;
* the ConfigMap (`kubectl get cm -n istio-system mesh-env -o yaml`): its `data` is used.

Values are strings; YAML numbers are accepted and written as text. Explicit environment
values always win over the map (`layered`), and `PORT_*` entries merge key by key
(`merged_ports`), unlike the original, which dropped env ports when it loaded the map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from krun import env
from krun.config import load_yaml_or_json, parse_port_target
from krun.decisions import Decision, Source
from krun.errors import ConfigError


def parse_document(text: str, *, origin: str) -> dict[str, str]:
    """A mesh-env document to its map; ConfigError (variable `MESH`) says what is wrong."""
    try:
        document: Any = load_yaml_or_json(env.MESH, text)
    except ConfigError as error:
        raise ConfigError(env.MESH, f"mesh-env document {origin}: {error}") from None
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        document = document.get("data") or {}
    if not isinstance(document, dict):
        raise ConfigError(
            env.MESH, f"mesh-env document {origin} is not a mapping or a ConfigMap with data"
        )
    result = {}
    for key, value in document.items():
        if not isinstance(key, str):
            raise ConfigError(env.MESH, f"mesh-env document {origin}: key {key!r} is not text")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(
                env.MESH, f"mesh-env document {origin}: {key} must be a string, not {value!r}"
            )
        result[key] = str(value)
    return result


def layered(
    key: str, env_value: str | None, mesh_env: Mapping[str, str] | None
) -> Decision[str] | None:
    """`Config(K)`: the environment's value, else the mesh-env map's, else None."""
    if env_value:
        return Decision(env_value, Source.ENV, key)
    if mesh_env and mesh_env.get(key, "").strip():
        return Decision(mesh_env[key].strip(), Source.MESH_ENV, key)
    return None


def merged_ports(
    env_ports: Mapping[str, str], mesh_env: Mapping[str, str] | None
) -> dict[str, str]:
    """HBONE ports from mesh-env `PORT_*`, overridden name by name by the environment's."""
    ports = {}
    for key, value in (mesh_env or {}).items():
        if key.startswith(env.PORT_PREFIX) and len(key) > len(env.PORT_PREFIX) and value.strip():
            ports[key.removeprefix(env.PORT_PREFIX)] = parse_port_target(key, value)
    ports.update(env_ports)
    return ports
