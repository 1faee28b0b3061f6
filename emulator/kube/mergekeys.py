"""Which lists of the built-in kinds merge under a strategic merge patch, and on what key.

Transcribed from the `patchStrategy`/`patchMergeKey` struct tags of the
Kubernetes API types (k8s.io/api), for the kinds this API server serves. Fields
not listed merge as plain maps (objects) or are replaced (lists), which is also
what the real server does for a field without tags. kubectl computes its patch
from the same tags, so the two sides agree.
"""

from __future__ import annotations

from emulator.kube.patch import Field, Schema


def _merge(key: str | None, schema: Schema | None = None, *, retain: bool = False) -> Field:
    return Field(merge_key=key, merge=True, retain_keys=retain, schema=schema)


def _map(schema: Schema) -> Field:
    return Field(schema=schema)


OBJECT_META = Schema({"ownerReferences": _merge("uid"), "finalizers": _merge(None)})

CONTAINER = Schema(
    {
        "ports": _merge("containerPort"),
        "env": _merge("name"),
        "volumeMounts": _merge("mountPath"),
        "volumeDevices": _merge("devicePath"),
        "resizePolicy": Field(),
    }
)

POD_SPEC = Schema(
    {
        "containers": _merge("name", CONTAINER),
        "initContainers": _merge("name", CONTAINER),
        "ephemeralContainers": _merge("name", CONTAINER),
        "volumes": _merge("name", retain=True),
        "imagePullSecrets": _merge("name"),
        "hostAliases": _merge("ip"),
        "topologySpreadConstraints": _merge("topologyKey"),
        "resourceClaims": _merge("name", retain=True),
        "schedulingGates": _merge("name"),
    }
)

POD_STATUS = Schema(
    {
        "conditions": _merge("type"),
        "podIPs": _merge("ip"),
        "hostIPs": _merge("ip"),
    }
)

POD_TEMPLATE = Schema({"metadata": _map(OBJECT_META), "spec": _map(POD_SPEC)})

CONDITIONS = Schema({"conditions": _merge("type")})

SCHEMAS: dict[str, Schema] = {
    "Pod": Schema(
        {"metadata": _map(OBJECT_META), "spec": _map(POD_SPEC), "status": _map(POD_STATUS)}
    ),
    "Service": Schema(
        {
            "metadata": _map(OBJECT_META),
            "spec": _map(Schema({"ports": _merge("port")})),
            "status": _map(CONDITIONS),
        }
    ),
    "ServiceAccount": Schema({"metadata": _map(OBJECT_META), "secrets": _merge("name")}),
    "Deployment": Schema(
        {
            "metadata": _map(OBJECT_META),
            "spec": _map(
                Schema(
                    {
                        "template": _map(POD_TEMPLATE),
                        "strategy": Field(retain_keys=True),
                    }
                )
            ),
            "status": _map(CONDITIONS),
        }
    ),
    "Namespace": Schema({"metadata": _map(OBJECT_META), "status": _map(CONDITIONS)}),
    "CustomResourceDefinition": Schema({"metadata": _map(OBJECT_META), "status": _map(CONDITIONS)}),
}


def schema_for(kind: str) -> Schema:
    """The merge schema of a built-in kind; every kind at least merges its metadata lists."""
    return SCHEMAS.get(kind, Schema({"metadata": _map(OBJECT_META)}))
