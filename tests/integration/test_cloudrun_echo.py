"""The echo app and the Cloud Run front end on loopback, against real clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator import cloudrun
from emulator.serve import EmulatorThread, ServiceSpec
from emulator.testing import RunningEmulator
from emulator.world import RunService
from scenarios.apps import echo

pytestmark = pytest.mark.integration

INVOKER = "vm-default@mesh-demo.iam.gserviceaccount.com"
SPIFFE = "spiffe://cluster.local/ns/fortio/sa/default"


@dataclass
class Echo:
    port: int
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start_echo(tls: ssl.SSLContext | None = None) -> Echo:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: list[int] = []
    stop_event: list[asyncio.Event] = []

    async def main() -> None:
        stop = asyncio.Event()
        stop_event.append(stop)

        def on_ready(port: int) -> None:
            ports.append(port)
            ready.set()

        await echo.serve("127.0.0.1", 0, tls=tls, ready=on_ready, stop=stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)

    def stop() -> None:
        loop.call_soon_threadsafe(stop_event[0].set)
        thread.join(10)
        loop.close()

    return Echo(ports[0], stop)


@pytest.fixture
def echo_server() -> Iterator[Echo]:
    server = _start_echo()
    yield server
    server.stop()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "-m", "20", *args], capture_output=True, text=True, check=False, timeout=30
    )


class TestEcho:
    def test_http1_and_h2c_report_the_version(self, echo_server: Echo) -> None:
        """The same port answers HTTP/1.1 and h2c with prior knowledge."""
        one = json.loads(_curl("--http1.1", f"{echo_server.url}/a?b=c").stdout)
        two = json.loads(_curl("--http2-prior-knowledge", f"{echo_server.url}/a").stdout)
        assert (one["http_version"], one["query"], one["client"][0]) == ("1.1", "b=c", "127.0.0.1")
        assert two["http_version"] == "2"

    def test_grpc_without_a_proto(self, echo_server: Echo) -> None:
        """Any gRPC method answers one message: the report, as JSON bytes."""
        with grpc.insecure_channel(f"127.0.0.1:{echo_server.port}") as channel:
            call = channel.unary_unary("/echo.Echo/Echo")
            reply = json.loads(call(b"hello", timeout=10, metadata=[("x-test", "1")]))
        assert reply["path"] == "/echo.Echo/Echo"
        assert reply["body_size"] == 5
        assert ["x-test", "1"] in reply["headers"]

    def test_fetch_calls_another_url(self, echo_server: Echo) -> None:
        """/fetch reports what the other URL answered, with the headers asked for."""
        target = f"{echo_server.url}/inner"
        done = _curl(f"{echo_server.url}/fetch?url={target}&header=X-Hop:two")
        fetched = json.loads(done.stdout)
        assert fetched["status"] == 200
        assert fetched["body"]["path"] == "/inner"
        assert ["X-Hop", "two"] in fetched["body"]["headers"] or ["x-hop", "two"] in fetched[
            "body"
        ]["headers"]

    def test_fetch_refuses_hosts_outside_the_allowlist(self, echo_server: Echo) -> None:
        """/fetch is no open relay: a target outside ECHO_FETCH_ALLOW (loopback here) is refused."""
        done = _curl(f"{echo_server.url}/fetch?url=http://192.0.2.1/")
        fetched = json.loads(done.stdout)
        assert "status" not in fetched
        assert fetched["error"].startswith("refused: '192.0.2.1' resolves outside ECHO_FETCH_ALLOW")

    def test_mtls_peer_spiffe_identity(self, tmp_path: Path) -> None:
        """Over TLS with a client certificate, the report names the peer's SPIFFE id and ALPN."""
        ca_key, ca_cert = _ca()
        server = _leaf(ca_key, ca_cert, x509.DNSName("localhost"), tmp_path / "server")
        client = _leaf(ca_key, ca_cert, x509.UniformResourceIdentifier(SPIFFE), tmp_path / "client")
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        context = echo._tls_context(str(server[0]), str(server[1]), str(ca_file))
        server_echo = _start_echo(context)
        try:
            done = _curl(
                "--http2",
                "--cacert",
                str(ca_file),
                "--cert",
                str(client[0]),
                "--key",
                str(client[1]),
                f"https://localhost:{server_echo.port}/id",
            )
            report = json.loads(done.stdout)
        finally:
            server_echo.stop()
        assert (report["peer_spiffe"], report["alpn"], report["tls"]) == (SPIFFE, "h2", True)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mesh CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, san: x509.GeneralName, stem: Path
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class FrontEnd:
    service: RunService
    instances: cloudrun.RunInstances
    port: int
    ca_file: Path
    token: Callable[..., str]

    @property
    def host(self) -> str:
        return cloudrun.service_host(self.service)

    def curl(self, path: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _curl(
            "--cacert",
            str(self.ca_file),
            "--resolve",
            f"{self.host}:{self.port}:127.0.0.1",
            *args,
            f"https://{self.host}:{self.port}{path}",
        )


@pytest.fixture
def front_end(fresh_emu: RunningEmulator, echo_server: Echo, tmp_path: Path) -> Iterator[FrontEnd]:
    world = fresh_emu.world
    service = next(world.run_services())
    service.invokers = {f"serviceAccount:{INVOKER}"}
    instances = cloudrun.RunInstances()
    instances.add(service, ("127.0.0.1", echo_server.port))
    spec = ServiceSpec(
        "run", cloudrun.create_app(world, instances), tls=True, hostnames=cloudrun.hostnames(world)
    )
    with EmulatorThread(world, [spec], tmp_path / "fe") as thread:
        port = int(thread.endpoints["run"].rsplit(":", 1)[1])

        def token(email: str = INVOKER, audience: str | None = None) -> str:
            return world.tokens.id_token(
                subject="1", audience=audience or service.url, now=world.clock(), email=email
            )

        yield FrontEnd(service, instances, port, thread.ca_file, token)


class TestFrontEnd:
    def test_serverless_authorization_leaves_authorization_to_the_app(
        self, front_end: FrontEnd
    ) -> None:
        """The token in X-Serverless-Authorization is checked and stripped; Authorization passes untouched."""
        done = front_end.curl(
            "/x",
            "-H",
            f"X-Serverless-Authorization: Bearer {front_end.token()}",
            "-H",
            "Authorization: Bearer app-level",
        )
        headers = dict(json.loads(done.stdout)["headers"])
        assert headers["authorization"] == "Bearer app-level"
        assert headers["x-serverless-authorization"].endswith(".SIGNATURE_REMOVED_BY_GOOGLE")

    def test_grpc_passes_through_with_trailers(self, front_end: FrontEnd) -> None:
        """A gRPC call over TLS reaches the instance over h2c and its trailers come back."""
        credentials = grpc.ssl_channel_credentials(front_end.ca_file.read_bytes())
        options = [
            ("grpc.ssl_target_name_override", front_end.host),
            ("grpc.default_authority", front_end.host),
        ]
        with grpc.secure_channel(f"127.0.0.1:{front_end.port}", credentials, options) as channel:
            call = channel.unary_unary("/echo.Echo/Echo")
            reply, state = call.with_call(
                b"abc", timeout=10, metadata=[("authorization", f"Bearer {front_end.token()}")]
            )
        report = json.loads(reply)
        assert state.code() == grpc.StatusCode.OK
        assert (report["http_version"], report["body_size"]) == ("2", 3)

    def test_streams_both_ways_without_buffering(self, front_end: FrontEnd) -> None:
        """Each chunk comes back before the next is sent: the front end never waits for the whole body."""

        async def exchange() -> list[bytes]:
            context = ssl.create_default_context(cafile=str(front_end.ca_file))
            context.set_alpn_protocols(["h2"])
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", front_end.port, ssl=context, server_hostname=front_end.host
            )
            stream = cloudrun.H2Stream(reader, writer)
            await stream.start(
                [
                    (":method", "POST"),
                    (":scheme", "https"),
                    (":authority", front_end.host),
                    (":path", "/stream"),
                    ("authorization", f"Bearer {front_end.token()}"),
                ]
            )
            events = stream.events()
            got: list[bytes] = []
            await stream.send_body(b"ping-1")
            assert (await anext(events))[0] == "headers"
            got.append((await anext(events))[1])
            await stream.send_body(b"ping-2")
            got.append((await anext(events))[1])
            await stream.end()
            rest: Any = [kind async for kind, _ in events]
            await stream.close()
            assert rest[-1] == "end"
            return got

        assert asyncio.run(asyncio.wait_for(exchange(), 20)) == [b"ping-1", b"ping-2"]

    def test_scale_from_zero_starts_one_instance_for_concurrent_requests(
        self, front_end: FrontEnd, echo_server: Echo
    ) -> None:
        """With no instance, the first requests start exactly one through the launcher."""
        front_end.instances.remove(front_end.service, ("127.0.0.1", echo_server.port))
        launched: list[str] = []

        def launcher(service: RunService) -> tuple[str, int]:
            launched.append(service.name)
            return "127.0.0.1", echo_server.port

        front_end.instances.launcher = launcher
        header = f"Authorization: Bearer {front_end.token()}"
        with_threads = [
            threading.Thread(target=front_end.curl, args=("/", "-H", header)) for _ in range(4)
        ]
        for thread in with_threads:
            thread.start()
        for thread in with_threads:
            thread.join(30)
        assert launched == ["fortio"]

    def test_no_way_to_start_an_instance_is_503(
        self, front_end: FrontEnd, echo_server: Echo
    ) -> None:
        """A launcher that fails yields Google's 503 page."""
        front_end.instances.remove(front_end.service, ("127.0.0.1", echo_server.port))

        def launcher(service: RunService) -> tuple[str, int]:
            raise RuntimeError("image pull failed")

        front_end.instances.launcher = launcher
        done = front_end.curl(
            "/",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            f"Authorization: Bearer {front_end.token()}",
        )
        assert done.stdout == "503"
