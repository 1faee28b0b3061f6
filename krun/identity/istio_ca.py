"""The Istio CA call, `IstioCertificateService/CreateCertificate`: unary gRPC over `h2`.

`grpc` and `protobuf` cost ~90 ms and more to import (docs/perf-baselines.md) for one tiny
call, so the two messages are encoded by hand (pure functions below) and the call is made
over one TLS connection with ALPN `h2`, through the sans-IO `h2` package:

    message IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3; }
    message IstioCertificateResponse { repeated string cert_chain = 1; }

(`metadata = 4`, a Struct, is never sent: krun asks only for its own identity.)

Call metadata, as Istio's agent sends it: `authorization: Bearer <istio-token>` and
`ClusterID: <cluster id>`. A non-OK `grpc-status` becomes a CertificateError naming the
address, the status name and `grpc-message`; so does any transport or TLS failure.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from krun.errors import CertificateError

SERVICE = "istio.v1.auth.IstioCertificateService"
METHOD = "CreateCertificate"
PATH = f"/{SERVICE}/{METHOD}"

GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


# Protobuf wire format (pure).


def encode_varint(value: int) -> bytes:
    """A base-128 varint; negative numbers as their 64-bit two's complement (10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def decode_varint(data: bytes, offset: int) -> tuple[int, int]:
    """The varint at `offset` and the offset after it; ValueError if truncated or too long."""
    value = shift = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _key(field: int, wire: int) -> bytes:
    return encode_varint(field << 3 | wire)


def encode_certificate_request(csr: str, validity_seconds: int) -> bytes:
    """IstioCertificateRequest; proto3 leaves fields at their default (empty, 0) out."""
    out = b""
    if csr:
        data = csr.encode()
        out += _key(1, _LEN) + encode_varint(len(data)) + data
    if validity_seconds:
        out += _key(3, _VARINT) + encode_varint(validity_seconds)
    return out


def decode_certificate_response(data: bytes) -> list[str]:
    """IstioCertificateResponse's `cert_chain`; unknown fields are skipped, as protobuf does."""
    chain: list[str] = []
    offset = 0
    while offset < len(data):
        key, offset = decode_varint(data, offset)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            _, offset = decode_varint(data, offset)
        elif wire == _I64:
            offset += 8
        elif wire == _I32:
            offset += 4
        elif wire == _LEN:
            length, offset = decode_varint(data, offset)
            end = offset + length
            if end > len(data):
                raise ValueError(
                    f"field {field}: {length} bytes announced, {len(data) - offset} left"
                )
            if field == 1:
                chain.append(data[offset:end].decode("utf-8"))
            offset = end
        else:
            raise ValueError(f"field {field}: unsupported wire type {wire}")
        if offset > len(data):
            raise ValueError(f"field {field}: truncated")
    return chain


# gRPC framing (pure).


def frame(message: bytes) -> bytes:
    """One length-prefixed, uncompressed gRPC message."""
    return struct.pack(">BI", 0, len(message)) + message


def unframe(data: bytes) -> bytes:
    """The single message of a unary response; ValueError on compression or a bad length."""
    if len(data) < 5:
        raise ValueError(f"{len(data)} bytes is not a gRPC message")
    compressed, length = struct.unpack(">BI", data[:5])
    if compressed:
        raise ValueError("the message is compressed, though no grpc-accept-encoding was sent")
    if len(data) != 5 + length:
        raise ValueError(f"message announces {length} bytes, {len(data) - 5} arrived")
    return data[5:]


def status_of(headers: Mapping[str, str]) -> tuple[int, str]:
    """`grpc-status` (as a number) and the percent-decoded `grpc-message`."""
    raw = headers.get("grpc-status")
    if raw is None or not raw.isdigit():
        raise ValueError(f"no valid grpc-status (got {raw!r})")
    return int(raw), unquote(headers.get("grpc-message", ""))


def code_name(code: int) -> str:
    return GRPC_CODES[code] if 0 <= code < len(GRPC_CODES) else f"CODE_{code}"


# The call (I/O).


@dataclass(frozen=True, slots=True, kw_only=True)
class CAEndpoint:
    """Where the Istio CA is and how it is trusted."""

    address: str
    """`host:port`."""
    server_name: str
    """The name checked on the CA's certificate (Istio's `ISTIOD_SAN`)."""
    roots_pem: str | None
    """PEM roots trusted for the CA's TLS; None: the system's roots (a public CA)."""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class IstioCAClient:
    """Signs CSRs at one Istio CA; one connection per call (a call every few hours)."""

    def __init__(self, endpoint: CAEndpoint, *, cluster_id: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.cluster_id = cluster_id
        self.timeout = timeout
        context = ssl.create_default_context(cadata=endpoint.roots_pem)
        context.set_alpn_protocols(["h2"])
        self._context = context

    def sign(self, csr_pem: str, *, token: str, validity_seconds: int) -> list[str]:
        """The chain (leaf first) for a CSR; CertificateError says why not."""
        where = f"Istio CA {self.endpoint.address}"
        try:
            headers, body = self._call(
                frame(encode_certificate_request(csr_pem, validity_seconds)), token
            )
            code, message = status_of(headers)
            if code != 0:
                raise CertificateError(
                    f"{where}: {METHOD} failed: {code_name(code)}: {message or '(no message)'}"
                )
            chain = decode_certificate_response(unframe(body))
        except ValueError as error:
            raise CertificateError(f"{where}: malformed answer: {error}") from None
        except ssl.SSLError as error:
            raise CertificateError(
                f"{where}: TLS failed (name {self.endpoint.server_name}): {error.reason or error}"
            ) from None
        except OSError as error:
            raise CertificateError(f"{where}: no answer: {error}") from None
        if not chain:
            raise CertificateError(f"{where}: the answer holds no certificate")
        return chain

    def _call(self, message: bytes, token: str) -> tuple[dict[str, str], bytes]:
        import h2.config  # noqa: PLC0415 - only when a certificate is requested
        import h2.connection  # noqa: PLC0415
        import h2.events  # noqa: PLC0415
        import h2.exceptions  # noqa: PLC0415

        host, port = split_address(self.endpoint.address)
        raw = socket.create_connection((host, port), timeout=self.timeout)
        with self._context.wrap_socket(raw, server_hostname=self.endpoint.server_name) as tls:
            if tls.selected_alpn_protocol() != "h2":
                raise ValueError(
                    f"the server did not agree to HTTP/2 (ALPN {tls.selected_alpn_protocol()!r})"
                )
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            )
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            conn.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "https"),
                    (":path", PATH),
                    (":authority", self.endpoint.server_name),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("authorization", f"Bearer {token}"),
                    ("clusterid", self.cluster_id),
                ],
            )
            size = conn.max_outbound_frame_size
            for start in range(0, len(message), size):
                conn.send_data(stream, message[start : start + size])
            conn.end_stream(stream)
            tls.sendall(conn.data_to_send())
            headers: dict[str, str] = {}
            body = bytearray()
            done = False
            try:
                while not done:
                    data = tls.recv(65536)
                    if not data:
                        raise ValueError("the connection closed before the answer ended")
                    for event in conn.receive_data(data):
                        if isinstance(
                            event, h2.events.ResponseReceived | h2.events.TrailersReceived
                        ):
                            headers.update({str(k): str(v) for k, v in event.headers})
                        elif isinstance(event, h2.events.DataReceived):
                            body += event.data
                            conn.acknowledge_received_data(event.flow_controlled_length, stream)
                        elif isinstance(event, h2.events.StreamEnded):
                            done = True
                        elif isinstance(event, h2.events.StreamReset):
                            reset = f"the stream was reset (error {event.error_code})"
                            raise ValueError(reset)  # noqa: TRY004 - an event, not a bad type
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            ended = f"the server ended the connection ({event.error_code})"
                            raise ValueError(ended)  # noqa: TRY004 - an event, not a bad type
                    tls.sendall(conn.data_to_send())
                conn.close_connection()
                tls.sendall(conn.data_to_send())
            except h2.exceptions.ProtocolError as error:
                raise ValueError(f"HTTP/2 protocol error: {error}") from None
        if headers.get(":status") != "200":
            raise ValueError(f"HTTP status {headers.get(':status')} (not a gRPC server?)")
        return headers, bytes(body)
