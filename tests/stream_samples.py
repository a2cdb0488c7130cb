"""Byte streams of every wire format the decoders read, with what decoding must give.

A plain helper module for the stream tests and ``benchmarks/decode_speed.py`` (not a test
file). Each builder takes the tokens a model produced and returns a :class:`Sample`: the
bytes a container would send, the tokens and text :func:`common.iter_tokens` must give back,
and the final fields. :func:`parts` / :func:`events` cut the bytes into botocore
``PayloadPart`` events at chosen offsets. The hypothesis strategies at the end draw tokens
that are hard to frame (quotes, backslashes, newlines, emoji, CJK, empty byte-fallback
texts, ``</s>``) and whole samples of every format.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from common.errors import StreamError
from common.streaming import END_TOKENS, Token, aiter_tokens, iter_tokens

EOS = Token("</s>", 2, True, -0.01)


@dataclass
class Sample:
    """One encoded stream and the decoder's expected output.

    Attributes:
        name: the format's name, for test ids.
        data: the bytes the container sends.
        tokens: the tokens ``iter_tokens`` must yield; ``None`` for the LMI document,
            whose tokens are the pieces per part (only their text is defined).
        text: the generated text (non-special token texts joined).
        format: the ``TokenStream.format`` the sniffer must pick.
        containers: the ``container=`` settings that must read it.
        finish_reason: the expected ``TokenStream.finish_reason``.
        generated_text: the expected ``TokenStream.generated_text``.
        ends: for each expected token, the byte offset where its event ends: once the
            decoder has read that far, it must have yielded the token.
    """

    name: str
    data: bytes
    tokens: list[Token] | None
    text: str
    format: str
    containers: tuple[str, ...]
    finish_reason: str | None = None
    generated_text: str | None = None
    ends: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data.strip():
            self.format = "empty"  # nothing but blanks: no format to sniff


def answer(tokens: Iterable[Token]) -> str:
    """Return the generated text of ``tokens``: their non-special texts joined."""
    return "".join(t.text for t in tokens if not t.special)


class _Out(list):
    """A list of str pieces that keeps its total size in UTF-8 bytes."""

    size = 0

    def append(self, piece: str) -> None:
        super().append(piece)
        self.size += len(piece.encode())


def _size(pieces: _Out) -> int:
    return pieces.size


def _dumps(obj: Any, ensure_ascii: bool, compact: bool = True) -> str:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators)


# ----------------------------------------------------------------------------- formats


def tgi_sse(
    tokens: Sequence[Token],
    *,
    space: bool = True,
    details: bool = True,
    finish_reason: str = "eos_token",
    ensure_ascii: bool = False,
    keepalive_every: int = 0,
    crlf: bool = False,
    extra_fields: bool = False,
) -> Sample:
    """TGI ``generate_stream``: ``data: {...}`` events separated by blank lines.

    Args:
        space: write ``data: `` (TGI >= 2.1) rather than ``data:``.
        details: send ``details`` with ``finish_reason`` on the last event.
        ensure_ascii: escape non-ASCII as ``\\uXXXX`` (serde_json does not; both are JSON).
        keepalive_every: put a ``:`` keep-alive comment after every n-th event (0: never).
        crlf: end lines with ``\\r\\n``.
        extra_fields: add ``event:``/``id:``/``retry:`` fields, which must be ignored.
    """
    prefix = "data: " if space else "data:"
    newline = "\r\n" if crlf else "\n"
    text = answer(tokens)
    out = _Out()
    ends: list[int] = []
    for index, token in enumerate(tokens):
        last = index == len(tokens) - 1
        event = {
            "index": index,
            "token": {"id": token.id, "text": token.text, "logprob": token.logprob,
                      "special": token.special},
            "generated_text": text if last else None,
            "details": ({"finish_reason": finish_reason, "generated_tokens": len(tokens),
                         "seed": None} if last and details else None),
        }
        if extra_fields:
            out.append(f"event: message{newline}id: {index}{newline}")
            if index == 0:
                out.append(f"retry: 3000{newline}")
        out.append(prefix + _dumps(event, ensure_ascii) + newline + newline)
        ends.append(_size(out))
        if keepalive_every and (index + 1) % keepalive_every == 0:
            out.append(":" + newline + newline)
    return Sample(
        "tgi-sse", "".join(out).encode(), list(tokens), text, "sse", ("tgi", "lmi", "auto"),
        finish_reason=finish_reason if (details and tokens) else None,
        generated_text=text if tokens else None, ends=ends,
    )


def lmi_jsonlines(
    tokens: Sequence[Token],
    *,
    finish_reason: str = "length",
    details: bool = True,
    drop_falsy: bool = True,
    ensure_ascii: bool = False,
) -> Sample:
    """LMI 0.26+ ``jsonlines``: ``{"token": {"id", "text", "log_prob"}}`` per line.

    Args:
        drop_falsy: leave out an empty ``text`` and a false ``special_token``, as LMI's
            ``Token.as_dict`` may.
        details: put ``details.finish_reason`` on the last line.
    """
    text = answer(tokens)
    lines = _Out()
    expected = []
    ends: list[int] = []
    for index, token in enumerate(tokens):
        body: dict[str, Any] = {"id": token.id, "text": token.text, "log_prob": token.logprob}
        if token.special or not drop_falsy:
            body["special_token"] = token.special
        if drop_falsy and not token.text:
            del body["text"]
        line: dict[str, Any] = {"token": body}
        if index == len(tokens) - 1:
            line["generated_text"] = text
            if details:
                line["details"] = {"finish_reason": finish_reason,
                                   "generated_tokens": len(tokens), "inputs": "Hi"}
        lines.append(_dumps(line, ensure_ascii, compact=False) + "\n")
        expected.append(token)
        ends.append(_size(lines))
    return Sample(
        "lmi-jsonlines", "".join(lines).encode(), expected, text, "jsonlines", ("lmi", "auto"),
        finish_reason=finish_reason if (details and tokens) else None,
        generated_text=text if tokens else None, ends=ends,
    )


def lmi_async_lines(
    tokens: Sequence[Token], *, details: bool = False, blank_lines: int = 1,
    ensure_ascii: bool = False,
) -> Sample:
    """LMI vLLM async mode: TGI-shaped json lines (no ``data:``) with empty lines between.

    Args:
        details: send ``details`` (only when the request asked ``parameters.details``).
        blank_lines: empty lines after each line (vLLM's usage chunk and ``[DONE]`` become
            empty lines).
    """
    text = answer(tokens)
    out = _Out()
    ends: list[int] = []
    for index, token in enumerate(tokens):
        last = index == len(tokens) - 1
        body: dict[str, Any] = {"id": token.id, "text": token.text, "logprob": token.logprob}
        if token.special:
            body["special"] = True
        line = {
            "index": index, "token": body,
            "generated_text": text if last else None,
            "details": {"finish_reason": "length", "generated_tokens": len(tokens)}
            if last and details else None,
        }
        out.append(_dumps(line, ensure_ascii) + "\n")
        ends.append(_size(out))
        out.append("\n" * blank_lines)
    return Sample(
        "lmi-async", "".join(out).encode(), list(tokens), text, "jsonlines", ("lmi", "auto"),
        finish_reason="length" if (details and tokens) else None,
        generated_text=text if tokens else None, ends=ends,
    )


def lmi_document(
    tokens: Sequence[Token], *, ensure_ascii: bool = True, details: bool = False,
    tgi_compat: bool = False, leading_blank: str = "",
) -> Sample:
    """LMI 0.24-0.25: one ``{"generated_text": "..."}`` document streamed in pieces.

    Each token's text is JSON-escaped on its own (as DJL Serving's json formatter does), so
    the document carries no newline. Special tokens are not part of it.

    Args:
        ensure_ascii: escape non-ASCII as ``\\uXXXX`` (surrogate pairs for emoji).
        details: end with ``", "details": {...}}`` instead of ``"}``.
        tgi_compat: wrap the document in ``[...]``.
        leading_blank: whitespace sent before the document.
    """
    text = answer(tokens)
    body = "".join(json.dumps(t.text, ensure_ascii=ensure_ascii)[1:-1]
                   for t in tokens if not t.special)
    doc = '{"generated_text": "' + body
    if details:
        doc += '", "details": ' + json.dumps({"finish_reason": "length",
                                              "generated_tokens": len(tokens)}) + "}"
    else:
        doc += '"}'
    if tgi_compat:
        doc = "[" + doc + "]"
    return Sample(
        "lmi-document", (leading_blank + doc).encode(), None, text, "lmi-document",
        ("lmi", "auto"), finish_reason="length" if details else None, generated_text=text,
        extra={"ensure_ascii": ensure_ascii},
    )


def _chunk(content: str | None, *, role: bool = False,
           finish_reason: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-0", "object": "chat.completion.chunk", "created": 0,
            "model": "tgi", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish_reason}]}


def _chunks(tokens: Sequence[Token], usage: bool) -> list[dict[str, Any]]:
    texts = [t.text for t in tokens if not t.special]
    chunks = [_chunk("", role=True)]
    chunks += [_chunk(text) for text in texts]
    chunks.append(_chunk(None, finish_reason="stop"))
    if usage:
        chunks.append({"id": "chatcmpl-0", "object": "chat.completion.chunk", "created": 0,
                       "choices": [], "usage": {"prompt_tokens": 5,
                                                "completion_tokens": len(texts),
                                                "total_tokens": 5 + len(texts)}})
    return chunks


def _chunk_stream(tokens: Sequence[Token], usage: bool, frame: str, after: str = ""
                  ) -> tuple[list[str], list[Token], list[int]]:
    """Frame each chunk; ``after`` (blank lines) follows a frame but is not part of its
    event, so an event ends before it."""
    out = _Out()
    expected: list[Token] = []
    ends: list[int] = []
    for chunk in _chunks(tokens, usage):
        out.append(frame.format(_dumps(chunk, False)))
        content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        if content:
            expected.append(Token(content))
            ends.append(_size(out))
        if after:
            out.append(after)
    return out, expected, ends


def messages_sse(tokens: Sequence[Token], *, usage: bool = True) -> Sample:
    """Messages API over SSE (TGI): ``data: {chunk}`` events ending with ``data: [DONE]``."""
    out, expected, ends = _chunk_stream(tokens, usage, "data: {}\n\n")
    out.append("data: [DONE]\n\n")
    return Sample("messages-sse", "".join(out).encode(), expected, answer(tokens), "sse",
                  ("tgi", "lmi", "auto"), finish_reason="stop", ends=ends,
                  extra={"usage": usage})


def messages_jsonlines(tokens: Sequence[Token], *, usage: bool = True,
                       blank_lines: int = 0) -> Sample:
    """Messages API over json lines (LMI), optionally with empty lines after each line."""
    out, expected, ends = _chunk_stream(tokens, usage, "{}\n", "\n" * blank_lines)
    return Sample("messages-jsonlines", "".join(out).encode(), expected, answer(tokens),
                  "jsonlines", ("tgi", "lmi", "auto"), finish_reason="stop", ends=ends,
                  extra={"usage": usage})


# ----------------------------------------------------------------------------- parts


def parts(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (any order, repeats and out-of-range ignored)."""
    offsets = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *offsets, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def events(pieces: Iterable[bytes]) -> list[dict[str, Any]]:
    """Wrap byte pieces as botocore ``PayloadPart`` events."""
    return [{"PayloadPart": {"Bytes": piece}} for piece in pieces]


def cut_events(data: bytes, cuts: Iterable[int]) -> list[dict[str, Any]]:
    """``events(parts(data, cuts))``."""
    return events(parts(data, cuts))


def byte_events(data: bytes) -> list[dict[str, Any]]:
    """One byte per ``PayloadPart``."""
    return events(data[i:i + 1] for i in range(len(data)))


def one_event(data: bytes) -> list[dict[str, Any]]:
    """All of ``data`` in one ``PayloadPart``."""
    return events([data])


def line_events(data: bytes) -> list[dict[str, Any]]:
    """One ``PayloadPart`` per line (the way containers flush), newline kept."""
    return events(data.splitlines(keepends=True))


def raising_after(event_list: Sequence[dict[str, Any]], exc: BaseException
                  ) -> Iterator[dict[str, Any]]:
    """Yield ``event_list``, then raise ``exc`` as botocore does mid-stream."""
    yield from event_list
    raise exc


# ----------------------------------------------------------------------------- strategies

# Characters that break naive framing: JSON escapes, line breaks, SSE syntax, the letters the
# old lstrip(b'{"generated_text": "') ate, and multi-byte UTF-8 (2, 3 and 4 bytes).
HARD_CHARS = ['"', "\\", "/", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", ":", "{", "}", "g",
              "e", "n", " ", "é", "ß", "你", "好", "\u2028", "\ufeff", "😀", "🦙", "𝄞", "a"]

texts = st.text(
    alphabet=st.one_of(st.sampled_from(HARD_CHARS), st.characters(codec="utf-8")),
    max_size=6,
)


@st.composite
def tokens(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> list[Token]:
    """Draw model tokens: hard texts, empty byte-fallback texts, special ``</s>``."""
    out = []
    for index in range(draw(st.integers(min_size, max_size))):
        kind = draw(st.sampled_from(["text", "text", "text", "empty", "special"]))
        logprob = draw(st.floats(-30, 0, allow_nan=False, allow_infinity=False))
        if kind == "special":
            out.append(Token(draw(st.sampled_from(["</s>", "<s>", "<unk>"])), 2, True, logprob))
        else:
            text = "" if kind == "empty" else draw(texts.filter(lambda t: t not in END_TOKENS))
            out.append(Token(text, draw(st.integers(0, 32000)) + index, False, logprob))
    return out


@st.composite
def samples(draw: st.DrawFn, kind: str | None = None, max_tokens: int = 12) -> Sample:
    """Draw a stream of format ``kind`` (any of :data:`FORMATS` when ``None``), with its
    format options drawn too."""
    toks = draw(tokens(max_size=max_tokens))
    ascii_ = draw(st.booleans())
    if kind is None:
        kind = draw(st.sampled_from(FORMATS))
    if kind == "tgi-sse":
        return tgi_sse(toks, space=draw(st.booleans()), details=draw(st.booleans()),
                       ensure_ascii=ascii_, keepalive_every=draw(st.integers(0, 3)),
                       crlf=draw(st.booleans()), extra_fields=draw(st.booleans()))
    if kind == "lmi-jsonlines":
        return lmi_jsonlines(toks, details=draw(st.booleans()),
                             drop_falsy=draw(st.booleans()), ensure_ascii=ascii_)
    if kind == "lmi-async":
        return lmi_async_lines(toks, details=draw(st.booleans()),
                               blank_lines=draw(st.integers(0, 2)), ensure_ascii=ascii_)
    if kind == "lmi-document":
        return lmi_document(toks, ensure_ascii=ascii_, details=draw(st.booleans()),
                            tgi_compat=draw(st.booleans()),
                            leading_blank=draw(st.sampled_from(["", "\n", " \r\n"])))
    if kind == "messages-sse":
        return messages_sse(toks, usage=draw(st.booleans()))
    return messages_jsonlines(toks, usage=draw(st.booleans()),
                              blank_lines=draw(st.integers(0, 2)))


FORMATS = ("tgi-sse", "lmi-jsonlines", "lmi-async", "lmi-document", "messages-sse",
           "messages-jsonlines")


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[int]:
    """Draw cut offsets for ``data``: none, a few, or many (down to single bytes)."""
    if not data:
        return []
    return draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=len(data)))


class OriginalSampleLineIterator:
    """The LineIterator of the original AWS sample, kept to show the bugs it had.

    It is also the baseline of ``benchmarks/decode_speed.py``. On a last line without a
    newline it loops forever (``continue`` after ``StopIteration``).
    """

    def __init__(self, stream):
        self.byte_iterator = iter(stream)
        self.buffer = io.BytesIO()
        self.read_pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            self.buffer.seek(self.read_pos)
            line = self.buffer.readline()
            if line and line[-1] == ord("\n"):
                self.read_pos += len(line)
                return line[:-1]
            try:
                chunk = next(self.byte_iterator)
            except StopIteration:
                if self.read_pos < self.buffer.getbuffer().nbytes:
                    continue
                raise
            if "PayloadPart" not in chunk:
                continue
            self.buffer.seek(0, io.SEEK_END)
            self.buffer.write(chunk["PayloadPart"]["Bytes"])


# ----------------------------------------------------------------------------- both faces


class FakeAioEventStream:
    """Stands in for aiobotocore's ``AioEventStream``: ``async for`` only (a plain ``for``
    raises ``NotImplementedError``, as aiobotocore's does), ``close()`` a coroutine.
    ``error`` is raised after the events, as a stream that breaks mid-way raises it."""

    def __init__(self, event_list: Sequence[Any], error: BaseException | None = None) -> None:
        self.events = list(event_list)
        self.error = error
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError("Use async-for instead")

    def __aiter__(self) -> Any:
        return self._generate()

    async def _generate(self) -> Any:
        for event in self.events:
            yield event
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


def drive(awaitable: Any) -> Any:
    """Run a coroutine that never really waits (fake streams) without an event loop, so
    hypothesis examples stay fast; fails if it does wait on something."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine waited on something: use asyncio.run")


@dataclass
class Outcome:
    """Everything a decode gives that must not depend on the face (sync or async)."""

    tokens: list[Token]
    error: StreamError | None
    text: str
    format: str | None
    finish_reason: str | None
    generated_text: str | None
    details: Any
    usage: Any

    def key(self) -> tuple:
        error = None if self.error is None else (type(self.error), self.error.partial_text,
                                                  self.error.error_code, str(self.error))
        return (self.tokens, error, self.text, self.format, self.finish_reason,
                self.generated_text, self.details, self.usage)


def decode_sync_result(stream: Any, tokens: list[Token], error: StreamError | None) -> Outcome:
    """The :class:`Outcome` of a sync decode the caller ran itself."""
    return _outcome(stream, tokens, error)


def _outcome(stream: Any, tokens: list[Token], error: StreamError | None) -> Outcome:
    return Outcome(tokens, error, stream.text, stream.format, stream.finish_reason,
                   stream.generated_text, stream.details, stream.usage)


def decode_sync(event_list: Sequence[Any], container: str = "auto",
                stop_tokens: Sequence[str] = ()) -> Outcome:
    """Decode with ``iter_tokens``; only :class:`StreamError` is caught."""
    stream = iter_tokens(event_list, container=container, stop_tokens=stop_tokens)
    tokens: list[Token] = []
    try:
        for token in stream:
            tokens.append(token)
    except StreamError as exc:
        return _outcome(stream, tokens, exc)
    return _outcome(stream, tokens, None)


def decode_async(event_list: Sequence[Any], container: str = "auto",
                 stop_tokens: Sequence[str] = (), error: BaseException | None = None
                 ) -> Outcome:
    """Decode with ``aiter_tokens`` over a :class:`FakeAioEventStream`."""
    stream = aiter_tokens(FakeAioEventStream(event_list, error), container=container,
                          stop_tokens=stop_tokens)

    async def run() -> Outcome:
        tokens: list[Token] = []
        try:
            async for token in stream:
                tokens.append(token)
        except StreamError as exc:
            return _outcome(stream, tokens, exc)
        return _outcome(stream, tokens, None)

    return drive(run())


def decode_both(event_list: Sequence[Any], container: str = "auto",
                stop_tokens: Sequence[str] = ()) -> Outcome:
    """Decode through both faces; assert they agree exactly; return the outcome."""
    sync = decode_sync(event_list, container, stop_tokens)
    async_ = decode_async(event_list, container, stop_tokens)
    assert async_.key() == sync.key(), "the sync and async faces disagree"
    return sync
