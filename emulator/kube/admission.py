"""What kube-apiserver does to an object before storing it: defaulting and validation.

Per kind, the subset of the real strategies that clients can observe:
defaults they read back (a Service's `type`, `clusterIP`, `ports[].protocol`
and `targetPort`; a Pod's `restartPolicy`; a Secret's `type`; a CRD's status
conditions), and validation errors they may hit (names, labels, ConfigMap keys,
required fields, immutable fields), reported as 422 Invalid with the field path.

Choice: no OpenAPI schemas, so unknown fields are kept rather than refused,
and custom resources are only checked for apiVersion, kind and name.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from emulator.kube import status
from emulator.kube.kinds import CRDError, Kind, kinds_of_crd
from emulator.kube.selectors import from_match, label_key_problem, label_value_problem
from emulator.kube.status import Cause, invalid_value, not_supported, required

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")
_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_KEY_HELP = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)

DNS_LABEL_NAMES = {"namespaces", "services"}
PATH_SEGMENT_NAMES = {
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def validate_metadata(kind: Kind, obj: dict[str, Any]) -> list[Cause]:
    """Name, labels and annotations, as ObjectMeta validation words its errors."""
    causes: list[Cause] = []
    metadata = _obj(obj.get("metadata"))
    name = metadata.get("name")
    if not name and not metadata.get("generateName"):
        causes.append(required("metadata.name", "name or generateName is required"))
    elif name:
        causes += _name_causes(kind, str(name))
    for key, value in _obj(metadata.get("labels")).items():
        problem = label_key_problem(str(key))
        if problem:
            causes.append(invalid_value("metadata.labels", key, problem))
        if not isinstance(value, str):
            causes.append(invalid_value("metadata.labels", value, "must be a string"))
        elif (problem := label_value_problem(value)) is not None:
            causes.append(invalid_value("metadata.labels", value, problem))
    for key in _obj(metadata.get("annotations")):
        problem = label_key_problem(str(key))
        if problem:
            causes.append(invalid_value("metadata.annotations", key, problem))
    return causes


def _name_causes(kind: Kind, name: str) -> list[Cause]:
    resource = kind.resource_key
    if resource in PATH_SEGMENT_NAMES or not kind.builtin:
        if name in (".", "..") or "/" in name or "%" in name:
            return [invalid_value("metadata.name", name, "may not contain '/' or '%'")]
        return []
    if resource in DNS_LABEL_NAMES:
        if len(name) > 63 or not _LABEL.match(name):
            return [invalid_value("metadata.name", name, _LABEL_HELP)]
        return []
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [invalid_value("metadata.name", name, _SUBDOMAIN_HELP)]
    return []


def fail(kind: Kind, obj: dict[str, Any], causes: list[Cause]) -> None:
    if causes:
        name = str(_obj(obj.get("metadata")).get("name") or "")
        raise status.invalid(kind.kind, kind.group, name, causes)


def prepare_create(kind: Kind, obj: dict[str, Any], context: ClusterContext) -> None:
    """Default and validate a new object in place; StatusError 422 when invalid."""
    causes = validate_metadata(kind, obj)
    causes += _validate_kind(kind, obj, None, context)
    fail(kind, obj, causes)


def prepare_update(
    kind: Kind, obj: dict[str, Any], old: dict[str, Any], context: ClusterContext
) -> None:
    """Default and validate a replacement in place; immutable fields keep or refuse."""
    causes = validate_metadata(kind, obj)
    causes += _validate_kind(kind, obj, old, context)
    fail(kind, obj, causes)


class ClusterContext:
    """What defaulting needs to know about the cluster: free Service IPs and node ports."""

    def __init__(
        self, service_cidr: str, used_ips: Iterable[str], used_ports: Iterable[int], now: str
    ) -> None:
        self.now = now
        self.network = ipaddress.ip_network(service_cidr, strict=False)
        self.used_ips = set(used_ips)
        self.used_ports = set(used_ports)

    def next_ip(self) -> str:
        for host in self.network.hosts():
            text = str(host)
            if text not in self.used_ips:
                self.used_ips.add(text)
                return text
        raise status.internal(f"the service IP range {self.network} is full")

    def next_node_port(self) -> int:
        for port in range(30000, 32768):
            if port not in self.used_ports:
                self.used_ports.add(port)
                return port
        raise status.internal("no node port is free")


_Check = Callable[[dict[str, Any], dict[str, Any] | None, "ClusterContext"], list[Cause]]


def _validate_kind(
    kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None, context: ClusterContext
) -> list[Cause]:
    handler = _HANDLERS.get(kind.resource_key)
    return handler(obj, old, context) if handler is not None else []


def _config_map(
    obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext
) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for section in ("data", "binaryData"):
        for key, value in _obj(obj.get(section)).items():
            if not _CONFIG_KEY.match(key) or len(key) > 253:
                causes.append(invalid_value(f"{section}[{key}]", key, _KEY_HELP))
            if key in seen:
                causes.append(
                    invalid_value(f"{section}[{key}]", key, "duplicate of key present in data")
                )
            seen.add(key)
            if section == "data" and not isinstance(value, str):
                raise status.bad_request(
                    f'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                    f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                    f"ConfigMap.data of type string"
                )
    return causes


def _secret(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    causes: list[Cause] = []
    data = dict(_obj(obj.get("data")))
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise status.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: '
                f"illegal base64 data in data[{key}]"
            ) from None
    for key, value in _obj(obj.pop("stringData", None)).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data or "data" in obj:
        obj["data"] = data
    for key in data:
        if not _CONFIG_KEY.match(key):
            causes.append(invalid_value(f"data[{key}]", key, _KEY_HELP))
    obj.setdefault("type", "Opaque")
    if old is not None and old.get("type") != obj["type"]:
        causes.append(invalid_value("type", obj["type"], "field is immutable"))
    return causes


def _namespace(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    metadata = _obj(obj.get("metadata"))
    metadata.pop("namespace", None)
    labels = metadata.setdefault("labels", {})
    if isinstance(labels, dict) and metadata.get("name"):
        labels["kubernetes.io/metadata.name"] = metadata["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = (old or {}).get("status") or {"phase": "Active"}
    return []


def _service(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return [invalid_value("spec", spec, "must be an object")]
    previous = _obj((old or {}).get("spec"))
    kind = spec.setdefault("type", "ClusterIP")
    supported = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if kind not in supported:
        return [not_supported("spec.type", kind, supported)]
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and kind != "ExternalName" and not headless:
        causes.append(required("spec.ports"))
    old_ports = {p.get("port"): p for p in previous.get("ports") or [] if isinstance(p, dict)}
    for index, port in enumerate(ports):
        where = f"spec.ports[{index}]"
        if not isinstance(port, dict):
            causes.append(invalid_value(where, port, "must be an object"))
            continue
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(
                invalid_value(f"{where}.port", number, "must be between 1 and 65535, inclusive")
            )
        if len(ports) > 1 and not port.get("name"):
            causes.append(required(f"{where}.name"))
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", number)
        if kind in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            kept = old_ports.get(number, {}).get("nodePort")
            port["nodePort"] = kept or ctx.next_node_port()
    if kind == "ExternalName":
        if not spec.get("externalName"):
            causes.append(required("spec.externalName"))
    elif not spec.get("clusterIP"):
        spec["clusterIP"] = previous.get("clusterIP") or ctx.next_ip()
    elif previous.get("clusterIP") and spec["clusterIP"] != previous["clusterIP"]:
        causes.append(
            invalid_value("spec.clusterIPs[0]", spec["clusterIP"], "may not change once set")
        )
    if kind != "ExternalName":
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("sessionAffinity", "None")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj["status"] = (old or {}).get("status") or {"loadBalancer": {}}
    return causes


def default_pod_spec(spec: dict[str, Any], where: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{where}.containers"))
    for section in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(section) or []):
            at = f"{where}.{section}[{index}]"
            if not isinstance(container, dict):
                causes.append(invalid_value(at, container, "must be an object"))
                continue
            if not container.get("name"):
                causes.append(required(f"{at}.name"))
            image = container.get("image")
            if not image:
                causes.append(required(f"{at}.image"))
            else:
                tag = str(image).rsplit("/", 1)[-1]
                latest = ":" not in tag or tag.endswith(":latest")
                container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    return causes


def _pod(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    spec = obj.setdefault("spec", {})
    causes = default_pod_spec(spec, "spec")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    if old is not None:
        obj["status"] = old.get("status") or {}
    else:
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    return causes


def _deployment(
    obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext
) -> list[Cause]:
    spec = obj.setdefault("spec", {})
    causes: list[Cause] = []
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    selector = spec.get("selector")
    template = _obj(spec.get("template"))
    labels = _obj(_obj(template.get("metadata")).get("labels"))
    if not selector:
        causes.append(required("spec.selector"))
    elif not from_match(selector).matches(labels):
        shown = (
            "map[string]string{"
            + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
            + "}"
        )
        causes.append(
            Cause(
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {shown}: `selector` does not match template `labels`",
            )
        )
    if old is not None and old.get("spec", {}).get("selector") != selector:
        causes.append(invalid_value("spec.selector", "...", "field is immutable"))
    causes += default_pod_spec(template.setdefault("spec", {}), "spec.template.spec")
    obj["status"] = (old or {}).get("status") or {}
    return causes


def _endpoint_slice(
    obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext
) -> list[Cause]:
    kinds = ["FQDN", "IPv4", "IPv6"]
    address_type = obj.get("addressType")
    if not address_type:
        return [required("addressType")]
    if address_type not in kinds:
        return [not_supported("addressType", address_type, kinds)]
    if old is not None and old.get("addressType") != address_type:
        return [invalid_value("addressType", address_type, "field is immutable")]
    if obj.get("endpoints") is None:
        obj["endpoints"] = []
    return []


def _rules(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    causes: list[Cause] = []
    for index, rule in enumerate(obj.get("rules") or []):
        if not isinstance(rule, dict) or not rule.get("verbs"):
            causes.append(
                required(f"rules[{index}].verbs", "verbs must contain at least one value")
            )
            continue
        if rule.get("nonResourceURLs") and obj.get("kind") == "Role":
            causes.append(
                invalid_value(
                    f"rules[{index}].nonResourceURLs",
                    rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
        elif not rule.get("nonResourceURLs") and not rule.get("resources"):
            causes.append(
                required(
                    f"rules[{index}].resources", "resource rules must supply at least one resource"
                )
            )
    return causes


def _binding(cluster_scoped: bool) -> _Check:
    def check(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
        causes: list[Cause] = []
        ref = obj.get("roleRef")
        allowed = ["ClusterRole"] if cluster_scoped else ["ClusterRole", "Role"]
        if not isinstance(ref, dict) or not ref.get("name"):
            causes.append(required("roleRef.name"))
        elif ref.get("kind") not in allowed:
            causes.append(not_supported("roleRef.kind", ref.get("kind"), allowed))
        if old is not None and old.get("roleRef") != ref:
            causes.append(
                Cause(
                    "roleRef",
                    "FieldValueInvalid",
                    f"Invalid value: {_go_map(ref)}: cannot change roleRef",
                )
            )
        for index, subject in enumerate(obj.get("subjects") or []):
            where = f"subjects[{index}]"
            if not isinstance(subject, dict) or not subject.get("name"):
                causes.append(required(f"{where}.name"))
                continue
            kinds = ["Group", "ServiceAccount", "User"]
            if subject.get("kind") not in kinds:
                causes.append(not_supported(f"{where}.kind", subject.get("kind"), kinds))
            if (
                subject.get("kind") == "ServiceAccount"
                and cluster_scoped
                and not subject.get("namespace")
            ):
                causes.append(required(f"{where}.namespace"))
        return causes

    return check


def _go_map(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    return "{" + ", ".join(f"{k}:{v}" for k, v in value.items()) + "}"


def _crd(obj: dict[str, Any], old: dict[str, Any] | None, ctx: ClusterContext) -> list[Cause]:
    causes: list[Cause] = []
    spec = _obj(obj.get("spec"))
    names = _obj(spec.get("names"))
    name = _obj(obj.get("metadata")).get("name")
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if name and name != expected:
        causes.append(
            invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    versions = spec.get("versions") or []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        causes.append(
            invalid_value(
                "spec.versions", "[...]", "must have exactly one version marked as storage version"
            )
        )
    for index, version in enumerate(versions):
        if isinstance(version, dict) and not _obj(version.get("schema")).get("openAPIV3Schema"):
            causes.append(
                required(f"spec.versions[{index}].schema.openAPIV3Schema", "schemas are required")
            )
    try:
        kinds_of_crd(obj)
    except CRDError as exc:
        causes.append(Cause("spec", "FieldValueInvalid", str(exc)))
    if old is not None and _obj(old.get("spec")).get("group") != spec.get("group"):
        causes.append(invalid_value("spec.group", spec.get("group"), "field is immutable"))
    if causes:
        return causes
    spec.setdefault("conversion", {"strategy": "None"})
    accepted = dict(names)
    accepted.setdefault("singular", str(names.get("kind", "")).lower())
    accepted.setdefault("listKind", f"{names.get('kind')}List")
    stored = list(_obj((old or {}).get("status")).get("storedVersions") or [])
    if storage and storage[0]["name"] not in stored:
        stored.append(storage[0]["name"])
    obj["status"] = {
        "acceptedNames": accepted,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": ctx.now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": ctx.now,
            },
        ],
        "storedVersions": stored,
    }
    return causes


_HANDLERS = {
    "configmaps": _config_map,
    "secrets": _secret,
    "namespaces": _namespace,
    "services": _service,
    "pods": _pod,
    "deployments.apps": _deployment,
    "endpointslices.discovery.k8s.io": _endpoint_slice,
    "roles.rbac.authorization.k8s.io": _rules,
    "clusterroles.rbac.authorization.k8s.io": _rules,
    "rolebindings.rbac.authorization.k8s.io": _binding(False),
    "clusterrolebindings.rbac.authorization.k8s.io": _binding(True),
    "customresourcedefinitions.apiextensions.k8s.io": _crd,
}
