"""Google access and ID tokens: from the metadata server, or from a Kubernetes token via STS.

The STS path (seed-spec §4.5), for workloads whose Google identity is their Kubernetes
service account:

1. the Kubernetes JWT (audience: the trust domain), from a callable;
2. STS `POST /v1/token`: a federated token for the audience
   `identitynamespace:TRUST_DOMAIN:CLUSTER_URL` (JSON body with a Content-Type and a
   checked status, both missing in the original);
3. IAM Credentials `generateAccessToken` / `generateIdToken` for the mesh data-plane service
   agent `service-NUM@gcp-sa-meshdataplane.iam.gserviceaccount.com` (or `KRUN_IMPERSONATE`).

Every token is cached per audience and refreshed before it expires (`krun.identity.cache`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from urllib.parse import quote

from krun.discovery.metadata import MetadataClient
from krun.errors import DiscoveryError, IdentityError
from krun.http import HttpClient
from krun.identity.cache import Token, TokenCache

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)
LIFETIME = 3600
_ACCESS = "access"
_FEDERATED = "federated"


def service_agent(project_number: str) -> str:
    """The mesh data-plane service agent of a project."""
    return f"service-{project_number}@gcp-sa-meshdataplane.iam.gserviceaccount.com"


def sts_audience(trust_domain: str, cluster_url: str) -> str:
    return f"identitynamespace:{trust_domain}:{cluster_url}"


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, unverified (the issuer verifies; we only schedule)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def parse_rfc3339(value: str) -> float:
    """`2026-01-01T00:00:00Z` (any fraction) to seconds since the epoch."""
    text = value.strip()
    if "." in text:
        head, _, tail = text.partition(".")
        zone = tail.lstrip("0123456789")
        text = head + zone
    return dt.datetime.fromisoformat(text).timestamp()


class MetadataTokens:
    """The instance's own account, through the metadata server."""

    def __init__(self, client: MetadataClient, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._cache = TokenCache(self._fetch, clock=clock)

    def _fetch(self, key: str) -> Token:
        try:
            if key == _ACCESS:
                found = self.client.access_token()
                return Token(found.token, found.expires_at)
            audience = key.removeprefix("id:")
            value = self.client.id_token(audience)
        except DiscoveryError as error:
            raise IdentityError(str(error), url=error.url, status=error.status) from None
        return Token(value, jwt_expiry(value) or self.clock() + LIFETIME)

    def access_token(self) -> str:
        return self._cache.get(_ACCESS).value

    def id_token(self, audience: str) -> str:
        return self._cache.get(f"id:{audience}").value

    def seed(self, token: str, expires_at: float) -> None:
        """Start with the access token discovery already fetched."""
        self._cache.put(_ACCESS, Token(token, expires_at))


class StsTokens:
    """A Kubernetes service account's way to Google tokens."""

    def __init__(
        self,
        http: HttpClient,
        *,
        sts_endpoint: str,
        iam_endpoint: str,
        kube_token: Callable[[], str],
        trust_domain: str,
        cluster_url: str,
        project_number: str | None = None,
        impersonate: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not impersonate and not project_number:
            raise IdentityError(
                "STS impersonation needs the config project's number "
                "(PROJECT_NUMBER) or an account to impersonate (KRUN_IMPERSONATE)"
            )
        self.http = http
        self.sts_url = f"{sts_endpoint.rstrip('/')}/v1/token"
        self.iam_base = f"{iam_endpoint.rstrip('/')}/v1/projects/-/serviceAccounts/"
        self.kube_token = kube_token
        self.audience = sts_audience(trust_domain, cluster_url)
        self.account = impersonate or service_agent(str(project_number))
        self.clock = clock
        self._cache = TokenCache(self._fetch, clock=clock)

    def federated_token(self) -> str:
        """The STS token (what Google APIs accept directly, e.g. for CAS)."""
        return self._cache.get(_FEDERATED).value

    def access_token(self) -> str:
        """An access token of the impersonated account, scope cloud-platform."""
        return self._cache.get(_ACCESS).value

    def id_token(self, audience: str) -> str:
        """A Google ID token of the impersonated account for `audience`, with its email."""
        return self._cache.get(f"id:{audience}").value

    def _fetch(self, key: str) -> Token:
        if key == _FEDERATED:
            return self._exchange()
        federated = self.federated_token()
        headers = {"Authorization": f"Bearer {federated}"}
        account = quote(self.account, safe="@.")
        if key == _ACCESS:
            url = f"{self.iam_base}{account}:generateAccessToken"
            body: dict[str, object] = {"scope": [CLOUD_PLATFORM], "lifetime": f"{LIFETIME}s"}
            document = self.http.json(
                "POST", url, headers=headers, json_body=body, error=IdentityError
            )
            try:
                return Token(str(document["accessToken"]), parse_rfc3339(document["expireTime"]))
            except (KeyError, TypeError, ValueError):
                raise IdentityError(
                    f"{url}: no accessToken/expireTime in the answer", url=url
                ) from None
        audience = key.removeprefix("id:")
        url = f"{self.iam_base}{account}:generateIdToken"
        body = {"audience": audience, "includeEmail": True}
        document = self.http.json("POST", url, headers=headers, json_body=body, error=IdentityError)
        value = document.get("token")
        if not value:
            raise IdentityError(f"{url}: no token in the answer", url=url)
        return Token(str(value), jwt_expiry(str(value)) or self.clock() + LIFETIME)

    def _exchange(self) -> Token:
        subject = self.kube_token()
        started = self.clock()
        body = {
            "grantType": TOKEN_EXCHANGE,
            "subjectTokenType": JWT_TYPE,
            "requestedTokenType": ACCESS_TOKEN_TYPE,
            "audience": self.audience,
            "subjectToken": subject,
            "scope": CLOUD_PLATFORM,
        }
        document = self.http.json("POST", self.sts_url, json_body=body, error=IdentityError)
        value = document.get("access_token")
        if not value:
            raise IdentityError(f"{self.sts_url}: no access_token in the answer", url=self.sts_url)
        try:
            lifetime = float(document.get("expires_in") or LIFETIME)
        except (TypeError, ValueError):
            raise IdentityError(
                f"{self.sts_url}: expires_in {document['expires_in']!r} is not a number",
                url=self.sts_url,
            ) from None
        return Token(str(value), started + lifetime)
