"""Decoders from SageMaker response-stream events to lines, tokens and text.

``invoke_endpoint_with_response_stream`` returns an iterable of botocore events
``{"PayloadPart": {"Bytes": b"..."}}``. The byte boundaries of the parts are arbitrary: one
part may carry several lines, and a JSON line, an escape sequence or a UTF-8 character may be
split over several parts. This module turns such a stream into

* lines -- :class:`LineIterator`;
* tokens -- :func:`iter_tokens`, which returns a :class:`TokenStream` of :class:`Token`;
* text -- :func:`iter_text`, the texts of the non-special tokens (joined: the answer).

Wire formats read (each with arbitrary part boundaries):

``"sse"``
    Server-sent events ``data: {json}`` (with or without the space) separated by blank
    lines, as TGI's ``generate_stream`` and LMI's ``sse`` output write them. Comment lines
    (``:`` keep-alives) and ``event:``/``id:``/``retry:`` fields are ignored, ``data: [DONE]``
    ends a Messages-API stream. Each event is read by its keys (see *events* below).
``"jsonlines"``
    One JSON object per line, as LMI 0.26+ (``{"token": {...}}``), LMI's vLLM async mode
    (TGI-shaped ``{"index", "token", "generated_text", "details"}`` with empty lines in
    between) and Messages-API chunk streams over json lines write them.
``"lmi-document"``
    LMI 0.24-0.25: one JSON document ``{"generated_text": "..."}`` streamed in pieces with no
    newlines. It is decoded incrementally, so text appears as soon as each character is
    complete; its tokens are the pieces of text per part (``id`` is ``None``).

One incremental decoder, :class:`StreamDecoder`, does all of it without reading anything: it
is fed each part's bytes and hands back the tokens they complete. :func:`iter_tokens` /
:func:`iter_text` drive it from botocore's blocking event stream (``for``), and
:func:`aiter_tokens` / :func:`aiter_text` from aiobotocore's ``AioEventStream``
(``async for``); for the same bytes both give the same tokens, text and errors.

Events: a ``token`` key is a TGI or LMI token (``special``/``special_token`` marks tokens such
as ``</s>`` that are not text; ``generated_text``/``details`` on the last one are recorded,
not added to the text); ``choices`` is a Messages-API ``chat.completion.chunk`` (or a
``text_completion`` chunk: ``choices[0].text``); ``error`` is a container error event.

Format sniffing (``container="auto"``, and the same for ``"tgi"``/``"lmi"``), from the first
non-blank bytes: ``data:``, ``:``, ``event:``, ``id:`` or ``retry:`` -> ``"sse"``; a JSON
object whose *first key* is ``"generated_text"`` with a string value that opens on the same
line (``{"generated_text": "``, optionally inside ``[`` as LMI's ``tgi_compat`` writes it)
-> ``"lmi-document"``; anything else -> ``"jsonlines"``. No line-based format starts with
``generated_text`` (TGI-shaped lines start with ``index``, LMI lines with ``token``, chunks
with ``id``/``object``), and a complete non-streaming ``{"generated_text": ...}`` answer reads
the same under both rules. ``container="tgi"`` narrows the choice: TGI only writes SSE, so
LMI json lines that carry ``token`` and the LMI document are refused with a
:class:`~common.errors.StreamError` that names the right setting; Messages-API chunks are read
under every setting. ``container="lmi"`` reads every format, since LMI can write each of them.

Failures raise :class:`~common.errors.StreamError` subclasses whose ``partial_text`` holds the
text decoded so far: botocore's ``EventStreamError`` (``ModelStreamError``,
``InternalStreamFailure``) and read timeouts or broken connections while iterating
(mapped by :func:`~common.errors.stream_error_from_botocore`), container error events
(:func:`~common.errors.stream_error_from_container`), a stream that ends inside a JSON
document (:class:`~common.errors.IncompleteStreamError`) and bytes that are not the format
(:class:`~common.errors.StreamError`).

This module imports only the standard library and :mod:`common.errors`; botocore, urllib3 and
aiohttp exceptions are recognised by class name, so it can be copied into any project.
"""

from __future__ import annotations

import codecs
import contextlib
import inspect
import json
import json.scanner
import re
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from common.errors import (
    IncompleteStreamError,
    StreamError,
    stream_error_from_botocore,
    stream_error_from_container,
)

__all__ = [
    "CONTAINERS",
    "END_TOKENS",
    "AsyncTokenStream",
    "LineIterator",
    "StreamDecoder",
    "Token",
    "TokenStream",
    "aiter_text",
    "aiter_tokens",
    "iter_text",
    "iter_tokens",
]

CONTAINERS = ("tgi", "lmi", "auto")
"""The accepted values of the ``container`` argument."""

END_TOKENS = ("</s>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
"""Token texts that end an answer and are never part of it: Llama 2's ``</s>`` and Llama 3's
end of turn, end of message and end of text. A token whose text is exactly one of them is
read as special even when the container did not mark it (see ``stop_tokens=``)."""

FORMAT_SSE = "sse"
FORMAT_JSONLINES = "jsonlines"
FORMAT_DOCUMENT = "lmi-document"
FORMAT_EMPTY = "empty"
_FORMAT_LINES = "lines"  # LineIterator's: raw lines, no tokens

# Exceptions raised while iterating a botocore event stream that mean "the stream broke",
# matched by the names of the classes in their MRO so that botocore and urllib3 need not be
# imported here. Each is mapped by common.errors.stream_error_from_botocore.
_TRANSPORT_ERROR_NAMES = frozenset({
    "EventStreamError",        # botocore: ModelStreamError / InternalStreamFailure events
    "ReadTimeoutError",        # botocore and urllib3
    "ReadTimeout",             # botocore.vendored.requests
    "ResponseStreamingError",  # botocore: the connection broke while reading the body
    "ProtocolError",           # urllib3
    "IncompleteRead",          # http.client / urllib3
    "ChunkedEncodingError",    # requests-style wrappers
    "TimeoutError",            # the built-in (socket.timeout, asyncio.TimeoutError)
    # aiohttp, under aiobotocore (matched by name too, so the core never imports it):
    "ClientPayloadError",      # the body ended early (ContentLengthError, TransferEncodingError)
    "ServerDisconnectedError",  # the server closed the connection
    "ClientConnectionError",   # a reset or refused connection mid-stream (ClientOSError, ...)
})

# SageMaker's in-stream error events, should a caller hand us raw event dicts (botocore
# raises them as EventStreamError instead).
_ERROR_EVENTS = ("ModelStreamError", "InternalStreamFailure")

# json.loads minus its keyword checks and blank skipping: the C scanner of the default
# decoder returns (value, end) or raises StopIteration / JSONDecodeError.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())

_NOT_A_STREAM_FIX = (
    "Pass response['Body'] from sagemaker-runtime invoke_endpoint_with_response_stream (an "
    "iterable of {'PayloadPart': {'Bytes': b'...'}} events)."
)


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token (or, for the LMI 0.24-0.25 document, one decoded piece of text).

    Attributes:
        text: the token's text; may be empty (byte-fallback tokens).
        id: the tokenizer's token id, ``None`` where the format does not send it.
        special: ``True`` for special tokens such as ``</s>``, which are not answer text.
        logprob: the token's log probability, ``None`` where not sent.
    """

    text: str
    id: int | None = None
    special: bool = False
    logprob: float | None = None


# The decoders build one Token per event; the frozen dataclass's __init__ goes through
# object.__setattr__ per field. Setting the slots through their descriptors builds the same
# object in about 60% of the time (this is the hot path of every stream).
_new_object = object.__new__
_set_text = Token.text.__set__  # type: ignore[attr-defined]
_set_id = Token.id.__set__  # type: ignore[attr-defined]
_set_special = Token.special.__set__  # type: ignore[attr-defined]
_set_logprob = Token.logprob.__set__  # type: ignore[attr-defined]


def _token(text: str, token_id: int | None = None, special: bool = False,
           logprob: float | None = None) -> Token:
    token = _new_object(Token)
    _set_text(token, text)
    _set_id(token, token_id)
    _set_special(token, special)
    _set_logprob(token, logprob)
    return token


# ----------------------------------------------------------------------------- events -> bytes


def _is_transport_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _TRANSPORT_ERROR_NAMES for cls in type(exc).__mro__)


class _RawEventError(Exception):
    """A SageMaker error event met as a plain dict; shaped like botocore's error."""

    def __init__(self, code: str, body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        message = body.get("Message") or f"{code} event in the response stream"
        super().__init__(message)
        self.response = {"Error": {"Code": code, "Message": message},
                         "ErrorCode": body.get("ErrorCode")}


def _unusual_event(event: Any) -> bytes | None:
    """Return the bytes of an event that is not a plain PayloadPart, ``None`` to skip it.

    Raises:
        TypeError: for something that is not an event at all (with the fix).
        StreamError: for a SageMaker error event given as a dict.
    """
    if not isinstance(event, dict):
        raise TypeError(
            f"a response stream yields event dicts, got {type(event).__name__}. "
            + _NOT_A_STREAM_FIX
        )
    part = event.get("PayloadPart")
    if part is not None:
        data = part.get("Bytes", b"") if isinstance(part, dict) else None
        if isinstance(data, (bytearray, memoryview)):
            return bytes(data)
        if not isinstance(data, bytes):
            raise TypeError(
                f"PayloadPart must be {{'Bytes': bytes}}, got {part!r:.80}. " + _NOT_A_STREAM_FIX
            )
        return data
    for code in _ERROR_EVENTS:
        if code in event:
            raise stream_error_from_botocore(_RawEventError(code, event[code]))
    warnings.warn(
        f"skipping an unknown response-stream event {sorted(event)!r:.120} (expected "
        "'PayloadPart'); a newer service version may send it, and it carries no text",
        RuntimeWarning,
        stacklevel=5,
    )
    return None


def _event_bytes(event: Any) -> bytes | None:
    """Return the ``Bytes`` of one ``PayloadPart`` event (``None``/empty: nothing to decode).

    Unknown event types give ``None`` with a :class:`RuntimeWarning`; see
    :func:`_unusual_event` for what raises.
    """
    try:
        data = event["PayloadPart"]["Bytes"]
    except (KeyError, TypeError, IndexError):
        return _unusual_event(event)
    if type(data) is not bytes:
        return _unusual_event(event)
    return data


def _lines_of(events: Iterator[Any]) -> Iterator[bytes]:
    splitter = StreamDecoder._line_splitter()
    for event in events:
        data = _event_bytes(event)
        if data:
            yield from splitter.feed(data)
    yield from splitter.end()


class LineIterator:
    """Iterate the complete lines of a SageMaker response stream.

    Each item is one line as ``bytes``, without its ``\\n`` (or ``\\r\\n``); blank lines come
    out as ``b""`` (they separate server-sent events). Several lines in one part, a line
    split over many parts and a last line with no newline all come out right. Nothing is
    kept once yielded, so there is no limit on the total size of a stream.

    Events that are not ``PayloadPart`` are skipped with a :class:`RuntimeWarning`.
    Exceptions raised while iterating ``event_stream`` (botocore's ``EventStreamError``,
    read timeouts) propagate unchanged; :func:`iter_tokens` maps them to
    :class:`~common.errors.StreamError`.

    Args:
        event_stream: ``response["Body"]`` of ``invoke_endpoint_with_response_stream``, or
            any iterable of ``{"PayloadPart": {"Bytes": b"..."}}`` dicts.

    Raises:
        TypeError: when ``event_stream`` is not iterable, or yields things that are not
            event dicts.
    """

    def __init__(self, event_stream: Iterable[dict[str, Any]]) -> None:
        self._lines = _lines_of(iter(event_stream))

    def __iter__(self) -> LineIterator:
        return self

    def __next__(self) -> bytes:
        return next(self._lines)


# ----------------------------------------------------------------------------- sniffing

_SSE_FIELDS = (b"data:", b":", b"event:", b"id:", b"retry:")
_BLANK = b" \t\r\n"
_DOC_KEY = b'"generated_text"'


def _skip_blanks(s: bytes, i: int) -> int:
    while i < len(s) and s[i] in b" \t":
        i += 1
    return i


def _match_document_start(s: bytes) -> int | bool | None:
    """Check whether ``s`` opens an LMI document ``[{"generated_text": "``.

    Returns:
        The offset just past the string value's opening quote when it does; ``None`` when
        ``s`` is still too short to tell; ``False`` when it does not. The optional ``[``
        is LMI's ``tgi_compat`` wrapping; blanks between the tokens must not be newlines.
    """
    n = len(s)
    i = 0
    if s[:1] == b"[":
        i = _skip_blanks(s, 1)
    for expected in (b"{", _DOC_KEY, b":", b'"'):
        if expected != b"{":
            i = _skip_blanks(s, i)
        got = s[i:i + len(expected)]
        if got != expected:
            return None if (i + len(got) == n and expected.startswith(got)) else False
        i += len(expected)
    return i


def _sniff(head: bytes, final: bool) -> tuple[str, int] | None:
    """Decide the wire format from the first bytes of a stream.

    Returns:
        ``(format, offset)`` -- for ``"lmi-document"`` the offset of the string value, else
        0 -- or ``None`` when more bytes are needed to decide.
    """
    s = head.lstrip(_BLANK)
    if not s:
        return (FORMAT_EMPTY, 0) if final else None
    if s[:1] in (b"{", b"["):
        end = _match_document_start(s)
        if end:
            return FORMAT_DOCUMENT, len(head) - len(s) + end
        if end is None and not final:
            return None
        return FORMAT_JSONLINES, 0
    if s.startswith(_SSE_FIELDS):
        return FORMAT_SSE, 0
    if not final and any(field.startswith(s) for field in _SSE_FIELDS):
        return None
    return FORMAT_JSONLINES, 0


# ----------------------------------------------------------------------------- LMI document

_PLAIN = re.compile(r'[^"\\]+')
_HEX = re.compile(r"[0-9a-fA-F]{1,4}")
_LOW_SURROGATE = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LOW_SURROGATE_START = re.compile(r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]?)?)?)?)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}


class _BadEscape(ValueError):
    """An invalid escape sequence inside the document's string; ``text`` is what decoded
    before it."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


def _unescape_partial(s: str) -> tuple[str, int, bool]:
    """Decode the body of a JSON string as far as it is complete.

    Args:
        s: text after the opening quote (or after the previous call's stopping point).

    Returns:
        ``(text, stop, closed)``: the decoded text, the index in ``s`` where decoding
        stopped (an incomplete escape or surrogate pair starts there, or the closing quote
        when ``closed``), and whether the closing quote was reached. Lone surrogates
        decode as :func:`json.loads` decodes them; raw control characters are accepted.

    Raises:
        _BadEscape: for an escape that JSON does not allow.
    """
    out: list[str] = []
    pos = 0
    n = len(s)
    while pos < n:
        match = _PLAIN.match(s, pos)
        if match is not None:
            out.append(match.group())
            pos = match.end()
            if pos >= n:
                break
        if s[pos] == '"':
            return "".join(out), pos, True
        if pos + 1 >= n:  # a backslash at the end: wait for the escaped character
            break
        kind = s[pos + 1]
        simple = _ESCAPES.get(kind)
        if simple is not None:
            out.append(simple)
            pos += 2
            continue
        if kind != "u":
            raise _BadEscape(f"invalid escape {s[pos:pos + 2]!r}", "".join(out))
        digits = s[pos + 2:pos + 6]
        if digits and _HEX.fullmatch(digits) is None:
            raise _BadEscape(f"invalid \\u escape {s[pos:pos + 6]!r}", "".join(out))
        if len(digits) < 4:
            break
        code = int(digits, 16)
        if 0xD800 <= code < 0xDC00:  # a high surrogate: pair it with a following low one
            after = s[pos + 6:pos + 12]
            if _LOW_SURROGATE.fullmatch(after):
                low = int(after[2:], 16)
                out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                pos += 12
                continue
            if len(after) < 6 and _LOW_SURROGATE_START.fullmatch(after):
                break  # the low half may still come
        out.append(chr(code))
        pos += 6
    return "".join(out), pos, False


# ----------------------------------------------------------------------------- token stream


def _excerpt(data: bytes | str) -> str:
    return repr(data[:80]) + ("..." if len(data) > 80 else "")


def _is_truncation(exc: json.JSONDecodeError) -> bool:
    """Whether a JSON error means "the text stopped early" rather than "the text is wrong"."""
    return exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")


class StreamDecoder:
    """The incremental, sans-I/O decoder behind every token stream.

    Feed it the ``Bytes`` of each ``PayloadPart`` as they arrive and it hands back the tokens
    they complete; it never reads anything itself, so the same object serves botocore's
    blocking event stream (:class:`TokenStream`), aiobotocore's async one
    (:class:`AsyncTokenStream`) and any other transport. The wire formats, the sniffing and
    the failures are those described in the module docstring.

    Args:
        container: ``"tgi"``, ``"lmi"`` or ``"auto"``.
        stop_tokens: token texts that end an answer and are not part of it (e.g. a model's
            own end-of-turn marker), added to :data:`END_TOKENS`.

    Attributes:
        text: the non-special text decoded so far.
        format: the sniffed wire format once known (``"sse"``, ``"jsonlines"``,
            ``"lmi-document"``, ``"empty"``), else ``None``.
        finish_reason, generated_text, details, usage: as the container stated them.
        failure: the :class:`~common.errors.StreamError` the stream failed with, else
            ``None``.

    Raises:
        ValueError: for a ``container`` that is not one of the three.
        TypeError: for ``stop_tokens`` that are not a collection of non-empty strings.
    """

    def __init__(self, container: str = "auto", *, stop_tokens: Iterable[str] = ()) -> None:
        if container not in CONTAINERS:
            raise ValueError(
                f"container must be one of {', '.join(map(repr, CONTAINERS))}; got "
                f"{container!r}. Use 'tgi' for the Hugging Face LLM (TGI) container, 'lmi' for "
                "the Large Model Inference (DJL Serving) container, or 'auto' to detect it."
            )
        self.container = container
        self.stop_tokens = _stop_set(stop_tokens)
        self.format: str | None = None
        self.finish_reason: str | None = None
        self.generated_text: str | None = None
        self.details: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.failure: StreamError | None = None
        self.ended = False
        self._pieces: list[str] = []
        self._label = {"tgi": "TGI", "lmi": "LMI"}.get(container, "the container")
        self._consume: Callable[[bytes, list[Token]], bytes | None] = self._sniff_more
        self._head = b""
        # Once a line format is known, feed() splits lines itself (inline: most parts
        # complete one line or none) and hands them to _on_lines; _pending holds the pieces
        # of an unfinished line, joined once, so a long line costs time linear in its length.
        self._in_lines = False
        self._pending: list[bytes] = []
        self._on_lines: Callable[[list[bytes], list[Any], bool], None] = self._sse_lines
        self._data: list[bytes] = []  # the data lines of the SSE event being read
        # the LMI document: UTF-8 decoder, an incomplete escape held back, past the string?
        self._utf8: codecs.IncrementalDecoder | None = None
        self._held = ""
        self._closed = False
        self._rest: list[str] = []
        self._bracketed = False

    @property
    def text(self) -> str:
        """The non-special text decoded so far."""
        pieces = self._pieces
        if len(pieces) > 1:
            pieces[:] = ["".join(pieces)]
        return pieces[0] if pieces else ""

    def feed(self, data: bytes) -> list[Token]:
        """Decode the next bytes of the stream; return the tokens they complete, in order.

        When ``data`` holds tokens and then a failure, the tokens are returned and the
        failure is kept in :attr:`failure` and raised by the next call (``feed`` or
        ``end``), so that no token before a failure is lost; a reader checks
        :attr:`failure` after handing out the tokens, as the two stream classes do.

        Raises:
            StreamError: (or a subclass) when the bytes are not a valid stream, or carry a
                container error; its ``partial_text`` is :attr:`text`.
            RuntimeError: when called after :meth:`end`.
        """
        if self.failure is not None:
            raise self.failure
        if self.ended:
            raise RuntimeError("StreamDecoder.feed() after end(): make a new decoder per stream")
        out: list[Token] = []
        if not self._in_lines:
            if not data:
                return out
            try:
                data = self._consume(data, out)  # sniffing, or the LMI document
            except StreamError as exc:
                self._fail(exc, out)
            if data is None:
                return out
        # a line format: the lines this part completes, without "\n" or a trailing "\r"
        pending = self._pending
        if b"\n" not in data:
            pending.append(data)
            return out
        lines = data.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
        tail = lines.pop()
        if tail:
            pending.append(tail)
        if b"\r" in data or lines[0][-1:] == b"\r":
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        try:
            self._on_lines(lines, out, False)
        except StreamError as exc:
            self._fail(exc, out)
        return out

    def _last_line(self) -> bytes | None:
        """Take the last line when the stream ended without a newline, else ``None``."""
        pending = self._pending
        if not pending:
            return None
        line = b"".join(pending)
        pending.clear()
        return line[:-1] if line[-1:] == b"\r" else line

    @classmethod
    def _line_splitter(cls) -> StreamDecoder:
        """A decoder that hands back the raw lines instead of tokens (for LineIterator)."""
        splitter = cls()
        splitter.format = _FORMAT_LINES
        splitter._in_lines = True
        splitter._on_lines = lambda lines, out, final: out.extend(lines)
        return splitter

    def end(self) -> list[Token]:
        """Say that the stream ended; return the tokens its last bytes complete.

        Calling it again returns ``[]``.

        Raises:
            StreamError: as :meth:`feed`; :class:`~common.errors.IncompleteStreamError` when
                the stream stopped inside a JSON document, an SSE line or a UTF-8 character.
        """
        if self.failure is not None:
            raise self.failure
        if self.ended:
            return []
        out: list[Token] = []
        try:
            if self.format is None:
                head, self._head = self._head, b""
                rest = self._start(_sniff(head, final=True), head, out)
                if rest:
                    out += self.feed(rest)
                    if self.failure is not None:
                        return out
            fmt = self.format
            if fmt == FORMAT_SSE:
                self._sse_end(out)
            elif fmt == FORMAT_JSONLINES:
                self._jsonlines_end(out)
            elif fmt == FORMAT_DOCUMENT:
                self._document_finish()
            elif fmt == _FORMAT_LINES:
                last = self._last_line()
                if last is not None:
                    out.append(last)  # type: ignore[arg-type]
        except StreamError as exc:
            self._fail(exc, out)
        self.ended = True
        return out

    def _fail(self, exc: StreamError, out: list[Token]) -> None:
        self.failure = exc
        if not out:
            raise exc
        # else: the tokens go out first; the next call raises it

    # -- errors

    def _error(self, message: str, fix: str | None = None) -> StreamError:
        return StreamError(message, partial_text=self.text, fix=fix)

    def _incomplete(self, message: str) -> IncompleteStreamError:
        return IncompleteStreamError(message, partial_text=self.text)

    def _container_error(self, payload: dict[str, Any]) -> StreamError:
        return stream_error_from_container(payload, self.text, container=self._label)

    def _malformed(self, what: str, payload: Any) -> StreamError:
        return self._error(
            f"malformed {what} in the response stream: {_excerpt(json.dumps(payload))}",
            fix="The container sent an event this decoder does not know; check that "
                "container= matches the endpoint's image, and report the event if it does.",
        )

    # -- sniffing

    def _sniff_more(self, chunk: bytes, out: list[Token]) -> bytes | None:
        head = self._head + chunk
        decision = _sniff(head, final=False)
        if decision is None:
            self._head = head
            return None
        self._head = b""
        return self._start(decision, head, out)

    def _start(self, decision: tuple[str, int], head: bytes, out: list[Token]) -> bytes | None:
        """Set up for the sniffed format; return the bytes left for the line reader."""
        fmt, offset = decision
        self.format = fmt
        if fmt == FORMAT_EMPTY:
            return None
        if fmt == FORMAT_DOCUMENT:
            if self.container == "tgi":
                raise self._error(
                    "this stream is an LMI 0.24-0.25 JSON document ({\"generated_text\": ...}), "
                    "which TGI never sends",
                    fix="Pass container='lmi' (or 'auto') for an LMI endpoint.",
                )
            self._bracketed = head.lstrip(_BLANK)[:1] == b"["
            self._utf8 = codecs.getincrementaldecoder("utf-8")()
            self._consume = self._document_feed
            if len(head) > offset:
                self._document_feed(head[offset:], out)
            return None
        self._on_lines = self._sse_lines if fmt == FORMAT_SSE else self._jsonlines_lines
        self._in_lines = True
        return head

    # -- JSON

    def _load(self, data: bytes, final: bool) -> Any:
        """Parse one JSON document (an SSE event's data or one json line)."""
        try:  # the fast path: what json.loads does, minus its Python-level checks
            text = data.decode("utf-8")
            value, end = _scan_once(text, 0)
            if end == len(text):
                return value
        except (ValueError, StopIteration, RecursionError):
            pass  # json.loads below gives the precise error (or accepts surrounding blanks)
        return self._load_slowly(data, final)

    def _load_slowly(self, data: bytes, final: bool) -> Any:
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            if final and exc.reason == "unexpected end of data":
                raise self._incomplete(
                    "the stream ended inside a UTF-8 character of its last JSON document"
                ) from exc
            raise self._error(f"the response stream is not valid UTF-8 ({exc.reason}) in "
                              f"{_excerpt(data)}") from exc
        except json.JSONDecodeError as exc:
            if final and _is_truncation(exc):
                raise self._incomplete(
                    f"the stream ended inside a JSON document ({exc.msg}): {_excerpt(data)}"
                ) from exc
            raise self._error(
                f"invalid JSON in the response stream ({exc.msg} at character {exc.pos}): "
                f"{_excerpt(data)}",
                fix="Check that container= matches the endpoint's image and that the request "
                    "asked for a stream (\"stream\": true); report the line if it does.",
            ) from exc
        except (ValueError, RecursionError) as exc:
            raise self._error(f"unreadable JSON in the response stream ({exc}): "
                              f"{_excerpt(data)}") from exc

    # -- server-sent events

    def _sse_lines(self, lines: list[bytes], out: list[Token], unterminated: bool) -> None:
        data = self._data
        handle = self._handle
        load = self._load
        for line in lines:
            if line[:5] == b"data:":
                data.append(line[5:].removeprefix(b" "))
                continue
            if not line:
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    if payload != b"[DONE]":  # [DONE] ends a Messages-API stream
                        token = handle(load(payload, False), True)
                        if token is not None:
                            out.append(token)
                continue
            if line[:1] == b":":
                continue
            name, colon, _ = line.partition(b":")
            if name in (b"event", b"id", b"retry") or (name == b"data" and not colon):
                if name == b"data":
                    data.append(b"")
                continue
            if unterminated and any(field.startswith(line) for field in _SSE_FIELDS):
                raise self._incomplete(f"the stream ended inside an SSE line: {_excerpt(line)}")
            raise self._error(
                f"unexpected line in a server-sent-event stream: {_excerpt(line)}",
                fix="Check that container= matches the endpoint's image.",
            )

    def _sse_end(self, out: list[Token]) -> None:
        last = self._last_line()
        if last is not None:
            self._sse_lines([last], out, True)
        data = self._data
        if data:
            payload = data[0] if len(data) == 1 else b"\n".join(data)
            data.clear()
            if payload == b"[DONE]":
                return
            if b"[DONE]".startswith(payload):
                raise self._incomplete(f"the stream ended inside {_excerpt(payload)}")
            token = self._handle(self._load(payload, True), sse=True)
            if token is not None:
                out.append(token)

    # -- json lines

    def _jsonlines_lines(self, lines: list[bytes], out: list[Token], final: bool) -> None:
        handle = self._handle
        load = self._load
        for line in lines:
            if not line or line.isspace():
                continue
            token = handle(load(line, final), False)
            if token is not None:
                out.append(token)

    def _jsonlines_end(self, out: list[Token]) -> None:
        last = self._last_line()
        if last is not None:
            self._jsonlines_lines([last], out, True)

    # -- events

    def _handle(self, event: Any, sse: bool) -> Token | None:
        """Read one parsed event: return its token (or ``None``), record its metadata."""
        if type(event) is not dict:
            if isinstance(event, list):
                raise self._error(
                    "the response is a JSON array, not a stream of events: "
                    + _excerpt(json.dumps(event)),
                    fix="Ask for a stream: put \"stream\": true in the request body and call "
                        "invoke_endpoint_with_response_stream.",
                )
            raise self._malformed("event (not a JSON object)", event)
        token = event.get("token")
        if token is not None:
            if self.container == "tgi" and not sse:
                raise self._error(
                    "this stream is LMI json lines ({\"token\": ...} per line), which TGI never "
                    "sends", fix="Pass container='lmi' (or 'auto') for an LMI endpoint.")
            return self._token_event(event, token)
        if "choices" in event:
            return self._chunk_event(event)
        if event.get("error") is not None:
            raise self._container_error(event)
        if "generated_text" in event:  # a whole answer, as a non-streaming reply sends it
            self._final_fields(event)
            return None
        raise self._malformed("event (no 'token', 'choices' or 'error' key)", event)

    def _final_fields(self, event: dict[str, Any]) -> None:
        generated = event.get("generated_text")
        if generated is not None:
            if type(generated) is not str:
                raise self._malformed("generated_text", event)
            self.generated_text = generated
        details = event.get("details")
        if details is not None:
            if type(details) is not dict:
                raise self._malformed("details", event)
            reason = details.get("finish_reason")
            if reason == "error":
                raise self._container_error(event)
            if reason is not None and type(reason) is not str:
                raise self._malformed("finish_reason", event)
            self.details = details
            if reason is not None:
                self.finish_reason = reason

    def _token_event(self, event: dict[str, Any], token: Any) -> Token:
        if type(token) is not dict:
            raise self._malformed("token", event)
        text = token.get("text")
        if text is None:
            text = ""
        elif type(text) is not str:
            raise self._malformed("token text", event)
        token_id = token.get("id")
        if token_id is not None and type(token_id) is not int:
            raise self._malformed("token id", event)
        logprob = token.get("logprob")
        if logprob is None:
            logprob = token.get("log_prob")
        if logprob is not None and type(logprob) is not float:
            if type(logprob) is not int:
                raise self._malformed("token logprob", event)
            logprob = float(logprob)
        special = token.get("special")
        if special is None:
            special = token.get("special_token")
        if special is None:
            special = False
        elif type(special) is not bool:
            raise self._malformed("token special flag", event)
        if text in self.stop_tokens:
            special = True  # an end marker the container did not flag is still no answer text
        if event.get("details") is not None or event.get("generated_text") is not None:
            self._final_fields(event)  # the last token also carries these
        if text and not special:
            self._pieces.append(text)
        return _token(text, token_id, special, logprob)

    def _chunk_event(self, event: dict[str, Any]) -> Token | None:
        choices = event["choices"]
        if type(choices) is not list:
            raise self._malformed("chunk (choices is not a list)", event)
        usage = event.get("usage")
        if usage is not None:
            if type(usage) is not dict:
                raise self._malformed("chunk usage", event)
            self.usage = usage
        if not choices:
            return None
        choice = choices[0]
        if type(choice) is not dict:
            raise self._malformed("chunk choice", event)
        delta = choice.get("delta")
        if delta is not None:
            if type(delta) is not dict:
                raise self._malformed("chunk delta", event)
            content = delta.get("content")
        else:
            content = choice.get("text")
        if content is not None and type(content) is not str:
            raise self._malformed("chunk content", event)
        reason = choice.get("finish_reason")
        if reason is not None:
            if type(reason) is not str:
                raise self._malformed("chunk finish_reason", event)
            self.finish_reason = reason
        if not content or content in self.stop_tokens:
            return None
        self._pieces.append(content)
        return _token(content)

    # -- the LMI 0.24-0.25 document

    def _document_feed(self, chunk: bytes, out: list[Token]) -> None:
        """Decode the next bytes of the document's ``generated_text`` string (and after)."""
        failure: StreamError | None = None
        try:
            piece = self._utf8.decode(chunk)  # type: ignore[union-attr]
        except UnicodeDecodeError as exc:
            # Keep the valid text before the bad byte, so that the error's partial_text
            # does not depend on where the parts were cut.
            piece = exc.object[:exc.start].decode("utf-8")
            failure = self._error(f"the response stream is not valid UTF-8 ({exc.reason})")
            failure.__cause__ = exc
        if self._closed:
            self._rest.append(piece)
        else:
            if self._held:
                piece = self._held + piece
            closed = False
            try:
                text, stop, closed = _unescape_partial(piece)
            except _BadEscape as exc:
                text, stop = exc.text, len(piece)
                failure = self._error(f"invalid JSON in the LMI document: {exc}")
                failure.__cause__ = exc
            if closed:
                self._closed = True
                self._rest.append(piece[stop + 1:])
                self._held = ""
            else:
                self._held = piece[stop:]
            if text:
                self._pieces.append(text)
                out.append(_token(text))
        if failure is not None:
            raise failure.with_partial_text(self.text) from failure.__cause__

    def _document_finish(self) -> None:
        try:
            self._utf8.decode(b"", final=True)  # type: ignore[union-attr]
        except UnicodeDecodeError as exc:
            raise self._incomplete("the stream ended inside a UTF-8 character") from exc
        if not self._closed:
            raise self._incomplete(
                "the stream ended inside the LMI document's generated_text string"
            )
        self._document_end("".join(self._rest), self._bracketed)

    def _document_end(self, rest: str, bracketed: bool) -> None:
        """Read what follows the document's string: ``}`` or ``, "details": {...}}``."""
        answer = self.text
        if rest.strip() == ("}]" if bracketed else "}"):
            self.generated_text = answer
            return
        opening = '[{"generated_text": ""' if bracketed else '{"generated_text": ""'
        document = opening + rest
        try:
            parsed = json.loads(document)
        except json.JSONDecodeError as exc:
            if _is_truncation(exc):
                raise self._incomplete(
                    f"the stream ended inside the LMI document ({exc.msg}): {_excerpt(rest)}"
                ) from exc
            raise self._error(f"invalid JSON after the LMI document's text ({exc.msg}): "
                              f"{_excerpt(rest)}") from exc
        except (ValueError, RecursionError) as exc:
            raise self._error(f"unreadable JSON in the LMI document ({exc})") from exc
        if bracketed:
            if type(parsed) is not list or len(parsed) != 1:
                raise self._malformed("LMI document (expected one object in [...])", parsed)
            parsed = parsed[0]
        if type(parsed) is not dict:
            raise self._malformed("LMI document", parsed)
        parsed["generated_text"] = answer
        self._final_fields(parsed)


def _stop_set(stop_tokens: Iterable[str]) -> frozenset[str]:
    """Return :data:`END_TOKENS` plus ``stop_tokens``, checked."""
    if isinstance(stop_tokens, (str, bytes)):
        raise TypeError(
            f"stop_tokens takes a collection of token texts, not one string: pass "
            f"stop_tokens=({stop_tokens!r},)"
        )
    extra = tuple(stop_tokens)
    for text in extra:
        if not isinstance(text, str) or not text:
            raise TypeError(f"stop_tokens must be non-empty strings (token texts); got {text!r}")
    return frozenset(END_TOKENS).union(extra)


# ----------------------------------------------------------------------------- the two faces

_END: Any = object()  # the event source is exhausted
_NO_TOKENS: list[Token] = []  # never appended to


class _StreamFace:
    """What :class:`TokenStream` and :class:`AsyncTokenStream` share: one
    :class:`StreamDecoder`, the batch of tokens being handed out, the attributes, and how a
    failure of the event source is mapped. Only reading the next event differs."""

    _face = "iter_tokens"

    def __init__(self, event_stream: Any, container: str, stop_tokens: Iterable[str]) -> None:
        self._decoder = StreamDecoder(container, stop_tokens=stop_tokens)
        if isinstance(event_stream, dict):
            raise TypeError(
                f"{self._face}() takes the event stream, not a dict "
                f"(keys {sorted(event_stream)!r:.80}). " + _NOT_A_STREAM_FIX
            )
        if isinstance(event_stream, (bytes, bytearray, str)):
            raise TypeError(
                f"{self._face}() takes an event stream, got {type(event_stream).__name__}. "
                + _NOT_A_STREAM_FIX
            )
        self._source = event_stream
        self._batch: list[Token] = _NO_TOKENS
        self._next = 0
        self.closed = False

    # -- attributes (the decoder's)

    @property
    def text(self) -> str:
        """The non-special text of the tokens handed out so far."""
        if self.closed:
            return self._text_at_close
        text = self._decoder.text
        rest = self._batch[self._next:]
        if rest:
            cut = sum(len(token.text) for token in rest if not token.special)
            if cut:
                text = text[:len(text) - cut]
        return text

    @property
    def container(self) -> str:
        """The ``container`` setting the stream was made with."""
        return self._decoder.container

    @property
    def format(self) -> str | None:
        """The sniffed wire format (``"sse"``, ``"jsonlines"``, ``"lmi-document"``,
        ``"empty"``) once the first bytes arrived; ``None`` before."""
        return self._decoder.format

    @property
    def finish_reason(self) -> str | None:
        """Why generation stopped (``"length"``, ``"eos_token"``, ``"stop"``, ...) when the
        container said so; else ``None``."""
        return self._decoder.finish_reason

    @property
    def generated_text(self) -> str | None:
        """The whole answer as the container's final event stated it, when sent."""
        return self._decoder.generated_text

    @property
    def details(self) -> dict[str, Any] | None:
        """The final ``details`` object when sent (TGI/LMI with ``details: true``)."""
        return self._decoder.details

    @property
    def usage(self) -> dict[str, Any] | None:
        """The Messages API's ``usage`` object when sent."""
        return self._decoder.usage

    @property
    def stop_tokens(self) -> frozenset[str]:
        """The token texts read as the end of the answer (:data:`END_TOKENS` included)."""
        return self._decoder.stop_tokens

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} format={self.format!r} container={self.container!r} "
                f"chars={len(self.text)} finish_reason={self.finish_reason!r}>")

    def _stopping(self) -> None:
        if not self.closed:
            self._text_at_close = self.text
        self.closed = True
        self._batch = _NO_TOKENS
        self._next = 0

    # -- decoding one event

    def _step(self, event: Any) -> list[Token] | None:
        """Decode one event from the source; return its tokens, ``None`` once all is done
        (or once :meth:`close` was called, by another thread or task, meanwhile)."""
        try:  # the common case first; the end and other events go the slow way
            data = event["PayloadPart"]["Bytes"]
        except Exception:
            data = None
        if type(data) is bytes:
            batch = self._decoder.feed(data)
        else:
            try:
                batch = self._decode(event)
            except _Exhausted:
                return None
        return None if self.closed else batch

    def _decode(self, event: Any) -> list[Token]:
        """Decode what the source gave that is not a plain ``PayloadPart``: the end
        (:data:`_END`), another event type, or something that is no event."""
        decoder = self._decoder
        if event is _END:
            batch = decoder.end()  # [] when called again after the tokens it gave
            if not batch:
                raise _Exhausted
            return batch
        try:
            data = _event_bytes(event)
        except BaseException as exc:
            self._source_failed(exc)
            raise _Exhausted from None  # closed meanwhile: a stop
        return decoder.feed(data) if data else _NO_TOKENS

    def _source_failed(self, exc: BaseException) -> None:
        """Re-raise what reading the next event raised, mapped to a :class:`StreamError`
        with the partial text where it means the stream broke -- or return, when the read
        broke because :meth:`close` closed the body (a stop, not a failure)."""
        if self.closed and isinstance(exc, Exception):
            return
        if isinstance(exc, StreamError):  # a SageMaker error event given as a dict
            if not exc.partial_text:
                raise exc.with_partial_text(self._decoder.text) from None
            raise exc
        if isinstance(exc, Exception) and _is_transport_error(exc):
            raise stream_error_from_botocore(exc, self._decoder.text) from exc
        raise exc


class _Exhausted(Exception):
    """Internal: the source and the decoder are both done."""


class TokenStream(_StreamFace, Iterator[Token]):
    """An iterator of :class:`Token` decoded from a response stream, keeping what it saw.

    Use :func:`iter_tokens` to make one. Iterate it to read the tokens as they arrive;
    meanwhile (and after a failure) its attributes hold the stream so far.

    Attributes:
        text: the non-special text of the tokens handed out so far (on failure, also the
            error's ``partial_text``).
        finish_reason: why generation stopped (``"length"``, ``"eos_token"``, ``"stop"``,
            ...), when the container said so; else ``None``.
        generated_text: the whole answer as the container's final event stated it, when
            sent (TGI and LMI send it on the last token; the LMI document *is* it).
        details: the final ``details`` object when sent (TGI/LMI with ``details: true``).
        usage: the Messages API's ``usage`` object when sent.
        format: the sniffed wire format -- ``"sse"``, ``"jsonlines"``, ``"lmi-document"``
            or ``"empty"`` -- once the first bytes arrived; ``None`` before.
        container: the ``container`` setting it was made with.
        stop_tokens: the token texts read as the end of the answer.
        closed: ``True`` once :meth:`close` was called (the answer was stopped).

    Raises (while iterating):
        StreamError: or a subclass, with ``partial_text`` set -- see :func:`iter_tokens`.
    """

    def __init__(self, event_stream: Iterable[dict[str, Any]], container: str = "auto", *,
                 stop_tokens: Iterable[str] = ()) -> None:
        super().__init__(event_stream, container, stop_tokens)
        self._gen = self._batches(iter(event_stream))

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> Token:
        index = self._next
        batch = self._batch
        if index < len(batch):
            self._next = index + 1
            return batch[index]
        batch = next(self._gen)
        self._batch = batch
        self._next = 1
        return batch[0]

    def _batches(self, events: Iterator[Any]) -> Iterator[list[Token]]:
        """Read events; yield the tokens of each that completes any (never an empty list)."""
        decoder = self._decoder
        step = self._step
        while not self.closed:
            try:
                event = next(events, _END)
            except BaseException as exc:
                self._source_failed(exc)
                return  # the read broke because close() closed the body: a stop
            batch = step(event)
            if batch is None:
                return
            if batch:
                yield batch
                if decoder.failure is not None:  # held back behind the tokens just given
                    raise decoder.failure

    def close(self) -> None:
        """Stop decoding and close the underlying event stream (its HTTP connection).

        Safe to call while another thread is blocked reading the stream (a Stop button):
        that reader then ends quietly, keeping ``.text``, instead of raising.
        """
        self._stopping()
        close = getattr(self._source, "close", None)
        if callable(close):
            close()
        with contextlib.suppress(ValueError):  # "already executing": another thread reads
            self._gen.close()

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncTokenStream(_StreamFace, AsyncIterator[Token]):
    """The async twin of :class:`TokenStream`, for aiobotocore's event stream.

    Use :func:`aiter_tokens` (or :func:`common.ainvoke_stream`) to make one, and read it with
    ``async for``. It decodes with the same :class:`StreamDecoder`, so it gives exactly the
    tokens, text, attributes and errors :class:`TokenStream` gives for the same bytes; its
    attributes are those of :class:`TokenStream`. ``await stream.aclose()`` (or
    ``async with``) closes the response body, which ends the HTTP request.

    Raises (while iterating):
        StreamError: or a subclass, with ``partial_text`` set -- see :func:`iter_tokens`;
            aiohttp's broken-connection and timeout errors are mapped as botocore's are.
    """

    _face = "aiter_tokens"

    def __init__(self, event_stream: AsyncIterable[dict[str, Any]], container: str = "auto",
                 *, stop_tokens: Iterable[str] = ()) -> None:
        super().__init__(event_stream, container, stop_tokens)
        if not hasattr(event_stream, "__aiter__"):
            raise TypeError(
                f"aiter_tokens() takes an async event stream (aiobotocore's response['Body'], "
                f"read with `async for`), got {type(event_stream).__name__}. For boto3's "
                "blocking stream use common.iter_tokens()."
            )
        self._gen = self._batches(event_stream.__aiter__())

    def __aiter__(self) -> AsyncTokenStream:
        return self

    async def __anext__(self) -> Token:
        index = self._next
        batch = self._batch
        if index < len(batch):
            self._next = index + 1
            return batch[index]
        batch = await anext(self._gen)
        self._batch = batch
        self._next = 1
        return batch[0]

    async def _batches(self, events: AsyncIterator[Any]) -> AsyncIterator[list[Token]]:
        """Read events; yield the tokens of each that completes any (never an empty list)."""
        decoder = self._decoder
        step = self._step
        while not self.closed:
            try:
                event = await anext(events, _END)
            except BaseException as exc:
                self._source_failed(exc)
                return  # the read broke because close() closed the body: a stop
            batch = step(event)
            if batch is None:
                return
            if batch:
                yield batch
                if decoder.failure is not None:  # held back behind the tokens just given
                    raise decoder.failure

    async def aclose(self) -> None:
        """Stop decoding and close the underlying event stream (its HTTP connection).

        aiobotocore's ``close()`` is a coroutine and is awaited; a plain one is called. Safe to
        call from another task while one awaits the next token (a Stop button): that reader
        then ends quietly, keeping ``.text``, instead of raising.
        """
        self._stopping()
        close = getattr(self._source, "close", None)
        if callable(close):
            result = close()
            if inspect.isawaitable(result):
                await result
        with contextlib.suppress(RuntimeError):  # another task awaits the next event
            await self._gen.aclose()

    async def __aenter__(self) -> AsyncTokenStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# ----------------------------------------------------------------------------- entry points


def iter_tokens(event_stream: Iterable[dict[str, Any]], container: str = "auto", *,
                stop_tokens: Iterable[str] = ()) -> TokenStream:
    """Decode a SageMaker response stream into :class:`Token` objects.

    Args:
        event_stream: ``response["Body"]`` of ``invoke_endpoint_with_response_stream`` (any
            iterable of ``{"PayloadPart": {"Bytes": b"..."}}`` events).
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (sniff the format from the first
            bytes; see the module docstring). Messages-API chunk streams are read under
            every setting.
        stop_tokens: token texts that end an answer, besides :data:`END_TOKENS`: a token
            whose text is exactly one of them comes out with ``special=True`` whatever the
            container marked, and a Messages-API chunk whose content is exactly one is
            dropped -- so neither reaches ``.text`` or :func:`iter_text`.

    Returns:
        A :class:`TokenStream`: iterate it for tokens (special ones included, marked
        ``special=True``); it keeps ``.text``, ``.finish_reason``, ``.generated_text``,
        ``.details`` and ``.format``.

    Raises:
        ValueError: at once, for a ``container`` value that is not one of the three.
        TypeError: at once, when ``event_stream`` is not an iterable of events, or
            ``stop_tokens`` is not a collection of strings.
        StreamError: while iterating, with ``partial_text`` = the text so far:
            :class:`~common.errors.ModelStreamError` / ``InternalStreamFailure`` (SageMaker's
            error events), :class:`~common.errors.StreamTimeoutError` (read timeout),
            :class:`~common.errors.IncompleteStreamError` (connection broken, or the stream
            ended inside a JSON document), :class:`~common.errors.ContainerStreamError` (the
            container's own error event), or :class:`~common.errors.StreamError` itself for
            bytes that are not the expected format.
    """
    return TokenStream(event_stream, container, stop_tokens=stop_tokens)


def iter_text(event_stream: Iterable[dict[str, Any]], container: str = "auto", *,
              stop_tokens: Iterable[str] = ()) -> Iterator[str]:
    """Decode a SageMaker response stream into the texts of its non-special tokens.

    Joined, the pieces are exactly the generated text; empty pieces are left out.

    Args:
        event_stream: as for :func:`iter_tokens`.
        container: as for :func:`iter_tokens`.
        stop_tokens: as for :func:`iter_tokens`.

    Returns:
        An iterator of ``str``.

    Raises:
        ValueError, TypeError: at once, as :func:`iter_tokens`.
        StreamError: while iterating, as :func:`iter_tokens`.
    """
    return _texts(TokenStream(event_stream, container, stop_tokens=stop_tokens))


def _texts(stream: TokenStream) -> Iterator[str]:
    for batch in stream._gen:  # whole batches: no method call per token
        for token in batch:
            if token.text and not token.special:
                yield token.text


def aiter_tokens(event_stream: AsyncIterable[dict[str, Any]], container: str = "auto", *,
                 stop_tokens: Iterable[str] = ()) -> AsyncTokenStream:
    """Decode aiobotocore's response stream into :class:`Token` objects (``async for``).

    The async twin of :func:`iter_tokens`: same arguments, same tokens, attributes and
    errors (aiohttp's ``ClientPayloadError``, ``ServerDisconnectedError`` and timeouts are
    mapped as botocore's are).

    Args:
        event_stream: ``response["Body"]`` of aiobotocore's
            ``invoke_endpoint_with_response_stream`` (an ``AioEventStream``), or any async
            iterable of ``{"PayloadPart": {"Bytes": b"..."}}`` events.
        container, stop_tokens: as for :func:`iter_tokens`.

    Returns:
        An :class:`AsyncTokenStream`.

    Raises:
        ValueError, TypeError: at once, as :func:`iter_tokens` (and for a stream that is not
            async iterable).
        StreamError: while iterating, as :func:`iter_tokens`.
    """
    return AsyncTokenStream(event_stream, container, stop_tokens=stop_tokens)


def aiter_text(event_stream: AsyncIterable[dict[str, Any]], container: str = "auto", *,
               stop_tokens: Iterable[str] = ()) -> AsyncIterator[str]:
    """The async twin of :func:`iter_text`: the texts of the non-special tokens.

    Returns:
        An async iterator of ``str`` (joined: exactly the generated text).

    Raises:
        ValueError, TypeError: at once, as :func:`aiter_tokens`.
        StreamError: while iterating, as :func:`iter_tokens`.
    """
    return _atexts(AsyncTokenStream(event_stream, container, stop_tokens=stop_tokens))


async def _atexts(stream: AsyncTokenStream) -> AsyncIterator[str]:
    async for batch in stream._gen:
        for token in batch:
            if token.text and not token.special:
                yield token.text
