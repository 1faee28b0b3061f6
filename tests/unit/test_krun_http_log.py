"""The HTTP helper's error text and answer shapes, and krun's JSON log lines with phase timings."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from krun.discovery.crm import get_project
from krun.discovery.gke import GkeClient
from krun.discovery.metadata import MetadataClient
from krun.errors import DiscoveryError, IdentityError
from krun.http import HttpClient, Response, error_message
from krun.identity.cache import Token
from krun.identity.google import StsTokens
from krun.log import LOGGER, JsonFormatter, phase


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error": {"code": 403, "message": "Permission denied.", "status": "PERMISSION_DENIED"}}',
            "Permission denied. (PERMISSION_DENIED)",
        ),
        (b'{"error": "invalid_grant", "error_description": "expired"}', "invalid_grant: expired"),
        (b'{"error": "invalid_target"}', "invalid_target"),
        (b"<html>Forbidden</html>\n", "<html>Forbidden</html>"),
        (b"", "(empty body)"),
        (b'["odd"]', '["odd"]'),
    ],
)
def test_error_message_is_the_human_part(body: bytes, message: str) -> None:
    """Google's, OAuth's and plain-text error bodies each give their message."""
    assert message == error_message(body)


def test_json_lines_carry_fields_and_phase_timings() -> None:
    """A phase is logged as one JSON object with its name and milliseconds, and recorded."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    timings: dict[str, float] = {}
    try:
        with phase("discovery", timings):
            pass
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)

    line = json.loads(JsonFormatter().format(records[0]))
    assert {
        "level": "info",
        "logger": "krun",
        "event": "phase",
        "phase": "discovery",
    }.items() <= line.items()
    assert line["ms"] == timings["discovery"] >= 0


class Canned(HttpClient):
    """Every request gets the same 200 answer; no socket is opened."""

    def __init__(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.answer = Response(200, dict(headers or {}), body)

    def request(self, method: str, url: str, **_: Any) -> Response:
        return self.answer


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"{", b"\xff"])
def test_json_answers_must_be_objects(body: bytes) -> None:
    """A 2xx body that is not a JSON object is the caller's error naming the URL, not a crash."""
    with pytest.raises(IdentityError, match=r"https://x/y answered 200 .* not a JSON object"):
        Canned(body).json("GET", "https://x/y", error=IdentityError)


@pytest.mark.parametrize(
    "body",
    [
        b'{"clusters": {"name": "c"}}',
        b'{"clusters": ["c"]}',
        b'{"clusters": [{"name": "c", "masterAuth": "x"}]}',
        b'{"clusters": [{"name": "c", "resourceLabels": ["mesh_id"]}]}',
    ],
)
def test_malformed_cluster_lists_are_discovery_errors(body: bytes) -> None:
    """GKE answers of the wrong shape are DiscoveryErrors, whatever field is off."""
    client = GkeClient(Canned(body), "https://gke")

    with pytest.raises(DiscoveryError, match=r"project(s/| )p"):
        client.list_clusters("p", token="t", quota=None, mesh_only=False)


def test_malformed_project_labels_are_a_discovery_error() -> None:
    """Resource Manager labels that are not an object are refused, naming the URL."""
    with pytest.raises(DiscoveryError, match=r"https://crm/v1/projects/p: `labels`"):
        get_project(
            Canned(b'{"projectNumber": "1", "labels": ["a"]}'), "https://crm", "p", token="t"
        )


def test_metadata_text_must_be_utf8() -> None:
    """A metadata value that is not UTF-8 is a DiscoveryError naming its path."""
    client = MetadataClient(Canned(b"\xff\xfe"), "169.254.169.254")

    with pytest.raises(DiscoveryError, match="project/project-id: the answer is not UTF-8"):
        client.text("project/project-id")


def test_sts_lifetime_must_be_a_number() -> None:
    """An STS `expires_in` that is not a number is an IdentityError, not a ValueError."""
    sts = StsTokens(
        Canned(b'{"access_token": "a", "expires_in": "soon"}'),
        sts_endpoint="https://sts",
        iam_endpoint="https://iam",
        kube_token=lambda: "k",
        trust_domain="td",
        cluster_url="https://c",
        project_number="1",
    )

    with pytest.raises(IdentityError, match="expires_in 'soon' is not a number"):
        sts.federated_token()


def test_secrets_stay_out_of_repr() -> None:
    """Tokens and keys never show in a dataclass's repr (log lines, tracebacks)."""
    from krun.certs.files import Material  # noqa: PLC0415
    from krun.discovery.metadata import AccessToken  # noqa: PLC0415
    from krun.kube.config import ClientCertAuth, GoogleAuth, TokenAuth  # noqa: PLC0415

    shown = " ".join(
        repr(item)
        for item in (
            Token("SECRET-1", 1.0),
            AccessToken(token="SECRET-2", expires_at=1.0),
            TokenAuth("SECRET-3"),
            GoogleAuth("SECRET-4"),
            ClientCertAuth(b"cert", b"SECRET-5"),
            Material(chain=b"chain", key=b"SECRET-6", roots=b"roots"),
        )
    )

    assert "SECRET" not in shown
    assert "chain" in shown
