"""How krun reaches a Kubernetes API server: kubeconfig, in-cluster files, or a GKE cluster.

Three sources, the first that applies wins (seed-spec §2.4.1):

1. a kubeconfig: `KUBECONFIG` (the first existing file of the list), else `$HOME/.kube/config`
   when it exists; its current context names the server, the CA and the user;
2. in-cluster: `KUBERNETES_SERVICE_HOST` (and `_PORT`) with the pod's service-account token
   and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`;
3. the GKE cluster discovery selected: `https://ENDPOINT`, its CA, a Google access token.

Users of a kubeconfig authenticate with a `token`, a `tokenFile`, a client certificate, or
Google (`auth-provider: gcp`, or `exec` of `gke-gcloud-auth-plugin`): a Google access token
from the metadata server, or the `access-token` the gcp provider cached. A GKE context name
`gke_PROJECT_LOCATION_CLUSTER` also names the config cluster (explicit env still wins,
**fix**: the original let the context override `PROJECT_ID` and `CLUSTER_*`).

Parsing is pure (`parse_kubeconfig`); a bad file is a ConfigError for `KUBECONFIG` naming
the file and the field (`contexts[0].context.cluster: names no cluster in clusters`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krun import env
from krun.config import Settings, load_yaml_or_json
from krun.errors import ConfigError

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GKE_AUTH_PLUGIN = "gke-gcloud-auth-plugin"


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """A fixed bearer token."""

    # Not in repr(): a secret must not reach a log line or a traceback.
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TokenFileAuth:
    """A bearer token re-read from a file on every call (kubelet rotates projected tokens)."""

    path: str


@dataclass(frozen=True, slots=True)
class ClientCertAuth:
    """A client certificate and key, as PEM."""

    cert_pem: bytes
    # Not in repr(): a secret must not reach a log line or a traceback.
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class GoogleAuth:
    """A Google access token: `token` when the kubeconfig cached one, else the metadata server's."""

    # Not in repr(): a secret must not reach a log line or a traceback.
    token: str | None = field(default=None, repr=False)


KubeAuth = TokenAuth | TokenFileAuth | ClientCertAuth | GoogleAuth


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeAccess:
    """Everything needed to call one API server."""

    server: str
    """`https://host:port`, no trailing slash."""
    auth: KubeAuth
    ca_pem: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    origin: str
    """Where this came from, for messages: `kubeconfig PATH (context C)`, `in-cluster`, ..."""
    user: str = ""
    """Who we are, when known: the kubeconfig user, a Google account email."""
    namespace: str | None = None
    gke: tuple[str, str, str] | None = None
    """(project, location, cluster) from a `gke_P_L_C` context name."""
    kind: str = "kubeconfig"
    """`kubeconfig`, `in-cluster` or `gke`: which of the three sources this is."""


def gke_context(name: str) -> tuple[str, str, str] | None:
    """`gke_PROJECT_LOCATION_CLUSTER` -> its three parts; None for other context names."""
    parts = name.split("_")
    if parts[0] != "gke" or len(parts) < 4 or not all(parts[1:4]):
        return None
    return parts[1], parts[2], "_".join(parts[3:])


def kubeconfig_path(settings: Settings, exists: Callable[[str], bool] | None = None) -> str | None:
    """The kubeconfig to use: the first existing file of `KUBECONFIG`, else `~/.kube/config`."""
    present = exists or (lambda path: Path(path).is_file())
    if settings.kubeconfig:
        candidates = [p for p in settings.kubeconfig.split(":") if p]
        found = next((p for p in candidates if present(p)), None)
        if found is None:
            raise ConfigError(env.KUBECONFIG, f"no such file: {settings.kubeconfig}")
        return found
    if settings.home:
        default = str(Path(settings.home) / ".kube" / "config")
        if present(default):
            return default
    return None


class _Fields:
    """Typed reads with a field path for every complaint."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(env.KUBECONFIG, f"{self.origin}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {_kind(value)}")
        return value

    def text(self, obj: Mapping[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be a string, got {_kind(value)}")
        return value

    def named(
        self, document: Mapping[str, Any], section: str, name: str, inner: str
    ) -> tuple[int, dict[str, Any]] | None:
        """The `inner` mapping of the entry of list `section` called `name`."""
        entries = document.get(section) or []
        if not isinstance(entries, list):
            raise self.fail(section, f"must be a list, got {_kind(entries)}")
        for index, item in enumerate(entries):
            where = f"{section}[{index}]"
            entry = self.mapping(item, where)
            if entry.get("name") == name:
                return index, self.mapping(entry.get(inner), f"{where}.{inner}")
        return None

    def data(self, obj: Mapping[str, Any], key: str, where: str) -> bytes | None:
        """A `*-data` field: base64 of PEM."""
        text = self.text(obj, key, where)
        if text is None:
            return None
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{where}.{key}", "is not base64") from None


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def parse_kubeconfig(
    text: str,
    *,
    origin: str,
    base: Path | None = None,
    read: Callable[[str], bytes] | None = None,
) -> KubeAccess:
    """The current context of a kubeconfig; relative file paths are relative to `base`.

    `read(path) -> bytes` reads referenced files (certificates, token files); it is only
    called for `certificate-authority`-style path fields.
    """
    f = _Fields(origin)
    reader = read or (lambda path: Path(path).read_bytes())
    try:
        document = load_yaml_or_json(env.KUBECONFIG, text)
    except ConfigError as error:
        raise ConfigError(env.KUBECONFIG, f"{origin}: {error}") from None
    document = f.mapping(document, "(top level)")
    current = f.text(document, "current-context", "(top level)")
    if current is None:
        raise f.fail("current-context", "required: which context to use")
    found = f.named(document, "contexts", current, "context")
    if found is None:
        raise f.fail("current-context", f"names no entry of contexts ({current!r})")
    c_index, context = found
    c_where = f"contexts[{c_index}].context"
    cluster_name = f.text(context, "cluster", c_where)
    user_name = f.text(context, "user", c_where)
    if cluster_name is None:
        raise f.fail(f"{c_where}.cluster", "required")
    cluster_found = f.named(document, "clusters", cluster_name, "cluster")
    if cluster_found is None:
        raise f.fail(f"{c_where}.cluster", f"names no entry of clusters ({cluster_name!r})")
    k_index, cluster = cluster_found
    k_where = f"clusters[{k_index}].cluster"
    server = f.text(cluster, "server", k_where)
    if server is None or not server.startswith(("https://", "http://")):
        raise f.fail(f"{k_where}.server", f"must be an https:// (or http://) URL, got {server!r}")

    def path_of(value: str) -> str:
        return str(base / value) if base is not None and not Path(value).is_absolute() else value

    def file_bytes(obj: Mapping[str, Any], key: str, where: str) -> bytes | None:
        value = f.text(obj, key, where)
        if value is None:
            return None
        try:
            data: bytes = reader(path_of(value))
        except OSError as error:
            raise f.fail(f"{where}.{key}", f"cannot read {value}: {error.strerror}") from None
        return data

    ca_data = f.data(cluster, "certificate-authority-data", k_where)
    ca_file = f.text(cluster, "certificate-authority", k_where)
    insecure = cluster.get("insecure-skip-tls-verify") is True
    user: Mapping[str, Any] = {}
    u_where = "users"
    if user_name is not None:
        user_found = f.named(document, "users", user_name, "user")
        if user_found is None:
            raise f.fail(f"{c_where}.user", f"names no entry of users ({user_name!r})")
        u_index, user = user_found
        u_where = f"users[{u_index}].user"
    auth = _auth(f, user, u_where, file_bytes, path_of)
    return KubeAccess(
        server=server.rstrip("/"),
        auth=auth,
        ca_pem=ca_data.decode("utf-8", "replace") if ca_data else None,
        ca_file=path_of(ca_file) if ca_file and not ca_data else None,
        insecure=insecure,
        origin=f"{origin} (context {current})",
        user=user_name or "",
        namespace=f.text(context, "namespace", c_where),
        gke=gke_context(current),
    )


def _auth(
    f: _Fields,
    user: Mapping[str, Any],
    where: str,
    file_bytes: Callable[[Mapping[str, Any], str, str], bytes | None],
    path_of: Callable[[str], str],
) -> KubeAuth:
    token = f.text(user, "token", where)
    if token is not None:
        return TokenAuth(token)
    token_file = f.text(user, "tokenFile", where)
    if token_file is not None:
        return TokenFileAuth(path_of(token_file))
    cert = f.data(user, "client-certificate-data", where) or file_bytes(
        user, "client-certificate", where
    )
    key = f.data(user, "client-key-data", where) or file_bytes(user, "client-key", where)
    if cert or key:
        if not (cert and key):
            raise f.fail(where, "a client certificate needs both the certificate and the key")
        return ClientCertAuth(cert, key)
    provider = user.get("auth-provider")
    if provider is not None:
        provider = f.mapping(provider, f"{where}.auth-provider")
        name = f.text(provider, "name", f"{where}.auth-provider")
        if name != "gcp":
            raise f.fail(f"{where}.auth-provider.name", f"only gcp is supported, not {name!r}")
        config = provider.get("config") or {}
        config = f.mapping(config, f"{where}.auth-provider.config")
        return GoogleAuth(f.text(config, "access-token", f"{where}.auth-provider.config"))
    plugin = user.get("exec")
    if plugin is not None:
        plugin = f.mapping(plugin, f"{where}.exec")
        command = f.text(plugin, "command", f"{where}.exec") or ""
        if Path(command).name != GKE_AUTH_PLUGIN:
            raise f.fail(
                f"{where}.exec.command",
                f"only {GKE_AUTH_PLUGIN} (a Google access token) is supported, not {command!r}",
            )
        return GoogleAuth()
    raise f.fail(
        where,
        "no credentials: expected token, tokenFile, a client certificate, "
        "auth-provider gcp or exec gke-gcloud-auth-plugin",
    )


def in_cluster(settings: Settings, directory: Path = IN_CLUSTER_DIR) -> KubeAccess:
    """The pod's own access: `KUBERNETES_SERVICE_HOST:PORT`, its token file and CA."""
    host = settings.kubernetes_service_host or ""
    port = settings.kubernetes_service_port or 443
    shown = f"[{host}]" if ":" in host else host
    token = directory / "token"
    ca = directory / "ca.crt"
    if not token.is_file():
        raise ConfigError(
            env.KUBERNETES_SERVICE_HOST,
            f"in a pod, but {token} is missing (automountServiceAccountToken: false?)",
        )
    namespace_file = directory / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
    return KubeAccess(
        server=f"https://{shown}:{port}",
        auth=TokenFileAuth(str(token)),
        ca_file=str(ca) if ca.is_file() else None,
        origin=f"in-cluster ({env.KUBERNETES_SERVICE_HOST}={host})",
        namespace=namespace,
        kind="in-cluster",
    )


def from_gke(endpoint: str, ca_pem: str, *, cluster: str, email: str | None) -> KubeAccess:
    """The API server of a GKE cluster as discovery found it, called with a Google token."""
    return KubeAccess(
        server=f"https://{endpoint}",
        auth=GoogleAuth(),
        ca_pem=ca_pem or None,
        origin=f"GKE cluster {cluster}",
        user=email or "",
        kind="gke",
    )
