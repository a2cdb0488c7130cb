"""The async face (``aiter_tokens`` / ``aiter_text``), the decoder behind both faces, and stop
tokens: for the same events both faces give exactly the same tokens, text and errors."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import stream_samples as ss
from botocore.exceptions import EventStreamError, ReadTimeoutError, ResponseStreamingError

from common import measure
from common.errors import (
    ContainerStreamError,
    IncompleteStreamError,
    InternalStreamFailure,
    ModelStreamError,
    StreamError,
    StreamTimeoutError,
)
from common.streaming import (
    END_TOKENS,
    AsyncTokenStream,
    StreamDecoder,
    Token,
    aiter_text,
    aiter_tokens,
    iter_text,
    iter_tokens,
)

EMOJI = "🦙"
TOKENS = [Token("Hello", 1, False, -0.5), Token(" wor", 2, False, -0.25),
          Token("ld", 3, False, -0.125), Token(" " + EMOJI, 4, False, -1.0),
          Token("", 5, False, -2.0), Token("!", 6, False, -0.5), ss.EOS]
ANSWER = "Hello world " + EMOJI + "!"
BUILDERS = [ss.tgi_sse, ss.lmi_jsonlines, ss.lmi_async_lines, ss.lmi_document, ss.messages_sse,
            ss.messages_jsonlines]
CUTTINGS = {"one part": ss.one_event, "bytes": ss.byte_events, "lines": ss.line_events}


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


def tgi_event(index: int, text: str, *, special: bool = False) -> dict:
    return {"index": index, "token": {"id": index, "text": text, "logprob": -0.5,
                                      "special": special},
            "generated_text": None, "details": None}


async def collect(stream) -> list:
    return [item async for item in stream]


# ----------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("cutting", list(CUTTINGS), ids=str)
def test_every_corpus_stream_decodes_the_same_through_both_faces(build, cutting):
    sample = build(TOKENS)
    event_list = CUTTINGS[cutting](sample.data)
    for container in sample.containers:
        outcome = ss.decode_both(event_list, container)
        assert outcome.error is None
        assert outcome.text == ANSWER == sample.text
        assert outcome.format == sample.format
        texts = ss.drive(collect(aiter_text(ss.FakeAioEventStream(event_list), container)))
        assert texts == list(iter_text(event_list, container))


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_streams_cut_short_fail_alike_on_both_faces(build):
    stripped = build(TOKENS).data.rstrip(b"\n")
    for end in (len(stripped) - 1, len(stripped) - 7, 3):
        outcome = ss.decode_both(ss.byte_events(stripped[:end]))
        if end > 3:
            assert isinstance(outcome.error, IncompleteStreamError)
            assert ANSWER.startswith(outcome.error.partial_text)


# ----------------------------------------------------------------------------- failures

PARTS = ss.events([sse(tgi_event(0, "par"), tgi_event(1, "tial"))])
SOURCE_FAILURES = [
    (EventStreamError({"Error": {"Code": "ModelStreamError", "Message": "Model stream broke"},
                       "ErrorCode": "StreamBroken"}, "InvokeEndpointWithResponseStream"),
     ModelStreamError),
    (EventStreamError({"Error": {"Code": "InternalStreamFailure", "Message": "oops"}},
                      "InvokeEndpointWithResponseStream"), InternalStreamFailure),
    (ReadTimeoutError(endpoint_url="https://runtime.sagemaker.test"), StreamTimeoutError),
    (ResponseStreamingError(error="Connection broken"), IncompleteStreamError),
    # aiobotocore's transport
    (aiohttp.ClientPayloadError("Response payload is not completed"), IncompleteStreamError),
    (aiohttp.ServerDisconnectedError(), IncompleteStreamError),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), IncompleteStreamError),
    (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), StreamTimeoutError),
    (asyncio.TimeoutError(), StreamTimeoutError),
]


@pytest.mark.parametrize(("error", "expected"), SOURCE_FAILURES,
                         ids=[type(e).__name__ for e, _ in SOURCE_FAILURES])
def test_a_source_that_breaks_mid_stream_maps_alike_on_both_faces(error, expected):
    sync = ss.decode_sync(ss.raising_after(PARTS, error))
    async_ = ss.decode_async(PARTS, error=error)
    for outcome in (sync, async_):
        assert type(outcome.error) is expected
        assert outcome.error.partial_text == "partial" == outcome.text
        assert outcome.error.__cause__ is error
    assert async_.key() == sync.key()


def test_other_exceptions_and_cancellation_are_not_relabelled_on_the_async_face():
    for error in (ZeroDivisionError(), asyncio.CancelledError(), KeyboardInterrupt()):
        stream = aiter_tokens(ss.FakeAioEventStream(PARTS, error))
        with pytest.raises(type(error)):
            ss.drive(collect(stream))


def test_tokens_before_a_failure_in_the_same_part_come_out_first_on_both_faces():
    data = sse(tgi_event(0, "a"), tgi_event(1, "b"),
               {"error": "CUDA out of memory", "error_type": "generation"})
    outcome = ss.decode_both(ss.one_event(data))
    assert [t.text for t in outcome.tokens] == ["a", "b"]
    assert isinstance(outcome.error, ContainerStreamError)
    assert outcome.error.partial_text == "ab"


def test_text_counts_only_the_tokens_handed_out_so_far():
    data = sse(tgi_event(0, "one"), tgi_event(1, " two"), tgi_event(2, " three"))
    stream = iter_tokens(ss.one_event(data))
    assert next(stream).text == "one"
    assert stream.text == "one"
    assert next(stream).text == " two"
    assert stream.text == "one two"

    astream = aiter_tokens(ss.FakeAioEventStream(ss.one_event(data)))
    assert ss.drive(anext(astream)).text == "one"
    assert astream.text == "one"


def test_after_a_failure_both_faces_are_exhausted():
    data = sse(tgi_event(0, "a")) + b"data: {oops}\n\n"
    stream = iter_tokens(ss.one_event(data))
    with pytest.raises(StreamError):
        list(stream)
    assert list(stream) == []
    astream = aiter_tokens(ss.FakeAioEventStream(ss.one_event(data)))
    with pytest.raises(StreamError):
        ss.drive(collect(astream))
    assert ss.drive(collect(astream)) == []


# ----------------------------------------------------------------------------- the objects


def test_aclose_and_async_with_close_the_aiobotocore_body():
    body = ss.FakeAioEventStream(ss.line_events(ss.tgi_sse(TOKENS).data))

    async def read_one():
        async with aiter_tokens(body, container="tgi") as stream:
            assert isinstance(stream, AsyncTokenStream)
            assert stream.__aiter__() is stream
            first = await anext(stream)
        return stream, first

    stream, first = ss.drive(read_one())
    assert first == TOKENS[0]
    assert body.closed
    assert ss.drive(collect(stream)) == []


def test_the_faces_refuse_the_other_kind_of_stream_with_the_fix():
    with pytest.raises(TypeError, match="iter_tokens"):
        aiter_tokens(ss.one_event(b"data: {}\n\n"))
    with pytest.raises(NotImplementedError, match="async-for"):
        list(iter_tokens(ss.FakeAioEventStream([])))
    with pytest.raises(TypeError, match=r"response\['Body'\]"):
        aiter_tokens({"Body": ss.FakeAioEventStream([])})
    with pytest.raises(ValueError, match="'tgi', 'lmi', 'auto'"):
        aiter_text(ss.FakeAioEventStream([]), container="vllm")
    with pytest.raises(TypeError):
        for _ in aiter_tokens(ss.FakeAioEventStream([])):  # type: ignore[attr-defined]
            pass


def test_measure_works_on_the_async_face_too():
    ticks = iter(range(100))
    sample = ss.tgi_sse(TOKENS)

    def clock() -> float:
        return float(next(ticks))

    async def run():
        async with measure(aiter_tokens(ss.FakeAioEventStream(ss.line_events(sample.data))),
                           start=0.0, clock=clock) as measured:
            tokens = [token async for token in measured]
        return measured, tokens

    measured, tokens = ss.drive(run())
    assert measured.is_async
    assert tokens == TOKENS and measured.text == ANSWER
    metrics = measured.metrics
    assert metrics.finished and metrics.token_count == 6 and metrics.special_count == 1
    assert (metrics.ttft_s, metrics.itl_median_s, metrics.total_s) == (0.0, 1.0, 7.0)
    with pytest.raises(TypeError, match="async for"):
        next(measure(aiter_tokens(ss.FakeAioEventStream([]))))


def test_the_decoder_alone_is_fed_bytes_and_hands_back_tokens():
    decoder = StreamDecoder("tgi")
    data = sse(tgi_event(0, "Hi"), tgi_event(1, "</s>", special=True))
    assert decoder.feed(data[:7]) == []
    assert decoder.format == "sse"
    assert decoder.feed(data[7:]) == [Token("Hi", 0, False, -0.5), Token("</s>", 1, True, -0.5)]
    assert decoder.end() == [] and decoder.end() == []
    assert decoder.text == "Hi"
    with pytest.raises(RuntimeError, match="after end"):
        decoder.feed(b"data: x\n\n")
    broken = StreamDecoder()
    assert broken.feed(b'{"token": {"text": "a"}}\n{"token": oops}\n') == [Token("a")]
    with pytest.raises(StreamError, match="invalid JSON") as raised:
        broken.end()
    assert raised.value.partial_text == "a" and broken.failure is raised.value


# ----------------------------------------------------------------------------- stop tokens

STOP_CASES = [ss.tgi_sse, ss.lmi_jsonlines, ss.lmi_async_lines, ss.messages_sse,
              ss.messages_jsonlines]


@pytest.mark.parametrize("build", STOP_CASES, ids=lambda b: b.__name__)
@pytest.mark.parametrize("marker", [*END_TOKENS, "<END>"])
def test_an_end_token_the_container_did_not_mark_never_reaches_the_text(build, marker):
    """Llama 3's <|eot_id|> sent as text (special=false) is still no answer text; so is a
    caller's own stop token. Messages-API chunks that are exactly one are dropped."""
    tokens = [Token("Hi", 1, False, -0.1), Token(marker, 2, False, -0.1),
              Token(" there", 3, False, -0.1)]
    event_list = ss.line_events(build(tokens).data)
    stops = ("<END>",) if marker == "<END>" else ()
    outcome = ss.decode_both(event_list, stop_tokens=stops)
    assert outcome.text == "Hi there"
    assert "".join(iter_text(event_list, stop_tokens=stops)) == "Hi there"
    texts = ss.drive(collect(aiter_text(ss.FakeAioEventStream(event_list),
                                        stop_tokens=stops)))
    assert "".join(texts) == "Hi there"
    marked = [t for t in outcome.tokens if t.text == marker]
    if build in (ss.messages_sse, ss.messages_jsonlines):
        assert marked == []
    else:
        assert [(t.special, t.id) for t in marked] == [(True, 2)]
    if marker == "<END>":  # without stop_tokens it is text like any other
        assert ss.decode_both(event_list).text == "Hi<END> there"


def test_stop_tokens_must_be_a_collection_of_texts():
    with pytest.raises(TypeError, match=r"stop_tokens=\('<END>',\)"):
        iter_tokens([], stop_tokens="<END>")
    with pytest.raises(TypeError, match="non-empty strings"):
        aiter_tokens(ss.FakeAioEventStream([]), stop_tokens=[""])
    assert iter_tokens([], stop_tokens=["<END>"]).stop_tokens == {*END_TOKENS, "<END>"}


# ----------------------------------------------------------------------------- stopping


class BlockingBody(ss.FakeAioEventStream):
    """An aiobotocore-like body that, after its events, waits for more until closed; then
    the pending read fails as aiohttp's does on a closed response."""

    def __init__(self, event_list):
        super().__init__(event_list)
        self.gone = asyncio.Event()

    async def _generate(self):
        for event in self.events:
            yield event
        await self.gone.wait()
        raise aiohttp.ClientConnectionError("Connection closed")

    async def close(self):
        self.closed = True
        self.gone.set()


def test_aclose_from_another_task_stops_the_reader_quietly_with_the_text_so_far():
    data = sse(tgi_event(0, "Hel"), tgi_event(1, "lo"), tgi_event(2, " there"))
    body = BlockingBody(ss.events([data]))

    async def run():
        stream = aiter_tokens(body, container="tgi")
        first = await anext(stream)  # "Hel" out, "lo" and " there" still in the batch
        reader = asyncio.create_task(collect(stream))
        await stream.aclose()  # the Stop button, from another task
        rest = await asyncio.wait_for(reader, 5)
        return stream, first, rest

    stream, first, rest = asyncio.run(run())
    assert first.text == "Hel" and rest == []
    assert stream.closed and body.closed
    assert stream.text == "Hel", "only what was handed out"

    blocked = BlockingBody(ss.events([data]))

    async def run_blocked():
        stream = aiter_tokens(blocked, container="tgi")
        reader = asyncio.create_task(collect(stream))
        for _ in range(20):  # let the reader take every token and wait on the body
            await asyncio.sleep(0)
        assert not reader.done()
        await stream.aclose()
        return stream, await asyncio.wait_for(reader, 5)

    stream, tokens = asyncio.run(run_blocked())
    assert [t.text for t in tokens] == ["Hel", "lo", " there"]
    assert stream.text == "Hello there" and blocked.closed


def test_close_from_another_thread_stops_a_blocked_sync_reader_quietly():
    import threading

    release = threading.Event()

    class Body:
        closed = False

        def __iter__(self):
            yield from ss.events([sse(tgi_event(0, "partial"))])
            release.wait(5)
            raise ResponseStreamingError(error="Connection broken: closed")

        def close(self):
            self.closed = True
            release.set()

    body = Body()
    stream = iter_tokens(body)
    assert next(stream).text == "partial"
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(stream))
    reader.start()
    stream.close()
    reader.join(5)
    assert not reader.is_alive() and got == []
    assert body.closed and stream.closed and stream.text == "partial"
