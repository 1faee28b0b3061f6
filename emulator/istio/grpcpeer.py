"""A proxyless gRPC app for tests: an xDS-enabled echo server, or a client that keeps calling.

Run in its own process, because grpcio reads `GRPC_XDS_BOOTSTRAP` once:

    python -m emulator.istio.grpcpeer serve HOST:PORT NAME
    python -m emulator.istio.grpcpeer call xds:///echo.test.svc.cluster.local:7070 [--interval S]

The server answers `/echo.Echo/Echo` (raw bytes, no .proto) with JSON naming itself and
the caller's certificate identities. The client prints one JSON line per call, with the
time, the answering server or the error, until stdin closes or it is killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
import grpc.experimental

METHOD = "/echo.Echo/Echo"


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def serve(address: str, name: str) -> None:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        auth = context.auth_context()
        peer = {
            key: [v.decode(errors="replace") for v in auth.get(key, [])]
            for key in ("transport_security_type", "peer_uri")
        }
        return json.dumps({"server": name, "peer": peer}).encode()

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((handler,))
    server.add_secure_port(address, grpc.xds_server_credentials(grpc.insecure_server_credentials()))
    server.start()
    _emit({"event": "started", "address": address})
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(0)


def call(target: str, interval: float, timeout: float) -> None:
    # Without xDS security config the call goes in plaintext, as an Istio client's would.
    fallback = grpc.experimental.insecure_channel_credentials()
    channel = grpc.secure_channel(target, grpc.xds_channel_credentials(fallback))
    stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    stop = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    while not stop.is_set():
        line: dict[str, Any] = {"time": time.time()}
        try:
            line.update(json.loads(stub(b"ping", timeout=timeout)))
        except grpc.RpcError as exc:
            line["error"] = f"{exc.code().name}: {exc.details()}"
        _emit(line)
        stop.wait(interval)
    channel.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpcpeer")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("address")
    s.add_argument("name")
    c = sub.add_parser("call")
    c.add_argument("target")
    c.add_argument("--interval", type=float, default=0.05)
    c.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.address, args.name)
    else:
        call(args.target, args.interval, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
