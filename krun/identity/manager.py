"""The workload's mesh identity, kept fresh: the istio-token and the certificate.

`Identity.from_discovery(settings, discovery)` decides everything (`krun.identity.plan`)
and reads what it needs from the cluster (istiod's root). Then:

* `fetch_token()` / `issue()` get a token or a certificate without writing (`krun explain`);
* `start()` writes the istio-token (0600, the proxy's uid when root) and the certificate
  files (`krun.certs.files`), then a background thread renews each when due: the token
  at 80% of its lifetime, the certificate at `KRUN_CERT_RENEW_AT` of its lifetime
  (±5% jitter), without a restart. `stop()` ends the thread; `wake()` makes it look at the
  clock now (tests that move the world clock, a process resumed after a freeze).

The thread never sleeps longer than `MAX_SLEEP`: on Cloud Run an idle instance's CPU is
throttled and a suspended one's clock jumps, so a deadline is checked at least that often.
A failed renewal is retried with backoff (1 s doubling to `MAX_SLEEP`) and logged.

Kubernetes tokens for other audiences (the STS subject, audience = the trust domain) come
from `kube_token(audience)`, cached and refreshed by `krun.identity.cache`.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krun.certs.files import KEY_MODE, Material, plan, write_all, write_atomic
from krun.certs.keys import generate_key, make_csr, private_key_pem
from krun.config import Settings
from krun.decisions import Decision, Source
from krun.discovery.addresses import ControlPlane
from krun.discovery.discover import Discovery
from krun.errors import CertificateError, IdentityError
from krun.identity import plan as rules
from krun.identity.cache import Token, TokenCache
from krun.identity.istio_ca import CAEndpoint, IstioCAClient
from krun.kube.client import KubeClient
from krun.log import LOGGER

MAX_SLEEP = 60.0
RETRY_FIRST = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """A signed chain as krun uses it; times in seconds since the epoch."""

    chain: list[str]
    # Not in repr(): a secret must not reach a log line or a traceback.
    key_pem: bytes = field(repr=False)
    roots: str
    san: list[str]
    not_before: float
    not_after: float
    received_at: float
    issuer: str

    def as_json(self) -> dict[str, Any]:
        def iso(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")

        return {
            "san": self.san,
            "not_before": iso(self.not_before),
            "expiry": iso(self.not_after),
            "lifetime_s": round(self.not_after - max(self.not_before, self.received_at)),
            "issuer": self.issuer,
            "chain_length": len(self.chain),
        }


def describe_leaf(chain: list[str]) -> tuple[list[str], float, float, str]:
    """SAN URIs, notBefore, notAfter and issuer of the chain's first certificate."""
    from cryptography import x509  # noqa: PLC0415 - only once a certificate exists

    try:
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
    except ValueError as error:
        raise CertificateError(f"the CA's leaf certificate does not parse: {error}") from None
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san = [str(uri) for uri in names.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        san = []
    return (
        san,
        leaf.not_valid_before_utc.timestamp(),
        leaf.not_valid_after_utc.timestamp(),
        leaf.issuer.rfc4514_string(),
    )


@dataclass(kw_only=True)
class Identity:
    """The decisions, the clients, and the renewal thread."""

    settings: Settings
    kube: KubeClient
    namespace: str
    service_account: str
    trust_domain: str
    spiffe_id: str
    audience: Decision[str]
    cluster_id: Decision[str]
    ca: CAEndpoint | None
    ca_why: str
    ca_name: Decision[str | None]
    root: Decision[str | None]
    mesh_env: dict[str, str]
    clock: Callable[[], float] = time.time
    jitter: Callable[[], float] = field(default=lambda: random.uniform(-1, 1))  # noqa: S311
    as_root: bool | None = None
    token: Token | None = None
    certificate: Certificate | None = None
    token_refreshes: int = 0
    rotations: int = 0
    _token_at: float = 0.0
    _renew_at: float = 0.0
    _failures: int = 0
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _kube_tokens: TokenCache | None = None

    # Building.

    @classmethod
    def from_discovery(
        cls,
        settings: Settings,
        d: Discovery,
        *,
        clock: Callable[[], float] = time.time,
        **extra: Any,
    ) -> Identity:
        """Decide the identity from a finished discovery; reads istiod's root if needed."""
        if d.kube is None or d.addresses is None or d.cluster is None:
            raise IdentityError(
                "identity needs a finished discovery (cluster, API server, addresses)"
            )
        mesh_env = d.mesh_env or {}
        trust_domain = str(d.value("trust_domain"))
        audience = rules.token_audience(
            d.addresses.kind, rules.oss_istio(settings.oss_istio, mesh_env), trust_domain
        )
        cid = rules.cluster_id(
            settings.cluster_id, mesh_env, d.cluster.project, d.cluster.location, d.cluster.name
        )
        ca, name, root = _ca_endpoint(settings, d, mesh_env)
        identity = cls(
            settings=settings,
            kube=d.kube,
            namespace=str(d.value("namespace")),
            service_account=str(d.value("service_account")),
            trust_domain=trust_domain,
            spiffe_id=str(d.value("spiffe_id")),
            audience=audience,
            cluster_id=cid,
            ca=ca,
            ca_why=name.why,
            ca_name=name,
            root=root,
            mesh_env=dict(mesh_env),
            clock=clock,
            **extra,
        )
        identity._kube_tokens = TokenCache(identity._request, clock=clock)
        return identity

    @property
    def token_path(self) -> Path:
        return Path(self.settings.base_dir) / rules.TOKEN_PATH

    def decisions(self) -> dict[str, Decision[Any]]:
        return {
            "istio_token_audience": self.audience,
            "cluster_id": self.cluster_id,
            "ca_root": Decision(
                "(PEM)" if self.root.value else None, self.root.source, self.root.why
            ),
            "ca_server_name": self.ca_name,
        }

    # Tokens.

    def _request(self, audience: str) -> Token:
        return self.kube.request_token(
            self.namespace, self.service_account, audience, error=IdentityError
        )

    def kube_token(self, audience: str) -> str:
        """A Kubernetes token of the workload's KSA for `audience` (e.g. the STS subject)."""
        assert self._kube_tokens is not None
        return self._kube_tokens.get(audience).value

    def fetch_token(self) -> Token:
        """A fresh istio-token, not written."""
        return self._request(self.audience.value)

    def refresh_token(self) -> Token:
        """Get and write the istio-token."""
        now = self.clock()
        token = self.fetch_token()
        write_atomic(
            self.token_path,
            token.value.encode(),
            mode=KEY_MODE,
            owner=(self.settings.proxy_uid, self.settings.proxy_gid) if self._root() else None,
        )
        if self._kube_tokens is not None:
            self._kube_tokens.put(self.audience.value, token)
        self.token, self._token_at = token, rules.token_refresh_at(now, token.expires_at)
        self.token_refreshes += 1
        LOGGER.info(
            "identity.token",
            extra={"fields": {"audience": self.audience.value, "expires_at": token.expires_at}},
        )
        return token

    # Certificates.

    def issue(self, token: str | None = None) -> Certificate:
        """A new key and certificate from the CA, not written."""
        if self.ca is None:
            raise CertificateError(f"no certificate authority to ask: {self.ca_why}")
        key = generate_key(self.settings.key_type)
        csr = make_csr(key, spiffe_id=self.spiffe_id, trust_domain=self.trust_domain)
        client = IstioCAClient(self.ca, cluster_id=self.cluster_id.value)
        received = self.clock()
        chain = client.sign(
            csr.decode(),
            token=token or self._current_token(),
            validity_seconds=self.settings.cert_ttl,
        )
        san, not_before, not_after, issuer = describe_leaf(chain)
        return Certificate(
            chain=chain,
            key_pem=private_key_pem(key),
            roots=rules.trust_bundle(self.mesh_env, self.root.value, chain),
            san=san,
            not_before=not_before,
            not_after=not_after,
            received_at=received,
            issuer=issuer,
        )

    def _current_token(self) -> str:
        if self.token is not None and self.clock() < self.token.expires_at:
            return self.token.value
        return self.fetch_token().value

    def renew_certificate(self) -> Certificate:
        """Get and write a new certificate, key and roots in both layouts."""
        certificate = self.issue()
        material = Material(
            chain="".join(c if c.endswith("\n") else c + "\n" for c in certificate.chain).encode(),
            key=certificate.key_pem,
            roots=certificate.roots.encode(),
        )
        files = plan(
            self.settings.base_dir,
            proxy_uid=self.settings.proxy_uid,
            proxy_gid=self.settings.proxy_gid,
        )
        write_all(material, files, as_root=self._root())
        self.certificate = certificate
        self._renew_at = rules.certificate_renew_at(
            certificate.received_at,
            certificate.not_before,
            certificate.not_after,
            share=self.settings.renew_at,
            jitter=self.jitter(),
        )
        self.rotations += 1
        LOGGER.info(
            "identity.certificate",
            extra={"fields": {**certificate.as_json(), "renew_at": self._renew_at}},
        )
        return certificate

    def _root(self) -> bool:
        return os.geteuid() == 0 if self.as_root is None else self.as_root

    # The renewal loop.

    def step(self) -> float:
        """Renew what is due now; the seconds until the next deadline."""
        now = self.clock()
        try:
            if self.token is None or now >= self._token_at:
                self.refresh_token()
            if self.ca is not None and (self.certificate is None or now >= self._renew_at):
                self.renew_certificate()
        except (IdentityError, CertificateError) as error:
            self._failures += 1
            delay = min(MAX_SLEEP, RETRY_FIRST * 2.0 ** (self._failures - 1))
            LOGGER.warning(
                "identity.renewal_failed", extra={"fields": {"error": str(error), "retry_s": delay}}
            )
            return delay
        self._failures = 0
        return self._next_delay()

    def _next_delay(self) -> float:
        deadlines = [self._token_at] + ([self._renew_at] if self.ca is not None else [])
        return max(0.0, min(deadlines) - self.clock())

    def start(self, *, background: bool = True) -> None:
        """Write the token and certificate now (errors raise), then keep them fresh."""
        self.refresh_token()
        if self.ca is not None:
            self.renew_certificate()
        if background:
            self._thread = threading.Thread(target=self._run, name="krun-identity", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        delay = self._next_delay()
        while not self._stopping.is_set():
            self._wake.wait(min(delay, MAX_SLEEP))
            self._wake.clear()
            if self._stopping.is_set():
                return
            delay = self.step()

    def wake(self) -> None:
        """Look at the clock now instead of at the next deadline."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the renewal thread (files stay)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _ca_endpoint(
    settings: Settings, d: Discovery, mesh_env: dict[str, str]
) -> tuple[CAEndpoint | None, Decision[str | None], Decision[str | None]]:
    """The CA to call, the name checked on its certificate (or why no CA), and its root."""
    assert d.addresses is not None
    assert d.kube is not None
    address = d.addresses.ca.value
    no_root: Decision[str | None] = Decision(None, Source.DEFAULT, "no CA")
    if address is None:
        return None, Decision(None, no_root.source, f"no CA address: {d.addresses.ca.why}"), no_root
    if d.addresses.kind is ControlPlane.MANAGED or address.startswith(
        ("meshca.googleapis.com", "privateca.googleapis.com")
    ):
        why = f"{address} ({d.addresses.ca.why}) is not supported yet"
        return None, Decision(None, d.addresses.ca.source, why), no_root
    config_map: str | None = None
    file_root: str | None = None
    if not mesh_env.get("CAROOT_ISTIOD", "").strip():
        try:
            data = d.kube.config_map("istio-system", "istio-ca-root-cert", error=IdentityError)
        except IdentityError as error:
            if error.status != 403:
                raise
            data = None
            d.notes.append(f"istio-system/istio-ca-root-cert is not readable: {error}")
        config_map = (data or {}).get("root-cert.pem")
        if not config_map:
            path = Path(settings.base_dir) / rules.ISTIOD_ROOT_FILE
            try:
                file_root = path.read_text(encoding="utf-8") if path.is_file() else None
            except (OSError, UnicodeDecodeError) as error:
                raise CertificateError(f"cannot read istiod's root {path}: {error}") from None
    root = rules.istiod_root(mesh_env, config_map, file_root)
    name = rules.ca_server_name(address, settings.istiod_san, mesh_env)
    endpoint = CAEndpoint(address=address, server_name=name.value, roots_pem=root.value)
    return endpoint, Decision(name.value, name.source, name.why), root
