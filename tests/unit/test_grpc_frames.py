"""gRPC length-prefixed framing: round trips, and garbage fails only with FrameError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.grpc_asgi import FrameError, decode_frames, encode_frame


@given(st.lists(st.binary(max_size=100), max_size=5))
def test_round_trip(messages: list[bytes]) -> None:
    """Concatenated frames decode to the messages that were encoded."""
    assert messages == decode_frames(b"".join(encode_frame(m) for m in messages))


@given(st.binary(max_size=64))
def test_garbage_raises_frame_error_only(body: bytes) -> None:
    """Any byte string decodes or raises FrameError; nothing else escapes."""
    try:
        decode_frames(body)
    except FrameError:
        pass


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00\x00", "truncated gRPC message header"),
        (b"\x00\x00\x00\x00\x05abc", "truncated gRPC message body"),
        (b"\x01\x00\x00\x00\x00", "compressed messages are not supported"),
        (b"\x07\x00\x00\x00\x00", "invalid compressed flag 7"),
        (b"\x00\x7f\xff\xff\xff", "exceeds"),
    ],
)
def test_each_defect_is_named(body: bytes, message: str) -> None:
    """Truncation, compression and oversize are told apart."""
    with pytest.raises(FrameError, match=message):
        decode_frames(body)
