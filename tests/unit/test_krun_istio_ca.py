"""krun's hand-encoded Istio CA messages against the real protobuf runtime, and gRPC framing.

The descriptor is written here, from istio/api `security/v1alpha1/ca.proto`, independently
of krun (which has no protobuf) and of the emulator's copy.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from krun.identity.istio_ca import (
    code_name,
    decode_certificate_response,
    decode_varint,
    encode_certificate_request,
    encode_varint,
    frame,
    status_of,
    unframe,
)


def _messages() -> tuple[Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="krun_test/ca.proto", package="istio.v1.auth", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    request = file.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    request.field.add(
        name="validity_duration", number=3, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL
    )
    response = file.message_type.add(name="IstioCertificateResponse")
    response.field.add(
        name="cert_chain", number=1, type=field.TYPE_STRING, label=field.LABEL_REPEATED
    )
    # An extra field in the response, as a newer server might send.
    response.field.add(name="extra", number=7, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateRequest")),
        GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateResponse")),
    )


REQUEST, RESPONSE = _messages()
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"


class TestMessages:
    @given(csr=st.text(max_size=3000), validity=st.integers(-(2**63), 2**63 - 1))
    def test_request_decodes_with_protobuf(self, csr: str, validity: int) -> None:
        """Any CSR text and int64 validity encodes to what protobuf decodes back."""
        decoded = REQUEST.FromString(encode_certificate_request(csr, validity))

        assert (csr, validity) == (decoded.csr, decoded.validity_duration)

    def test_request_bytes_equal_protobufs(self) -> None:
        """Field order and defaults match protobuf's own serialisation byte for byte."""
        for csr, validity in ((CSR, 86400), ("", 0), (CSR, 0), ("", -1)):
            expected = REQUEST(csr=csr, validity_duration=validity).SerializeToString()
            assert expected == encode_certificate_request(csr, validity)

    @given(chain=st.lists(st.text(max_size=2000), max_size=5), extra=st.integers(0, 2**63 - 1))
    def test_response_from_protobuf_decodes(self, chain: list[str], extra: int) -> None:
        """A protobuf-encoded response decodes to its chain; unknown fields are skipped."""
        data = RESPONSE(cert_chain=chain, extra=extra).SerializeToString()

        assert chain == decode_certificate_response(data)

    @pytest.mark.parametrize(
        ("data", "problem"),
        [
            (b"\x0a\x05abc", "5 bytes announced"),
            (b"\x0a", "truncated varint"),
            (b"\x0b", "unsupported wire type 3"),
            (b"\x00", "field number 0"),
            (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        ],
    )
    def test_malformed_responses_raise_value_error(self, data: bytes, problem: str) -> None:
        """Truncated or malformed bytes are a ValueError saying what is wrong."""
        with pytest.raises(ValueError, match=problem):
            decode_certificate_response(data)

    @given(st.integers(0, 2**64 - 1))
    def test_varint_roundtrip(self, value: int) -> None:
        """Varints decode to what was encoded, consuming every byte."""
        data = encode_varint(value)

        assert (value, len(data)) == decode_varint(data, 0)

    @given(st.binary(max_size=64))
    def test_garbage_decodes_or_raises_value_error(self, data: bytes) -> None:
        """Any bytes give a chain or a ValueError, nothing else."""
        try:
            decode_certificate_response(data)
        except ValueError:
            pass


class TestFraming:
    def test_frame_roundtrip(self) -> None:
        """A gRPC message is a 0 flag, a big-endian length, the bytes."""
        assert b"\x00\x00\x00\x00\x03abc" == frame(b"abc")
        assert b"abc" == unframe(frame(b"abc"))

    @pytest.mark.parametrize(
        ("data", "problem"),
        [
            (b"\x00\x00", "is not a gRPC message"),
            (b"\x01\x00\x00\x00\x00", "compressed"),
            (b"\x00\x00\x00\x00\x05ab", "announces 5 bytes, 2 arrived"),
        ],
    )
    def test_bad_frames(self, data: bytes, problem: str) -> None:
        """Short, compressed or mis-sized answers are refused with the reason."""
        with pytest.raises(ValueError, match=problem):
            unframe(data)

    def test_status_is_percent_decoded(self) -> None:
        """grpc-message is percent-encoded on the wire; codes have names."""
        code, message = status_of({"grpc-status": "16", "grpc-message": "bad%20token%3A%20x"})

        assert (16, "bad token: x", "UNAUTHENTICATED") == (code, message, code_name(code))
        assert "CODE_99" == code_name(99)
        with pytest.raises(ValueError, match="no valid grpc-status"):
            status_of({})


def test_start_up_path_imports_nothing_heavy() -> None:
    """Start-up imports nothing heavy (grpc, kubernetes, h2, ...) nor what only some starts use."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, krun.prepare, krun.cli, krun.explain\n"
        "heavy = ('grpc', 'google.protobuf', 'kubernetes', 'requests', 'google.auth', 'h2',"
        " 'cryptography', 'yaml', 'asyncio', 'emulator', 'tempfile', 'krun.discovery.crm')\n"
        "print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.')"
        " for h in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert "[]" == done.stdout.strip()
