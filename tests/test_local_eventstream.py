"""The stand-in's event-stream encoder, checked against botocore's own decoder and parser."""

from __future__ import annotations

import itertools
import json

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser
from hypothesis import given
from hypothesis import strategies as st

from common.local.eventstream import (
    encode_event,
    encode_exception,
    encode_message,
    encode_payload_part,
)

_NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda name: len(name.encode()) < 256)
_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
_PAYLOADS = st.binary(max_size=3000)


def _decode(data: bytes, cuts: list[int] | None = None) -> list:
    """Feed ``data`` to botocore's decoder, cut at ``cuts``; return its messages."""
    buffer = EventStreamBuffer()
    edges = [0, *sorted({c for c in (cuts or []) if 0 < c < len(data)}), len(data)]
    messages = []
    for start, end in itertools.pairwise(edges):
        buffer.add_data(data[start:end])
        messages.extend(buffer)
    return messages


class _RawStream:
    """What botocore's EventStream reads from: an object with ``stream()``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self):
        yield from self.chunks

    def close(self) -> None:
        pass


_BODY_SHAPE = (
    botocore.session.get_session().get_service_model("sagemaker-runtime")
    .operation_model("InvokeEndpointWithResponseStream").output_shape.members["Body"]
)


def _sagemaker_stream(chunks: list[bytes]) -> EventStream:
    """botocore's EventStream over ``chunks``, parsed as InvokeEndpointWithResponseStream
    with the event-stream parser a boto3 ``sagemaker-runtime`` client uses."""
    return EventStream(_RawStream(chunks), _BODY_SHAPE, EventStreamJSONParser(),
                       "InvokeEndpointWithResponseStream")


@given(headers=st.dictionaries(_NAMES, _VALUES, max_size=6), payload=_PAYLOADS,
       cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_every_message_round_trips_through_botocores_decoder(headers, payload, cuts):
    data = encode_message(headers, payload)
    (message,) = _decode(data, cuts)
    assert message.headers == headers
    assert message.payload == payload


@given(payloads=st.lists(_PAYLOADS, min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 20000), max_size=12))
def test_every_run_of_payload_parts_decodes_to_the_same_parts_however_it_is_cut(payloads, cuts):
    data = b"".join(encode_payload_part(p) for p in payloads)
    messages = _decode(data, cuts)
    assert [m.payload for m in messages] == payloads
    assert all(m.headers == {":event-type": "PayloadPart", ":message-type": "event",
                             ":content-type": "application/octet-stream"} for m in messages)
    parsed = list(_sagemaker_stream([data]))
    assert parsed == [{"PayloadPart": {"Bytes": p}} for p in payloads]


@given(payload=_PAYLOADS)
def test_encode_event_is_the_payload_part_encoder(payload):
    assert encode_event(payload) == encode_payload_part(payload)


@given(message=_VALUES, code=st.sampled_from(["ModelInvocationTimeExceeded", "StreamBroken"]),
       before=st.lists(st.binary(min_size=1, max_size=50), max_size=3))
def test_a_model_stream_error_frame_is_raised_by_botocore_with_its_code_and_message(
        message, code, before):
    chunks = [encode_payload_part(p) for p in before]
    chunks.append(encode_exception("ModelStreamError", message, ErrorCode=code))
    seen = []
    with pytest.raises(EventStreamError) as caught:
        for event in _sagemaker_stream(chunks):
            seen.append(event["PayloadPart"]["Bytes"])
    assert seen == before
    assert caught.value.response["Error"] == {"Code": "ModelStreamError", "Message": message}
    frame = _decode(chunks[-1])[0]
    assert json.loads(frame.payload) == {"Message": message, "ErrorCode": code}
    assert frame.headers[":message-type"] == "exception"
    assert frame.headers[":content-type"] == "application/json"


@given(message=_VALUES)
def test_an_internal_stream_failure_frame_is_raised_by_botocore(message):
    with pytest.raises(EventStreamError) as caught:
        list(_sagemaker_stream([encode_exception("InternalStreamFailure", message)]))
    assert caught.value.response["Error"] == {"Code": "InternalStreamFailure",
                                              "Message": message}


def test_a_corrupted_byte_fails_botocores_checksum():
    data = bytearray(encode_payload_part(b'data: {"token": {"text": "hi"}}\n\n'))
    data[-6] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(data))


@pytest.mark.parametrize("headers", [{"": "x"}, {"n" * 256: "x"}, {"name": "v" * 70000}])
def test_headers_botocore_cannot_read_are_refused(headers):
    with pytest.raises(ValueError):
        encode_message(headers, b"")
