"""``common.aio.ResponseFrames`` against aiobotocore's own reader, on the same bytes.

The frames are the stand-in's encoder's (checked against botocore's decoder in
``test_local_eventstream.py``); the body is a real ``AioEventStream`` with botocore's
``sagemaker-runtime`` output shape and aiobotocore's parser, over a fake aiohttp body that
hands out the bytes in the pieces a property chooses. Both readers must give the same events
and raise the same error after them, for every way of cutting the bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.session
import pytest
from aiobotocore.eventstream import AioEventStream
from aiobotocore.parsers import AioEventStreamJSONParser
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_samples import parts

from common.aio import ResponseFrames
from common.local.eventstream import encode_exception, encode_message, encode_payload_part

_SHAPE = (botocore.session.get_session().get_service_model("sagemaker-runtime")
          .operation_model("InvokeEndpointWithResponseStream").output_shape.members["Body"])


class _Content:
    """aiohttp's ``StreamReader`` as far as both readers use it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self.pieces.pop(0) if self.pieces else b""

    async def iter_chunks(self) -> Any:
        while self.pieces:
            yield self.pieces.pop(0), True


class _Raw:
    def __init__(self, pieces: list[bytes]) -> None:
        self.content = _Content(pieces)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _body(pieces: list[bytes]) -> AioEventStream:
    return AioEventStream(_Raw(pieces), _SHAPE, AioEventStreamJSONParser(),
                          "InvokeEndpointWithResponseStream")


async def _events(source: Any) -> tuple[list[Any], Any]:
    events, error = [], None
    try:
        async for event in source:
            events.append(event)
    except Exception as exc:
        error = exc
    return events, error


def _both(pieces: list[bytes]) -> tuple[tuple[list[Any], Any], tuple[list[Any], Any], bool]:
    frames = ResponseFrames(_body(pieces))
    ours = asyncio.run(_events(frames))
    theirs = asyncio.run(_events(_body(pieces)))
    return ours, theirs, frames.fast


def _same_error(ours: Any, theirs: Any) -> None:
    assert type(ours) is type(theirs)
    if theirs is not None:
        assert str(ours) == str(theirs)
        assert getattr(ours, "response", None) == getattr(theirs, "response", None)


PARTS = [f"data: {{\"token\": {{\"text\": \"t{i}\"}}}}\n\n".encode() for i in range(6)]
ENDINGS = {
    "clean": b"",
    "model stream error": encode_exception("ModelStreamError", "broke",
                                           ErrorCode="StreamBroken"),
    "internal failure": encode_exception("InternalStreamFailure", "gone"),
    "error message": encode_message({":message-type": "error", ":error-code": "Oops",
                                     ":error-message": "bad"}, b""),
    "unknown event": encode_message({":message-type": "event", ":event-type": "Future",
                                     ":content-type": "application/octet-stream"}, b"{}"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_every_cut_gives_aiobotocores_events_and_errors(ending, cuts):
    data = b"".join(encode_payload_part(p) for p in PARTS[:3]) + ENDINGS[ending] + b"".join(
        encode_payload_part(p) for p in PARTS[3:])
    # Any non-negative cut, folded into the data's range so that every drawn cut counts.
    pieces = parts(data, (c % (len(data) + 1) for c in cuts))
    (ours, ours_error), (theirs, theirs_error), fast = _both(pieces)
    assert fast
    assert ours == theirs
    _same_error(ours_error, theirs_error)


def test_a_corrupted_frame_raises_botocores_checksum_error():
    good = b"".join(encode_payload_part(p) for p in PARTS[:2])
    broken = bytearray(encode_payload_part(PARTS[2]))
    broken[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    for data in (good + bytes(broken), bytes(broken) + good):
        (ours, ours_error), (theirs, theirs_error), _ = _both([data])
        assert ours == theirs
        _same_error(ours_error, theirs_error)
    corrupt_prelude = bytearray(good)
    corrupt_prelude[1] ^= 0x01
    (ours, ours_error), (theirs, theirs_error), _ = _both([bytes(corrupt_prelude)])
    assert ours == theirs == []
    _same_error(ours_error, theirs_error)


def test_arrival_is_stamped_per_read_and_close_closes_the_body():
    stamps = iter([1.0, 2.0, 3.0])
    body = _body([encode_payload_part(PARTS[0]) + encode_payload_part(PARTS[1]),
                  encode_payload_part(PARTS[2])])
    frames = ResponseFrames(body, clock=lambda: next(stamps))

    async def read() -> list[float | None]:
        seen = []
        async for _ in frames:
            seen.append(frames.arrived)
        return seen

    assert asyncio.run(read()) == [1.0, 1.0, 2.0]  # two frames came in the first read
    assert frames.now() == 2.0
    frames.close()
    assert body._raw_stream.closed


def test_a_body_that_is_not_aiobotocores_is_read_as_it_is():
    class Plain:
        def __init__(self) -> None:
            self.events = [{"PayloadPart": {"Bytes": b"x"}}]

        async def _gen(self) -> Any:
            for event in self.events:
                yield event

        def __aiter__(self) -> Any:
            return self._gen()

    frames = ResponseFrames(Plain(), clock=lambda: 7.0)
    assert not frames.fast
    assert frames.now() == 7.0
    assert asyncio.run(_events(frames)) == ([{"PayloadPart": {"Bytes": b"x"}}], None)
    assert frames.arrived == 7.0
