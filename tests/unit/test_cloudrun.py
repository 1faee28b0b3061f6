"""The Cloud Run front end's decisions: who may invoke, and what the instance receives."""

from __future__ import annotations

import pytest

from emulator.cloudrun import (
    SIGNATURE_REMOVED,
    Verdict,
    authorize,
    decode_claims,
    error_page,
    strip_signature,
    upstream_headers,
)
from emulator.errors import WorldFileError
from emulator.testing import demo_world_text
from emulator.world import RunService, World
from emulator.worldfile import parse_world

INVOKER = "caller@mesh-demo.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def world() -> World:
    return parse_world(demo_world_text())


@pytest.fixture
def private(world: World) -> RunService:
    service = next(world.run_services())
    service.invokers = {f"serviceAccount:{INVOKER}"}
    return service


def _token(world: World, audience: str, email: str = INVOKER, lifetime: int = 3600) -> str:
    return world.tokens.id_token(
        subject="1", audience=audience, now=world.clock(), email=email, lifetime=lifetime
    )


class TestAuthorize:
    def test_an_invoker_with_the_service_url_as_audience_passes(
        self, world: World, private: RunService
    ) -> None:
        """The service URL, with or without a trailing slash, is the audience Cloud Run accepts."""
        for audience in (private.url, private.url + "/"):
            token = _token(world, audience)
            verdict = authorize(
                world, private, {"authorization": f"Bearer {token}"}, now=world.clock()
            )
            assert (verdict.status, verdict.token_header) == (200, "authorization")

    @pytest.mark.parametrize(
        ("headers", "status"),
        [
            ({}, 403),
            ({"authorization": "Basic abc"}, 401),
            ({"authorization": "Bearer not.a.jwt"}, 401),
        ],
    )
    def test_missing_or_malformed_credentials(
        self, world: World, private: RunService, headers: dict[str, str], status: int
    ) -> None:
        """No credentials is 403 (as browsing a private service shows); a bad token is 401."""
        assert authorize(world, private, headers, now=world.clock()).status == status

    def test_wrong_audience_path_or_expiry_is_401(self, world: World, private: RunService) -> None:
        """Another audience, the URL with a path, or an expired token do not verify."""
        for token in (
            _token(world, "https://elsewhere.a.run.app"),
            _token(world, private.url + "/some/path"),
            _token(world, private.url, lifetime=-10),
        ):
            verdict = authorize(
                world, private, {"authorization": f"Bearer {token}"}, now=world.clock()
            )
            assert verdict.status == 401

    def test_a_valid_token_without_invoker_is_403(self, world: World, private: RunService) -> None:
        """Authenticated but not allowed: 403."""
        token = _token(world, private.url, email="outsider@other-project.iam.gserviceaccount.com")
        assert (
            authorize(
                world, private, {"authorization": f"Bearer {token}"}, now=world.clock()
            ).status
            == 403
        )

    def test_project_roles_grant_invoke(self, world: World, private: RunService) -> None:
        """roles/owner on the project includes run.routes.invoke."""
        token = _token(world, private.url, email="admin@example.com")
        assert (
            authorize(
                world, private, {"authorization": f"Bearer {token}"}, now=world.clock()
            ).status
            == 200
        )

    def test_serverless_header_wins_over_authorization(
        self, world: World, private: RunService
    ) -> None:
        """With X-Serverless-Authorization present, Authorization is the app's own business."""
        headers = {
            "authorization": "Bearer app-token",
            "x-serverless-authorization": f"Bearer {_token(world, private.url)}",
        }
        verdict = authorize(world, private, headers, now=world.clock())
        assert (verdict.status, verdict.token_header) == (200, "x-serverless-authorization")

    def test_public_services_need_no_token(self, world: World) -> None:
        """allUsers makes a service public: even a garbage token is not checked."""
        service = next(world.run_services())
        service.invokers = {"allUsers"}
        assert (
            authorize(world, service, {"authorization": "Bearer junk"}, now=world.clock()).status
            == 200
        )


class TestForwarding:
    def test_instances_get_forwarding_headers_and_a_stripped_token(self, world: World) -> None:
        """Hop-by-hop and X-Google-* go, forwarding and trace headers come, the signature goes."""
        token = _token(world, "https://x")
        out = upstream_headers(
            [
                ("authorization", f"Bearer {token}"),
                ("connection", "keep-alive"),
                ("x-google-secret", "1"),
                ("x-forwarded-for", "198.51.100.7"),
                ("accept", "*/*"),
            ],
            client_ip="10.77.3.10",
            verdict=Verdict(200, "invoker", token_header="authorization"),
            trace=("abc/1;o=1", "00-abc-01"),
        )
        got = dict(out)
        assert got["authorization"].endswith("." + SIGNATURE_REMOVED)
        assert decode_claims(got["authorization"].split()[1])["email"] == INVOKER
        assert got["x-forwarded-for"] == "198.51.100.7, 10.77.3.10"
        assert got["x-forwarded-proto"] == "https"
        assert got["forwarded"] == 'for="10.77.3.10";proto=https'
        assert got["x-cloud-trace-context"] == "abc/1;o=1"
        assert "connection" not in got
        assert "x-google-secret" not in got

    def test_strip_signature_keeps_header_and_claims(self) -> None:
        """Only the third part of the JWT changes."""
        assert strip_signature("aaa.bbb.ccc") == f"aaa.bbb.{SIGNATURE_REMOVED}"

    def test_error_pages_are_google_html(self) -> None:
        """401 and 403 pages carry Google's wording and the path."""
        assert b"<title>403 Forbidden</title>" in error_page(403, "/x")
        assert b"Your client does not have permission to get URL <code>/x</code>" in error_page(
            403, "/x"
        )
        assert b"<title>401 Unauthorized</title>" in error_page(401, "/x")

    def test_error_pages_escape_the_path(self) -> None:
        """A request target with markup is shown as text, not injected into the page."""
        page = error_page(404, "/<script>x</script>")
        assert b"<script>" not in page
        assert b"<code>/&lt;script&gt;x&lt;/script&gt;</code>" in page


class TestWorldFile:
    def test_run_services_take_port_and_scaling(self) -> None:
        """container_port, min/max instances and concurrency are read from the world file."""
        text = demo_world_text().replace(
            "        invokers: [allUsers]\n",
            "        invokers: [allUsers]\n        container_port: 15009\n        min_instances: 1\n"
            "        max_instances: 3\n        concurrency: 5\n",
        )
        service = next(parse_world(text).run_services())
        assert (
            service.container_port,
            service.min_instances,
            service.max_instances,
            service.concurrency,
        ) == (
            15009,
            1,
            3,
            5,
        )

    def test_min_above_max_is_named(self) -> None:
        """min_instances above max_instances is refused by field."""
        text = demo_world_text().replace(
            "        invokers: [allUsers]\n",
            "        invokers: [allUsers]\n        min_instances: 4\n        max_instances: 3\n",
        )
        with pytest.raises(WorldFileError, match=r"run_services\[0\]\.min_instances"):
            parse_world(text)
