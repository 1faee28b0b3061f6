"""Settings: every environment variable krun reads, parsed and validated once (pure).

`Settings.from_env(mapping)` is the only reader; `krun.cli` passes `os.environ`, tests pass
dicts. An empty value counts as unset (the original's rule). A malformed value raises
ConfigError naming the variable and what was expected; nothing is silently ignored.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from krun import env
from krun.errors import ConfigError
from krun.meshurl import ClusterMesh, MeshLocator, parse_mesh

PROXY_UID = 1337
DEFAULT_CERT_TTL = 86400
MAX_CERT_TTL = 90 * 86400
DEFAULT_METADATA_HOST = "169.254.169.254"
DEFAULT_ENDPOINTS = {
    env.KRUN_CONTAINER_ENDPOINT: "https://container.googleapis.com",
    env.KRUN_CRM_ENDPOINT: "https://cloudresourcemanager.googleapis.com",
    env.KRUN_STS_ENDPOINT: "https://sts.googleapis.com",
    env.KRUN_IAMCREDENTIALS_ENDPOINT: "https://iamcredentials.googleapis.com",
}
# Patterns stay text: `re` compiles (and caches) one only when its variable is set.
_PORT_NAME = r"[A-Za-z0-9_.-]+\Z"
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)\Z"
_CA_POOL = r"projects/[^/]+/locations/[^/]+/caPools/[^/]+\Z"
_PROJECT_ID = r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\Z"
_LOCATION = r"[a-z]+(?:-[a-z]+)*[0-9]+(?:-[a-z])?\Z"
_DNS_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class KeyType(enum.StrEnum):
    """Workload key algorithms."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"


class InterceptionMode(enum.StrEnum):
    """Istio's interception modes; NONE means whitebox."""

    NONE = "NONE"
    REDIRECT = "REDIRECT"
    TPROXY = "TPROXY"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """The subset of Istio's ProxyConfig krun reads; `text` is passed to the agent as is."""

    text: str
    discovery_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where krun reaches Google: the metadata server and the API base URLs."""

    metadata_host: str = DEFAULT_METADATA_HOST
    metadata_host_explicit: bool = False
    """True when `GCE_METADATA_HOST` was set: on Google Cloud without probing."""
    container: str = DEFAULT_ENDPOINTS[env.KRUN_CONTAINER_ENDPOINT]
    crm: str = DEFAULT_ENDPOINTS[env.KRUN_CRM_ENDPOINT]
    sts: str = DEFAULT_ENDPOINTS[env.KRUN_STS_ENDPOINT]
    iamcredentials: str = DEFAULT_ENDPOINTS[env.KRUN_IAMCREDENTIALS_ENDPOINT]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the environment says, validated; `None` means unset."""

    mesh: MeshLocator | None = None
    namespace: str | None = None
    name: str | None = None
    service_account: str | None = None
    gateway: str | None = None
    mesh_tenant: str | None = None
    trust_domain: str | None = None
    k_service: str | None = None
    k_revision: str | None = None
    k_configuration: str | None = None
    port: int | None = None
    hostname: str | None = None

    project_id: str | None = None
    project_number: str | None = None
    cluster_name: str | None = None
    cluster_location: str | None = None
    no_gce_check: bool = False
    google_credentials: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    ca_file: str | None = None
    """CA bundle for outgoing TLS; None: the system's roots."""

    xds_addr: str | None = None
    ca_addr: str | None = None
    proxy_config: ProxyConfig | None = None
    oss_istio: bool = False
    cluster_id: str | None = None
    istiod_san: str | None = None
    ca_pool: str | None = None
    cas_pool: str | None = None
    mcp_config: str = "env-asm-managed"
    xds_agent_debug: str | None = None
    envoy_log_level: str | None = None
    mesh_debug: bool = False

    interception_mode: InterceptionMode | None = None
    outbound_ip_ranges_include: tuple[str, ...] | None = None
    outbound_ports_exclude: tuple[int, ...] | None = None
    k8s_uid: int | None = None
    grpc_xds_bootstrap: str | None = None
    ports: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """HBONE ports from `PORT_<name>`: name -> `host:port` (`-` only for `http`)."""
    startup_probe_http: str | None = None
    startup_probe_tcp: str | None = None

    kubeconfig: str | None = None
    kubernetes_service_host: str | None = None
    kubernetes_service_port: int | None = None
    home: str | None = None
    ssh_auth: str | None = None

    base_dir: str = "/"
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_UID
    key_type: KeyType = KeyType.EC_P256
    renew_at: float = 0.5
    cert_ttl: int = DEFAULT_CERT_TTL
    impersonate: str | None = None
    log_format: str = "json"

    @property
    def explicit_xds_addr(self) -> str | None:
        """`PROXY_CONFIG.discoveryAddress`, else `XDS_ADDR` (the original's order)."""
        if self.proxy_config is not None and self.proxy_config.discovery_address:
            return self.proxy_config.discovery_address
        return self.xds_addr

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate `environ`; raise ConfigError naming the first bad variable."""
        return _from_env(_Env(environ))


class _Env:
    """Reads of one mapping, with empty values treated as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None


def _from_env(e: _Env) -> Settings:
    mesh = parse_mesh(e.get(env.MESH) or "") if e.get(env.MESH) else None
    cluster_name = _pattern(e, env.CLUSTER_NAME, _DNS_NAME, "a cluster name")
    cluster_location = _pattern(e, env.CLUSTER_LOCATION, _LOCATION, "a region or zone")
    _check_mesh_against_env(mesh, cluster_name, cluster_location)
    return Settings(
        mesh=mesh,
        namespace=_pattern(e, env.WORKLOAD_NAMESPACE, _DNS_NAME, "a Kubernetes namespace"),
        name=e.get(env.WORKLOAD_NAME),
        service_account=_pattern(
            e, env.WORKLOAD_SERVICE_ACCOUNT, _DNS_NAME, "a Kubernetes service account name"
        ),
        gateway=e.get(env.GATEWAY_NAME),
        mesh_tenant=e.get(env.MESH_TENANT),
        trust_domain=_pattern(e, env.TRUST_DOMAIN, _DNS_NAME, "a DNS-like trust domain"),
        k_service=e.get(env.K_SERVICE),
        k_revision=e.get(env.K_REVISION),
        k_configuration=e.get(env.K_CONFIGURATION),
        port=_port_number(e, env.PORT),
        hostname=e.get(env.HOSTNAME),
        project_id=_pattern(e, env.PROJECT_ID, _PROJECT_ID, "a Google Cloud project id"),
        project_number=_digits(e, env.PROJECT_NUMBER),
        cluster_name=cluster_name,
        cluster_location=cluster_location,
        no_gce_check=_flag(e, env.NO_GCE_CHECK),
        google_credentials=e.get(env.GOOGLE_APPLICATION_CREDENTIALS),
        endpoints=_endpoints(e),
        ca_file=e.get(env.SSL_CERT_FILE) or e.get(env.REQUESTS_CA_BUNDLE),
        xds_addr=_address(e, env.XDS_ADDR, allow_dash=True),
        ca_addr=_address(e, env.CA_ADDR, allow_dash=False),
        proxy_config=_proxy_config(e),
        oss_istio=e.get(env.OSS_ISTIO) is not None,
        cluster_id=e.get(env.ISTIO_META_CLUSTER_ID),
        istiod_san=_pattern(e, env.ISTIOD_SAN, _DNS_NAME, "a DNS name"),
        ca_pool=_pattern(e, env.CA_POOL, _CA_POOL, "projects/P/locations/L/caPools/POOL"),
        cas_pool=_pattern(e, env.CAS_POOL, _CA_POOL, "projects/P/locations/L/caPools/POOL"),
        mcp_config=e.get(env.MCP_CONFIG) or "env-asm-managed",
        xds_agent_debug=e.get(env.XDS_AGENT_DEBUG),
        envoy_log_level=e.get(env.ENVOY_LOG_LEVEL),
        mesh_debug=e.get(env.MESH_DEBUG) is not None,
        interception_mode=_interception_mode(e),
        outbound_ip_ranges_include=_ip_ranges(e),
        outbound_ports_exclude=_port_list(e, env.OUTBOUND_PORTS_EXCLUDE),
        k8s_uid=_integer(e, env.K8S_UID, low=0, high=2**32 - 2),
        grpc_xds_bootstrap=e.get(env.GRPC_XDS_BOOTSTRAP),
        ports=MappingProxyType(parse_ports(e.environ)),
        startup_probe_http=_http_url(e, env.STARTUP_PROBE_HTTP),
        startup_probe_tcp=_address(e, env.STARTUP_PROBE_TCP, allow_dash=False),
        kubeconfig=e.get(env.KUBECONFIG),
        kubernetes_service_host=e.get(env.KUBERNETES_SERVICE_HOST),
        kubernetes_service_port=_port_number(e, env.KUBERNETES_SERVICE_PORT),
        home=e.get(env.HOME),
        ssh_auth=e.get(env.SSH_AUTH),
        base_dir=e.get(env.MESH_BASE_DIR) or "/",
        proxy_uid=_default(_integer(e, env.KRUN_PROXY_UID, low=0, high=2**32 - 2), PROXY_UID),
        proxy_gid=_default(_integer(e, env.KRUN_PROXY_GID, low=0, high=2**32 - 2), PROXY_UID),
        key_type=_choice(e, env.KRUN_KEY_TYPE, KeyType) or KeyType.EC_P256,
        renew_at=_fraction(e, env.KRUN_CERT_RENEW_AT, default=0.5),
        cert_ttl=_default(
            _integer(e, env.KRUN_CERT_TTL, low=1, high=MAX_CERT_TTL), DEFAULT_CERT_TTL
        ),
        impersonate=_email(e, env.KRUN_IMPERSONATE),
        log_format=_log_format(e),
    )


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _check_mesh_against_env(
    mesh: MeshLocator | None, name: str | None, location: str | None
) -> None:
    """A MESH cluster and CLUSTER_* disagreeing would give an STS audience for the wrong cluster."""
    if not isinstance(mesh, ClusterMesh):
        return
    if name and mesh.cluster and name != mesh.cluster:
        raise ConfigError(
            env.CLUSTER_NAME, f"{name!r} contradicts the cluster {mesh.cluster!r} named by MESH"
        )
    if location and mesh.location and location != mesh.location:
        raise ConfigError(
            env.CLUSTER_LOCATION,
            f"{location!r} contradicts the location {mesh.location!r} named by MESH",
        )


def _pattern(e: _Env, name: str, pattern: str, expected: str) -> str | None:
    value = e.get(name)
    if value is not None and not re.match(pattern, value):
        raise ConfigError(name, f"{value!r} is not {expected}")
    return value


def _digits(e: _Env, name: str) -> str | None:
    value = e.get(name)
    if value is not None and not (value.isascii() and value.isdigit()):
        raise ConfigError(name, f"{value!r} is not a number")
    return value


def _integer(e: _Env, name: str, *, low: int, high: int) -> int | None:
    value = e.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not an integer") from None
    if not low <= number <= high:
        raise ConfigError(name, f"{number} is outside {low}..{high}")
    return number


def _port_number(e: _Env, name: str) -> int | None:
    value = e.get(name)
    if value is None:
        return None
    return _port(name, value)


def _port(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigError(name, f"{text!r} is not a port number (1-65535)")
    return int(text)


def _flag(e: _Env, name: str) -> bool:
    value = e.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(name, f"{value!r} is not a boolean (true or false)")


def _fraction(e: _Env, name: str, *, default: float) -> float:
    value = e.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a number") from None
    if not 0 < number < 1:
        raise ConfigError(name, f"{value!r} is not a fraction strictly between 0 and 1")
    return number


def _email(e: _Env, name: str) -> str | None:
    value = e.get(name)
    if value is not None and value.count("@") != 1:
        raise ConfigError(name, f"{value!r} is not a service account email")
    return value


def _log_format(e: _Env) -> str:
    value = e.get(env.KRUN_LOG_FORMAT) or "json"
    if value not in {"json", "text"}:
        raise ConfigError(env.KRUN_LOG_FORMAT, f"{value!r} is not json or text")
    return value


K = TypeVar("K", bound=enum.StrEnum)


def _choice(e: _Env, name: str, kind: type[K]) -> K | None:
    value = e.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigError(name, f"{value!r} is not one of {allowed}") from None


def _interception_mode(e: _Env) -> InterceptionMode | None:
    value = e.get(env.ISTIO_META_INTERCEPTION_MODE)
    if value is None:
        return None
    try:
        return InterceptionMode(value.upper())
    except ValueError:
        raise ConfigError(
            env.ISTIO_META_INTERCEPTION_MODE, f"{value!r} is not NONE, REDIRECT or TPROXY"
        ) from None


def _endpoints(e: _Env) -> Endpoints:
    urls = {}
    for name, default in DEFAULT_ENDPOINTS.items():
        value = e.get(name)
        if value is not None and not value.startswith(("https://", "http://")):
            raise ConfigError(name, f"{value!r} is not an http(s) URL")
        urls[name] = (value or default).rstrip("/")
    host = e.get(env.GCE_METADATA_HOST)
    if host is not None:
        check_address(env.GCE_METADATA_HOST, host, need_port=False)
    return Endpoints(
        metadata_host=host or DEFAULT_METADATA_HOST,
        metadata_host_explicit=host is not None,
        container=urls[env.KRUN_CONTAINER_ENDPOINT],
        crm=urls[env.KRUN_CRM_ENDPOINT],
        sts=urls[env.KRUN_STS_ENDPOINT],
        iamcredentials=urls[env.KRUN_IAMCREDENTIALS_ENDPOINT],
    )


def check_address(name: str, value: str, *, need_port: bool = True) -> str:
    """`host:port` (IPv6 in brackets); `need_port=False` also accepts a bare host."""
    host, sep, port = value.rpartition(":")
    if not sep or host.endswith(":") or (not host.startswith("[") and ":" in host):
        if need_port:
            raise ConfigError(name, f"{value!r} is not host:port")
        host, port = value, ""
    if not host or not re.match(_HOST, host):
        raise ConfigError(name, f"{value!r} has no valid host (expected host:port)")
    if port or need_port:
        _port(name, port)
    return value


def _address(e: _Env, name: str, *, allow_dash: bool) -> str | None:
    value = e.get(name)
    if value is None or (allow_dash and value == "-"):
        return value
    return check_address(name, value)


def _http_url(e: _Env, name: str) -> str | None:
    value = e.get(name)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ConfigError(name, f"{value!r} is not an http(s) URL")
    return value


def _ip_ranges(e: _Env) -> tuple[str, ...] | None:
    name = env.OUTBOUND_IP_RANGES_INCLUDE
    value = e.get(name)
    if value is None:
        return None
    return parse_ip_ranges(name, value)


def parse_ip_ranges(name: str, value: str) -> tuple[str, ...]:
    """`*` or comma-separated CIDRs (a bare address is a /32 or /128)."""
    if value.strip() == "*":
        return ("*",)
    ranges = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            raise ConfigError(name, f"{value!r} has an empty entry (expected CIDR,CIDR or *)")
        try:
            ranges.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as error:
            raise ConfigError(name, f"{item!r} is not a CIDR range: {error}") from None
    return tuple(ranges)


def _port_list(e: _Env, name: str) -> tuple[int, ...] | None:
    value = e.get(name)
    if value is None:
        return None
    return tuple(_port(name, part.strip()) for part in value.split(","))


def parse_port_target(name: str, value: str) -> str:
    """A `PORT_<name>` value: `N` means `127.0.0.1:N`; `host:port` is kept; `-` only for http."""
    text = value.strip()
    if text == "-" and name == env.PORT_HTTP:
        return text
    if text.isascii() and text.isdigit():
        return f"127.0.0.1:{_port(name, text)}"
    try:
        return check_address(name, text)
    except ConfigError:
        raise ConfigError(name, f"{value!r} is not a port (N) or host:port") from None


def parse_ports(environ: Mapping[str, str]) -> dict[str, str]:
    """Every `PORT_<name>` of `environ`, validated: name -> target."""
    ports = {}
    for key, value in environ.items():
        if not key.startswith(env.PORT_PREFIX) or not value.strip():
            continue
        port_name = key.removeprefix(env.PORT_PREFIX)
        if not re.match(_PORT_NAME, port_name):
            raise ConfigError(key, "a PORT_<name> variable needs a name of letters, digits, _.-")
        ports[port_name] = parse_port_target(key, value)
    return ports


def _proxy_config(e: _Env) -> ProxyConfig | None:
    text = e.get(env.PROXY_CONFIG)
    if text is None:
        return None
    document = load_yaml_or_json(env.PROXY_CONFIG, text)
    if not isinstance(document, dict):
        raise ConfigError(env.PROXY_CONFIG, "expected a YAML or JSON mapping (Istio ProxyConfig)")
    address = document.get("discoveryAddress")
    if address is not None and not isinstance(address, str):
        raise ConfigError(env.PROXY_CONFIG, "discoveryAddress must be a host:port string")
    if address:
        check_address(env.PROXY_CONFIG, address)
    return ProxyConfig(text=text, discovery_address=address or None)


def load_yaml_or_json(name: str, text: str) -> Any:
    """JSON first (cheap to import), YAML otherwise: PyYAML costs ~20 ms of start-up."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml  # noqa: PLC0415 - only when the value is not JSON

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(name, f"not valid YAML or JSON: {error}") from None
