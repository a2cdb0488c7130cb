"""Property tests: every way of cutting a stream into parts decodes to the same tokens.

For each wire format, hypothesis draws model tokens that are hard to frame (quotes,
backslashes, newlines, emoji, CJK, empty byte-fallback texts, ``</s>``) and the format's
options, encodes the stream as the container would, cuts it into ``PayloadPart`` events at
drawn offsets, and checks that the tokens, the text, the sniffed format and the final fields
come out exactly as built -- under every ``container=`` setting that must read the format,
through both faces (``iter_tokens`` and ``aiter_tokens``), which must agree exactly.
"""

from __future__ import annotations

import json

import pytest
import stream_samples as ss
from hypothesis import given, settings
from hypothesis import strategies as st

from common.streaming import LineIterator, Token, aiter_text, iter_text, iter_tokens

pytestmark = pytest.mark.filterwarnings("error")


def assert_decodes(sample: ss.Sample, event_list: list, container: str) -> None:
    stream = iter_tokens(event_list, container=container)
    got = list(stream)
    if sample.tokens is not None:
        assert got == sample.tokens
    else:  # the LMI document: one token per decoded piece of text
        assert all(t.id is None and not t.special and t.text for t in got)
    assert "".join(t.text for t in got if not t.special) == sample.text
    assert stream.text == sample.text
    assert stream.format == sample.format
    assert stream.finish_reason == sample.finish_reason
    assert stream.generated_text == sample.generated_text
    assert "".join(iter_text(event_list, container=container)) == sample.text
    # the async face, fed the same events, gives exactly the same
    assert ss.decode_async(event_list, container).key() == ss.decode_sync(
        event_list, container).key()
    assert "".join(ss.drive(_joined(aiter_text(ss.FakeAioEventStream(event_list),
                                               container=container)))) == sample.text


async def _joined(texts) -> list[str]:
    return [text async for text in texts]


@pytest.mark.parametrize("kind", ss.FORMATS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_cut_decodes_the_same(kind, data):
    sample = data.draw(ss.samples(kind), label="sample")
    cut_at = data.draw(ss.cuts(sample.data), label="cuts")
    event_list = ss.cut_events(sample.data, cut_at)
    for container in sample.containers:
        assert_decodes(sample, event_list, container)


@pytest.mark.parametrize("kind", ss.FORMATS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_one_byte_per_part_all_in_one_part_and_one_line_per_part(kind, data):
    sample = data.draw(ss.samples(kind), label="sample")
    for event_list in (ss.byte_events(sample.data), ss.one_event(sample.data),
                       ss.line_events(sample.data)):
        for container in sample.containers:
            assert_decodes(sample, event_list, container)


@pytest.mark.parametrize("kind", [k for k in ss.FORMATS if k != "lmi-document"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_each_token_comes_out_as_soon_as_its_event_is_complete(kind, data):
    """No token waits for a later part: once its event's last byte is read, it is out."""
    sample = data.draw(ss.samples(kind), label="sample")
    pieces = ss.parts(sample.data, data.draw(ss.cuts(sample.data), label="cuts"))
    assert sample.tokens is not None and sample.ends is not None
    seen: list[Token] = []

    def feed():
        offset = 0
        for piece in pieces:
            done = [t for t, end in zip(sample.tokens, sample.ends, strict=True) if end <= offset]
            assert seen == done, f"after {offset} bytes"
            yield {"PayloadPart": {"Bytes": piece}}
            offset += len(piece)

    for token in iter_tokens(feed()):
        seen.append(token)
    assert seen == sample.tokens


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_lmi_document_text_comes_out_as_soon_as_each_character_is_complete(data):
    """The decoder holds back at most one incomplete unit: an escape or surrogate pair (up to
    11 bytes) or a UTF-8 character (up to 3 bytes)."""
    sample = data.draw(ss.samples("lmi-document"), label="sample")
    pieces = ss.parts(sample.data, data.draw(ss.cuts(sample.data), label="cuts"))
    ascii_ = sample.extra["ensure_ascii"]
    body_start = sample.data.index(b'"generated_text": "') + len(b'"generated_text": "')
    body_end = body_start + len(json.dumps(sample.text, ensure_ascii=ascii_)[1:-1].encode())
    holder: dict = {}

    def feed():
        offset = 0
        for piece in pieces:
            if "stream" in holder:
                text = holder["stream"].text
                assert sample.text.startswith(text)
                shown = len(json.dumps(text, ensure_ascii=ascii_)[1:-1].encode())
                fed = min(max(offset - body_start, 0), body_end - body_start)
                assert fed - shown <= 11, (offset, text)
            yield {"PayloadPart": {"Bytes": piece}}
            offset += len(piece)

    holder["stream"] = stream = iter_tokens(feed(), container="lmi")
    assert "".join(t.text for t in stream) == sample.text


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
                      max_size=8),
       last_newline=st.booleans(), crlf=st.booleans(), data=st.data())
def test_line_iterator_gives_back_every_line_for_every_cut(lines, last_newline, crlf, data):
    lines = [line.rstrip(b"\r") for line in lines]
    newline = b"\r\n" if crlf else b"\n"
    body = newline.join(lines) + (newline if last_newline and lines else b"")
    expected = list(lines)
    if expected and not last_newline and expected[-1] == b"":
        expected.pop()  # an empty unterminated last line is no line at all
    cut_at = data.draw(ss.cuts(body), label="cuts")
    assert list(LineIterator(ss.cut_events(body, cut_at))) == expected
