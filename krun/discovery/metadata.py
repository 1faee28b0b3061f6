"""The metadata server: which platform this is, the project, the instance and its account.

The platform comes from the `Server` header every answer carries (`platform_of`, pure).
The independent reads are made concurrently on a small thread pool (threads, not asyncio:
importing asyncio alone costs ~50 ms of start-up). A 404 means "not on this platform"
(Cloud Run has no attributes, a VM no `instance/region`), anything else is an error.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

from krun.errors import DiscoveryError
from krun.http import HttpClient, Response

METADATA_TIMEOUT = 2.0
"""Google's client libraries give the metadata server 2 s per request."""

_HEADERS = {"Metadata-Flavor": "Google"}


class Platform(enum.StrEnum):
    """Where krun runs, as the metadata server says."""

    CLOUD_RUN = "cloudrun"
    GKE = "gke"
    VM = "vm"
    NONE = "none"


SERVER_HEADERS = {
    "Metadata Server for Serverless": Platform.CLOUD_RUN,
    "GKE Metadata Server": Platform.GKE,
    "Metadata Server for VM": Platform.VM,
}


def platform_of(server: str | None) -> tuple[Platform, str]:
    """The platform a `Server` header names, and why; an unknown header counts as a VM."""
    if server in SERVER_HEADERS:
        return SERVER_HEADERS[server], f"Server: {server}"
    return Platform.VM, f"unrecognised Server header {server!r}; assuming a VM"


def last_segment(value: str | None, collection: str) -> str | None:
    """`projects/N/regions/R` -> `R` (also accepts a bare `R`)."""
    if not value:
        return None
    marker = f"/{collection}/"
    return value.rsplit(marker, 1)[1] if marker in value else value


def region_of_zone(zone: str) -> str:
    """`us-central1-a` -> `us-central1` (Cloud Run's `us-central1-1` too)."""
    parts = zone.split("-")
    return "-".join(parts[:-1]) if len(parts) > 2 else zone


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessToken:
    """A bearer token and when it stops working (seconds since the epoch)."""

    # Not in repr(): a secret must not reach a log line or a traceback.
    token: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceInfo:
    """What the metadata server told us; None where the platform has no such value."""

    platform: Platform
    why: str
    project_id: str | None = None
    project_number: str | None = None
    email: str | None = None
    instance_id: str | None = None
    region: str | None = None
    zone: str | None = None
    cluster_name: str | None = None
    cluster_location: str | None = None
    token: AccessToken | None = None


_PATHS = {
    "project_id": "project/project-id",
    "project_number": "project/numeric-project-id",
    "email": "instance/service-accounts/default/email",
    "instance_id": "instance/id",
    "region": "instance/region",
    "zone": "instance/zone",
    "cluster_name": "instance/attributes/cluster-name",
    "cluster_location": "instance/attributes/cluster-location",
    "token": "instance/service-accounts/default/token",
}


def _text(answer: Response, url: str) -> str:
    try:
        return answer.body.decode().strip()
    except UnicodeDecodeError:
        raise DiscoveryError(f"{url}: the answer is not UTF-8 text", url=url, status=200) from None


class MetadataClient:
    """Reads of `http://HOST/computeMetadata/v1/...`."""

    def __init__(
        self, http: HttpClient, host: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.http = http
        self.base = f"http://{host}/computeMetadata/v1/"
        self._time = clock

    def get(self, path: str) -> Response | None:
        """One read; None on 404, DiscoveryError on any other failure."""
        url = self.base + path
        answer = self.http.request(
            "GET", url, headers=_HEADERS, error=DiscoveryError, timeout=METADATA_TIMEOUT
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            text = answer.body.decode("utf-8", "replace").strip()[:200]
            raise DiscoveryError(
                f"metadata server {url} answered {answer.status}: {text}",
                url=url,
                status=answer.status,
            )
        return answer

    def text(self, path: str) -> str | None:
        answer = self.get(path)
        return None if answer is None else _text(answer, self.base + path)

    def access_token(self) -> AccessToken:
        """The default account's access token."""
        answer = self.get(_PATHS["token"])
        if answer is None:
            raise DiscoveryError(
                "the metadata server has no service account for this instance",
                url=self.base + _PATHS["token"],
                status=404,
            )
        return self._token(answer, self.base + _PATHS["token"])

    def _token(self, answer: Response, url: str) -> AccessToken:
        try:
            document = json.loads(answer.body)
            return AccessToken(
                token=str(document["access_token"]),
                expires_at=self._time() + float(document["expires_in"]),
            )
        except (ValueError, KeyError, TypeError):
            raise DiscoveryError(f"{url}: not a token response", url=url, status=200) from None

    def id_token(self, audience: str) -> str:
        """A Google-signed ID token for the default account, with the instance's claims."""
        path = f"instance/service-accounts/default/identity?audience={quote(audience)}&format=full"
        token = self.text(path)
        if not token:
            raise DiscoveryError("the metadata server gave no ID token", url=self.base + path)
        return token

    def discover(self, *, with_token: bool = True) -> InstanceInfo:
        """Every value krun reads, fetched concurrently."""
        wanted = {k: v for k, v in _PATHS.items() if with_token or k != "token"}
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="metadata") as pool:
            futures = {key: pool.submit(self.get, path) for key, path in wanted.items()}
            answers = {key: future.result() for key, future in futures.items()}
        first = next((a for a in answers.values() if a is not None), None)
        platform, why = platform_of(None if first is None else first.headers.get("server"))
        values = {
            key: _text(answer, self.base + wanted[key])
            for key, answer in answers.items()
            if answer is not None and key != "token"
        }
        zone = last_segment(values.get("zone"), "zones")
        region = last_segment(values.get("region"), "regions")
        if region is None and zone:
            region = region_of_zone(zone)
        token_answer = answers.get("token")
        token = (
            self._token(token_answer, self.base + _PATHS["token"])
            if token_answer is not None
            else None
        )
        return InstanceInfo(
            platform=platform,
            why=why,
            project_id=values.get("project_id"),
            project_number=values.get("project_number"),
            email=values.get("email"),
            instance_id=values.get("instance_id"),
            region=region,
            zone=zone,
            cluster_name=values.get("cluster_name"),
            cluster_location=values.get("cluster_location"),
            token=token,
        )
