"""Serving: TLS with ALPN, h2c, fault injection, the admin API, the CLI and clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import h2.connection
import h2.events
import pytest
import requests

from emulator import cli
from emulator.testing import RunningEmulator, start

pytestmark = pytest.mark.integration


def certs(emu: RunningEmulator) -> requests.Response:
    return requests.get(emu.url("oauth2") + "/oauth2/v3/certs", verify=str(emu.ca_file), timeout=10)


def add_fault(emu: RunningEmulator, **spec: object) -> requests.Response:
    return requests.post(emu.url("admin") + "/faults", json=spec, timeout=10)


def test_reset_fault_aborts_the_connection_once(emu: RunningEmulator) -> None:
    """A reset fault drops the connection without an answer; the next request succeeds."""
    assert 201 == add_fault(emu, service="oauth2", kind="reset", times=1).status_code
    with pytest.raises(requests.ConnectionError):
        certs(emu)
    assert 200 == certs(emu).status_code


def test_outage_resets_before_tls(emu: RunningEmulator) -> None:
    """During an outage a new connection is reset before any TLS byte."""
    add_fault(emu, service="oauth2", kind="outage", times=1)
    host, port = emu.hostport("oauth2").rsplit(":", 1)

    def first_bytes() -> None:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01")
            raw.recv(1)

    with pytest.raises(ConnectionResetError):
        first_bytes()
    assert 200 == certs(emu).status_code


def test_status_fault_answers_google_json(emu: RunningEmulator) -> None:
    """A status fault answers the configured code with Google's error body, on matching paths only."""
    add_fault(
        emu, service="oauth2", kind="status", status=429, path="v3/certs", message="slow down"
    )
    denied = certs(emu)
    assert 429 == denied.status_code
    assert {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    } == denied.json()
    other = requests.get(
        emu.url("oauth2") + "/oauth2/v1/certs", verify=str(emu.ca_file), timeout=10
    )
    assert 200 == other.status_code


def test_latency_fault_delays_the_answer(emu: RunningEmulator) -> None:
    """A latency fault holds the response back at least the configured time."""
    add_fault(emu, service="oauth2", kind="latency", latency_ms=300, times=1)
    began = time.monotonic()
    assert 200 == certs(emu).status_code
    assert time.monotonic() - began >= 0.3


def test_admin_api_lists_validates_and_removes(emu: RunningEmulator) -> None:
    """Faults are listed, bad specs are refused with the field named, removal works by id."""
    admin = emu.url("admin")
    bad = add_fault(emu, service="oauth2", kind="status", status=700)
    assert 400 == bad.status_code
    assert bad.json()["error"]["message"].startswith("fault.status: must be an integer")
    created = add_fault(emu, service="sts", kind="reset").json()
    listed = requests.get(admin + "/faults", timeout=10).json()["faults"]
    assert [created] == listed
    assert 200 == requests.delete(f"{admin}/faults/{created['id']}", timeout=10).status_code
    assert 404 == requests.delete(f"{admin}/faults/{created['id']}", timeout=10).status_code
    assert [] == requests.get(admin + "/faults", timeout=10).json()["faults"]
    assert emu.endpoints == requests.get(admin + "/endpoints", timeout=10).json()


def test_undecodable_query_is_a_400(emu: RunningEmulator) -> None:
    """A query that is not UTF-8 gets a Google JSON 400 naming the query."""
    response = requests.get(
        emu.url("oauth2") + "/tokeninfo?id_token=%ff", verify=str(emu.ca_file), timeout=10
    )
    assert 400 == response.status_code
    assert "invalid query string" in response.json()["error"]["message"]


def test_tls_offers_h2_by_alpn(emu: RunningEmulator) -> None:
    """TLS listeners negotiate h2, as Google's front ends do for gRPC clients."""
    context = ssl.create_default_context(cafile=str(emu.ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    host, port = emu.hostport("container").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert "h2" == tls.selected_alpn_protocol()


def test_plain_listener_speaks_h2c_prior_knowledge(emu: RunningEmulator) -> None:
    """Cleartext listeners accept HTTP/2 with prior knowledge (the Cloud Run h2c contract)."""
    host, port = emu.hostport("admin").rsplit(":", 1)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "x")],
        end_stream=True,
    )
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(conn.data_to_send())
        status, body = None, b""
        while True:
            data = raw.recv(65536)
            assert data, "connection closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    assert (b"200", b"ok\n") == (status, body)
                    return
            raw.sendall(conn.data_to_send())


def test_clock_advance_through_admin(fresh_emu: RunningEmulator) -> None:
    """The admin API moves the world clock forward, never back."""
    admin = fresh_emu.url("admin")
    before = fresh_emu.world.clock()
    assert (
        200
        == requests.post(admin + "/clock/advance", json={"seconds": 7200}, timeout=10).status_code
    )
    assert fresh_emu.world.clock() - before >= 7200
    assert (
        400 == requests.post(admin + "/clock/advance", json={"seconds": -1}, timeout=10).status_code
    )


def test_stop_releases_every_port(tmp_path: Path) -> None:
    """After the emulator stops, nothing listens on its ports any more."""
    with start(tmp_path) as emu:
        ports = [int(url.rsplit(":", 1)[1]) for url in emu.endpoints.values()]
        with requests.Session() as session:  # keep a connection open across the stop
            session.get(emu.url("admin") + "/healthz", timeout=10)
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_cli_serve_prints_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`krun-emulator serve` prints one JSON line of endpoints and exits 0 on SIGTERM."""
    with subprocess.Popen(
        [sys.executable, "-m", "emulator", "serve", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    ) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert "demo" == line["world"]
            assert Path(line["ca_file"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
            health = requests.get(line["endpoints"]["admin"] + "/healthz", timeout=10)
            assert "ok\n" == health.text
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_cli_check_reports_problems(tmp_path: Path) -> None:
    """`krun-emulator check` exits 2 and names the bad field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("projects:\n  - id: proj-one\n")
    proc = subprocess.run(
        [sys.executable, "-m", "emulator", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 2 == proc.returncode
    assert "world.projects[0].number: required" in proc.stderr


def test_cli_refuses_an_unknown_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt --log-level is a usage error naming the choices, not a traceback."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--log-level", "verbose", "check", "absent.yaml"])
    assert 2 == caught.value.code
    assert "--log-level: invalid choice: 'VERBOSE'" in capsys.readouterr().err
