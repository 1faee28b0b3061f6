"""A lean Kubernetes REST client: the three calls krun makes, on `krun.http`.

`kubernetes` costs ~300 ms to import (docs/perf-baselines.md); krun needs a ConfigMap read
and a TokenRequest, a few lines each. Every failure is translated once, here: a
`ServiceError` subclass chosen by the caller, naming the URL, the status and the Status
`message` the API server sent (which names the user and the missing permission on a 403).
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from krun.errors import ConfigError, DiscoveryError, ServiceError
from krun.http import HttpClient, json_object
from krun.identity.cache import Token
from krun.kube.config import ClientCertAuth, GoogleAuth, KubeAccess, TokenAuth, TokenFileAuth

TOKEN_REQUEST_SECONDS = 3600
"""What krun asks TokenRequest for: the server's usual default, and the original's."""


def ssl_context(access: KubeAccess) -> ssl.SSLContext:
    """TLS to the API server: its CA (or the system's roots), a client certificate if any."""
    try:
        context = ssl.create_default_context(cafile=access.ca_file, cadata=access.ca_pem)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            "KUBECONFIG", f"{access.origin}: the cluster CA cannot be loaded: {error}"
        ) from None
    if access.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if isinstance(access.auth, ClientCertAuth):
        import tempfile  # noqa: PLC0415 - ~3 ms of start-up, for a rare kind of kubeconfig

        # ssl loads client certificates from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="krun-kube-") as directory:
            cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
            cert.write_bytes(access.auth.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(access.auth.key_pem)
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(
                    "KUBECONFIG", f"{access.origin}: the client certificate is unusable: {error}"
                ) from None
    return context


def parse_time(value: str) -> float:
    """A Kubernetes timestamp (`2026-01-01T00:00:00Z`) in seconds since the epoch."""
    return dt.datetime.fromisoformat(value).timestamp()


class KubeClient:
    """Calls to one API server as one user."""

    def __init__(
        self,
        access: KubeAccess,
        *,
        google_token: Callable[[], str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.access = access
        self._google_token = google_token
        self._http = HttpClient(timeout=timeout, ssl_context=ssl_context(access))

    @property
    def who(self) -> str:
        """How the API server will know us, as far as we can tell."""
        return self.access.user or self.access.origin

    def _bearer(self, error: type[ServiceError]) -> str | None:
        auth = self.access.auth
        if isinstance(auth, TokenAuth):
            return auth.token
        if isinstance(auth, TokenFileAuth):
            try:
                return Path(auth.path).read_text(encoding="utf-8").strip()
            except OSError as failure:
                raise error(f"cannot read the token file {auth.path}: {failure.strerror}") from None
        if isinstance(auth, GoogleAuth):
            if auth.token:
                return auth.token
            if self._google_token is None:
                raise error(
                    f"{self.access.origin} needs a Google access token, and there is no "
                    "metadata server to get one from"
                )
            return self._google_token()
        return None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        error: type[ServiceError] = DiscoveryError,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One JSON call; None for a 404 when `missing_ok`, `error` for any other failure."""
        url = self.access.server + path
        headers = {"Accept": "application/json"}
        bearer = self._bearer(error)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        answer = self._http.request(method, url, headers=headers, body=data, error=error)
        if answer.status == 404 and missing_ok:
            return None
        return json_object(answer, url, error, call=f"{method} {url} as {self.who}")

    def config_map(
        self, namespace: str, name: str, *, error: type[ServiceError] = DiscoveryError
    ) -> dict[str, str] | None:
        """A ConfigMap's `data`; None when it does not exist."""
        path = f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}"
        document = self.call("GET", path, error=error, missing_ok=True)
        if document is None:
            return None
        data = document.get("data") or {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def request_token(
        self,
        namespace: str,
        service_account: str,
        audience: str,
        *,
        seconds: int = TOKEN_REQUEST_SECONDS,
        error: type[ServiceError] = DiscoveryError,
    ) -> Token:
        """TokenRequest: a token of `namespace/service_account` for `audience`."""
        path = (
            f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts/{quote(service_account)}/token"
        )
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        }
        document = self.call("POST", path, body=body, error=error) or {}
        status = document.get("status") or {}
        token = status.get("token") if isinstance(status, dict) else None
        expires = status.get("expirationTimestamp") if isinstance(status, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires, str):
            raise error(f"{self.access.server}{path}: no status.token in the TokenRequest answer")
        try:
            return Token(token, parse_time(expires))
        except ValueError:
            raise error(
                f"{self.access.server}{path}: bad expirationTimestamp {expires!r}"
            ) from None
