"""Discovery documents, built from the registry: what clients fetch before any request.

* `/version`; `/api` (APIVersions), `/apis` (APIGroupList), `/apis/G` (APIGroup)
  and `/api/v1`, `/apis/G/V` (APIResourceList, subresources as `plural/sub`);
* the aggregated form (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList) that
  kubectl 1.30+ asks `/api` and `/apis` for first, in one round trip each;
* OpenAPI v3: the `/openapi/v3` index and one document per group-version with
  a PATCH operation per kind that declares the `fieldValidation` parameter and
  the `x-kubernetes-group-version-kind` extension. kubectl reads exactly that
  to decide that the server validates fields itself; the documents carry no
  schemas, so kubectl computes apply patches from its compiled-in types (or as
  JSON merge patches for custom resources), as it does against servers
  without OpenAPI.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from emulator.kube.kinds import SUBRESOURCE_KINDS, Kind, Registry

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "token": ["create"],
    "finalize": ["update"],
    "scale": ["get", "patch", "update"],
}


def version_info(master_version: str) -> dict[str, str]:
    """`/version` for a GKE master version such as `1.30.5-gke.1014001`."""
    match = re.match(r"(\d+)\.(\d+)", master_version)
    major, minor = match.groups() if match else ("1", "30")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{master_version}",
        "gitCommit": hashlib.sha1(master_version.encode()).hexdigest(),  # noqa: S324 - an id
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22.7 X:boringcrypto",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(registry: Registry, name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = registry.groups()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(registry, g, v) for g, v in sorted(groups.items()) if g],
    }


def api_group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(registry, name, versions)}


def _storage_hash(kind: Kind) -> str:
    digest = hashlib.sha256(f"{kind.group}/{kind.version}/{kind.kind}".encode()).digest()
    import base64  # noqa: PLC0415 - only here

    return base64.b64encode(digest[:8]).decode()


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    kinds = registry.kinds_in(group, version)
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for kind in kinds:
        entry: dict[str, Any] = {
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": list(kind.verbs),
        }
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        if kind.categories:
            entry["categories"] = list(kind.categories)
        if kind.persisted:
            entry["storageVersionHash"] = _storage_hash(kind)
        resources.append(entry)
        for sub in kind.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{kind.plural}/{sub}",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
            }
            other = SUBRESOURCE_KINDS.get((kind.plural, sub))
            if other is not None:
                sub_entry |= {"group": other[0], "version": other[1], "kind": other[2]}
            resources.append(sub_entry)
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _discovery_resource(kind: Kind) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": kind.plural,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    subs = []
    for sub in kind.subresources:
        group, version, name = SUBRESOURCE_KINDS.get(
            (kind.plural, sub), (kind.group, kind.version, kind.kind)
        )
        subs.append(
            {
                "subresource": sub,
                "responseKind": {"group": group, "version": version, "kind": name},
                "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(
    registry: Registry, *, core: bool, api_version: str = "apidiscovery.k8s.io/v2"
) -> dict[str, Any]:
    """The APIGroupDiscoveryList for `/api` (core) or `/apis` (every named group)."""
    items = []
    for group, versions in sorted(registry.groups().items()):
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _discovery_resource(k) for k in registry.kinds_in(group, version)
                        ],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }


def wants_aggregated(accept: str) -> str | None:
    """The aggregated content type the Accept header asks for first, if any."""
    for part in accept.split(","):
        params = {
            p.strip().partition("=")[0]: p.strip().partition("=")[2] for p in part.split(";")[1:]
        }
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") == "v2":
                return AGGREGATED_V2
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1
    return None


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    kinds = registry.kinds_in(group, version)
    if not kinds:
        return None
    paths: dict[str, Any] = {}
    validation = {
        "name": "fieldValidation",
        "in": "query",
        "description": "Strict, Warn or Ignore: how the server treats unknown or duplicate fields.",
        "schema": {"type": "string", "uniqueItems": True},
    }
    for kind in kinds:
        if not kind.persisted:
            continue
        prefix = "/" + _gv_path(group, version)
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        gvk = {"group": group, "version": version, "kind": kind.kind}
        operation = {
            "operationId": f"patch{kind.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [validation],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{prefix}{scope}/{kind.plural}/{{name}}"] = {
            "patch": operation,
            "put": {
                **operation,
                "operationId": f"replace{kind.kind}",
                "x-kubernetes-action": "put",
            },
        }
        paths[f"{prefix}{scope}/{kind.plural}"] = {
            "post": {
                **operation,
                "operationId": f"create{kind.kind}",
                "x-kubernetes-action": "post",
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_v3_index(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, versions in registry.groups().items():
        for version in versions:
            document = openapi_v3_document(registry, group, version)
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64]
            key = _gv_path(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": dict(sorted(paths.items()))}


# OpenAPI v2, which clients only take as protobuf (gnostic's openapi.v2.Document).

OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    return _message(number, text.encode())


def openapi_v2_protobuf(registry: Registry) -> bytes:
    """A schema-less OpenAPI v2 document: PATCH per kind, with `fieldValidation` declared.

    kubectl's fallback validator reads it when a kind is missing from v3 (a
    custom resource whose CRD is not installed yet), so the user gets the real
    "no matches for kind" error instead of a failed download.
    """
    # Field numbers are those of gnostic's OpenAPIv2.proto: in Document swagger 1,
    # info 2 and paths 8; in Paths path 2; NamedPathItem and NamedAny are name 1,
    # value 2; in PathItem patch 8; in Operation operation_id 5, parameters 8 and
    # vendor_extension 13; ParametersItem's parameter 1 holds Parameter's
    # non_body_parameter 2, which holds query_parameter_sub_schema 3 (in 2, name
    # 4, type 6, unique_items 20); Any carries its text as yaml 2.
    query = _text(2, "query") + _text(4, "fieldValidation") + _text(6, "string")
    query += _varint(20 << 3) + b"\x01"
    parameter = _message(1, _message(2, _message(3, query)))
    paths = b""
    for kind in sorted(registry.all(), key=lambda k: (k.group, k.version, k.plural)):
        if not kind.persisted:
            continue
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        path = f"/{_gv_path(kind.group, kind.version)}{scope}/{kind.plural}/{{name}}"
        gvk = f"group: {json.dumps(kind.group)}\nkind: {kind.kind}\nversion: {kind.version}\n"
        extension = _text(1, "x-kubernetes-group-version-kind") + _message(2, _text(2, gvk))
        operation = _text(5, f"patch{kind.kind}") + _message(8, parameter) + _message(13, extension)
        paths += _message(2, _text(1, path) + _message(2, _message(8, operation)))
    info = _text(1, "Kubernetes") + _text(2, "unversioned")
    return _text(1, "2.0") + _message(2, info) + _message(8, paths)
