"""The async face of the endpoint helpers, on aiobotocore: for web apps and load tools.

boto3's response stream blocks a thread while it waits for the next token, so a server that
relays many streams needs a thread per user. aiobotocore's ``sagemaker-runtime`` client is
the same botocore client on aiohttp: one event loop can hold hundreds of streams. This
module gives it the same care as :mod:`common.endpoints`:

* :func:`async_runtime_client` -- the client with the same read/connect timeouts and no
  botocore retries (an async context manager, as aiobotocore's clients are);
* :func:`ainvoke_stream` -- checks the payload (:func:`common.validate_payload`), retries
  throttling before the first byte only, maps errors exactly as :func:`common.invoke_stream`
  does, and returns an :class:`~common.streaming.AsyncTokenStream` (``async for``);
* :func:`ainvoke` -- the non-streaming call;
* :func:`aopen_stream` -- :func:`ainvoke_stream` that also hands back the request id and the
  :class:`ResponseFrames` it reads, whose ``arrived`` stamps say when each event's bytes came
  (the load tool times tokens by them).

aiobotocore decodes each event-stream frame with botocore's pure-Python buffer and parser, a
few tens of microseconds a frame, for every token. :class:`ResponseFrames` reads the same
response body itself: it checks each frame's two CRC32s (``zlib.crc32``, as botocore's
``binascii.crc32``) and, for a frame whose header block is byte for byte the one botocore
already read as a ``PayloadPart`` earlier in the stream, hands out ``{"PayloadPart":
{"Bytes": payload}}`` without parsing the headers again. Every other frame -- the first one,
error and exception events, anything unusual -- goes through botocore and aiobotocore
unchanged, so events and errors are exactly theirs.

Use::

    async with common.async_runtime_client() as client:
        stream = await common.ainvoke_stream(client, endpoint_name, payload)
        async with stream:
            async for token in stream:
                ...

aiobotocore is needed only here (``pip install aiobotocore`` or ``common[async]``); the client
core and :mod:`common.endpoints` never import it.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.endpoints import (
    DEFAULT_READ_TIMEOUT_S,
    invocation_kwargs,
    parse_json_answer,
    resolve_container,
    retry_pause,
    validate_payload,
)
from common.streaming import AsyncTokenStream, aiter_tokens

if TYPE_CHECKING:
    from common.presets import Preset

__all__ = ["OpenStream", "ResponseFrames", "ainvoke", "ainvoke_stream", "aopen_stream",
           "async_runtime_client", "open_connections"]

_AIOBOTOCORE_MISSING = (
    "The async helpers need aiobotocore: pip install 'aiobotocore>=3.10,<4' (it is in "
    "requirements.txt, and in the package's 'async' extra)."
)


def _aio_session(session: Any) -> Any:
    try:
        from aiobotocore.session import get_session
    except ImportError as exc:
        raise ImportError(_AIOBOTOCORE_MISSING) from exc
    return session if session is not None else get_session()


@asynccontextmanager
async def async_runtime_client(
    region: str | None = None,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    connect_timeout: float = 10.0,
    session: Any = None,
    max_pool_connections: int = 10,
) -> AsyncIterator[Any]:
    """Open aiobotocore's ``sagemaker-runtime`` client, fit for streaming.

    The async twin of :func:`common.runtime_client`: the same read timeout (a stream that
    sends nothing for ``read_timeout`` seconds raises
    :class:`~common.errors.StreamTimeoutError`), and botocore's retries off
    (``total_max_attempts=1``) because :func:`ainvoke_stream` retries throttling itself,
    before the first byte only. ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` and the usual AWS
    variables are honoured as boto3 honours them.

    Args:
        region: the AWS region (default: the session's).
        read_timeout / connect_timeout: seconds, as for :func:`common.runtime_client`.
        session: an ``aiobotocore.session.AioSession`` (default: a new one).
        max_pool_connections: connections kept open; raise it to the number of streams
            one client keeps open at once (each stream holds one until it ends).

    Yields:
        The client (``await client.invoke_endpoint_with_response_stream(...)``); it is
        closed when the ``async with`` block ends.

    Raises:
        ImportError: when aiobotocore is not installed (with the install command).
    """
    from botocore.config import Config

    config = Config(read_timeout=read_timeout, connect_timeout=connect_timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    max_pool_connections=max_pool_connections)
    async with _aio_session(session).create_client(
            "sagemaker-runtime", region_name=region, config=config) as client:
        await _open_http_session(client)
        yield client


async def _open_http_session(client: Any) -> Any:
    """Build the client's aiohttp session and connector now; return the aiohttp
    ``ClientSession`` its requests will use, or ``None`` where that cannot be done (another
    HTTP backend, a proxy: those open lazily, as before).

    Uses aiobotocore's ``AIOHTTPSession`` (3.x, pinned): ``_get_session(proxy_url)`` is what
    its first request would call.
    """
    http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    get_session = getattr(http_session, "_get_session", None)
    proxies = getattr(http_session, "_proxy_config", None)
    if get_session is None or proxies is None:
        return None
    url = client.meta.endpoint_url
    proxy_url = proxies.proxy_url_for(url)
    if url.startswith("http://") and proxy_url is None:
        http_session._verify = False  # no TLS on this connection: nothing to verify
    session = await get_session(proxy_url)
    return session if proxy_url is None else None


async def open_connections(client: Any, count: int) -> int:
    """Open ``count`` pooled connections to the client's endpoint before they are needed.

    A load tool calls this before a level starts, so that the level's first requests find a
    connection (TCP, and TLS on AWS) in the pool, as a long-running client's do: otherwise
    every first request pays for its connection inside its TTFT, and -- on one event loop --
    also waits for the other new requests' set-up before it is sent. Each connection is
    opened with an unsigned ``GET /`` to the endpoint's host, which invokes nothing (the
    runtime answers it with an error and keeps the connection open for reuse).

    Args:
        client: aiobotocore's client from :func:`async_runtime_client`.
        count: how many connections (at most the client's ``max_pool_connections``).

    Returns:
        How many were opened: 0 where the client's HTTP session is not aiohttp's (another
        backend, a proxy) or the host cannot be reached -- the requests then connect as they
        go, and report whatever stops them.
    """
    session = await _open_http_session(client)
    if session is None or count < 1:
        return 0
    import aiohttp

    url = client.meta.endpoint_url.rstrip("/") + "/"

    async def touch() -> None:
        async with session.get(url, allow_redirects=False) as answer:
            await answer.read()

    outcomes = await asyncio.gather(*(touch() for _ in range(count)), return_exceptions=True)
    for outcome in outcomes:  # a warm-up that fails leaves the requests to connect themselves
        if isinstance(outcome, BaseException) and not isinstance(
                outcome, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
            raise outcome
    return sum(1 for outcome in outcomes if outcome is None)


def _checked_request(endpoint_name: str, payload: Mapping[str, Any], *, streaming: bool,
                     container: str, preset: Preset | None, custom_attributes: str | None,
                     accept: str | None, inference_component: str | None
                     ) -> tuple[str, dict[str, Any]]:
    """Validate as the sync helpers do; return (the container, the invoke call's arguments)."""
    kind = resolve_container(container, preset)
    body = validate_payload(payload, preset, container=kind, custom_attributes=custom_attributes,
                            streaming=streaming)
    return kind, invocation_kwargs(endpoint_name, body, custom_attributes, accept,
                                   inference_component)


async def _call_with_retries(
    call: Callable[[], Awaitable[Any]],
    endpoint_name: str,
    *,
    max_attempts: int,
    backoff_s: float,
    sleep: Callable[[float], Awaitable[Any]],
    jitter: Callable[[], float],
) -> Any:
    """Await ``call``; retry throttling with backoff and jitter; map errors (as the sync
    helpers do, through the same :func:`common.endpoints.retry_pause`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    for attempt in range(1, max_attempts + 1):
        try:
            return await call()
        except (ClientError, BotoCoreError) as exc:
            pause = retry_pause(exc, attempt, endpoint_name, max_attempts=max_attempts,
                                backoff_s=backoff_s, jitter=jitter)
        await sleep(pause)
    raise AssertionError("unreachable: the loop returns or raises")


# --------------------------------------------------------------------------- frames

_PRELUDE = struct.Struct(">III")  # total length, headers length, prelude CRC
_CRC = struct.Struct(">I")
_PRELUDE_BYTES = 12
_FRAME_OVERHEAD = 16  # the prelude and the message CRC
# botocore.eventstream's limits: a prelude beyond them is refused by botocore, with its errors
_MAX_HEADERS_LENGTH = 128 * 1024
_MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024


class _Failure:
    """A failure queued behind the events that came before it in the same read."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class ResponseFrames:
    """The events of aiobotocore's response stream, and when their bytes arrived.

    An async iterator of the same events ``async for event in response["Body"]`` gives
    (``{"PayloadPart": {"Bytes": ...}}``; an error or exception event raises botocore's
    ``EventStreamError``), read from the HTTP body in as few steps as the bytes allow: every
    chunk that arrives is cut into frames at once, and a ``PayloadPart`` frame whose header
    block repeats the last one botocore parsed is handed out after its CRC checks alone (see
    the module docstring). Where the body is not aiobotocore's ``AioEventStream`` over aiohttp
    (a test's fake, another backend), the events are the body's own.

    Attributes:
        arrived: the ``clock()`` reading (``time.perf_counter`` seconds by default) taken as
            soon as the bytes of the latest event handed out were read from the connection
            -- before any parsing -- or ``None`` before any arrived.
        fast: whether the frames are read from the HTTP body directly.
    """

    def __init__(self, body: Any, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._body = body
        self._clock = clock
        content = getattr(getattr(body, "_raw_stream", None), "content", None)
        self._read = getattr(content, "readany", None)
        self._parse = getattr(body, "_parse_event", None)  # aiobotocore's per-event parse
        self.fast = callable(self._read) and callable(self._parse)
        self._events: AsyncIterator[Any] | None = None if self.fast else body.__aiter__()
        self._ready: deque[Any] = deque()
        self._pending = b""
        self._payload_headers: bytes | None = None
        self.arrived: float | None = None

    def now(self) -> float:
        """When the latest event's bytes arrived (the clock now, before any did): the clock
        to hand :func:`common.measure` so that each token is timed by its bytes."""
        arrived = self.arrived
        return self._clock() if arrived is None else arrived

    def __aiter__(self) -> ResponseFrames:
        return self

    async def __anext__(self) -> Any:
        ready = self._ready
        while not ready:
            if self._events is not None:
                event = await self._events.__anext__()
                self.arrived = self._clock()
                return event
            chunk = await self._read()
            if not chunk:  # the end; a partial frame left over is dropped, as botocore does
                raise StopAsyncIteration
            self.arrived = self._clock()
            await self._split(chunk)
        item = ready.popleft()
        if type(item) is _Failure:
            ready.clear()
            raise item.error
        return item

    async def _split(self, chunk: bytes) -> None:
        """Queue every complete frame in the bytes so far; keep the rest for the next read."""
        data = self._pending + chunk if self._pending else chunk
        view = memoryview(data)
        size, start = len(data), 0
        known = self._payload_headers
        crc32 = zlib.crc32
        try:
            while size - start >= _PRELUDE_BYTES:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(data, start)
                if (crc32(view[start:start + 8]) != prelude_crc
                        or headers_length > _MAX_HEADERS_LENGTH
                        or total - headers_length - _FRAME_OVERHEAD > _MAX_PAYLOAD_LENGTH
                        or total < headers_length + _FRAME_OVERHEAD):
                    await self._by_botocore(data[start:])  # raises botocore's error
                    start = size
                    break
                end = start + total
                if end > size:
                    break  # the frame's rest is still on its way
                body_end = end - 4
                if (known is not None and headers_length == len(known)
                        and data.startswith(known, start + _PRELUDE_BYTES)
                        and crc32(view[start + 8:body_end], prelude_crc)
                        == _CRC.unpack_from(data, body_end)[0]):
                    self._ready.append(
                        {"PayloadPart": {"Bytes": data[start + _PRELUDE_BYTES + headers_length:
                                                       body_end]}})
                else:
                    await self._by_botocore(data[start:end])
                    known = self._payload_headers
                start = end
        except Exception as exc:  # raised once the events before it are handed out
            self._ready.append(_Failure(exc))
            start = size
        finally:
            view.release()
        self._pending = data[start:]

    async def _by_botocore(self, frame: bytes) -> None:
        """Decode one frame (or a broken prelude) exactly as aiobotocore would; queue the event.

        Raises:
            botocore's ``ChecksumMismatch``, ``InvalidHeadersLength``,
            ``InvalidPayloadLength`` or ``EventStreamError``, as botocore raises them.
        """
        from botocore.eventstream import EventStreamBuffer

        buffer = EventStreamBuffer()
        buffer.add_data(frame)
        message = buffer.next()  # checks the prelude and both CRCs; raises what botocore raises
        parsed = await self._parse(message)  # type: ignore[misc]  # raises EventStreamError
        if not parsed:
            return  # an event type the service model does not know: skipped, as aiobotocore does
        self._ready.append(parsed)
        if parsed == {"PayloadPart": {"Bytes": message.payload}}:
            self._payload_headers = frame[_PRELUDE_BYTES:_PRELUDE_BYTES
                                          + message.prelude.headers_length]

    def close(self) -> Any:
        """Close the response body (its HTTP connection); returns what the body's close does."""
        return self._body.close()


# --------------------------------------------------------------------------- invoking


@dataclass(frozen=True)
class OpenStream:
    """A response stream that has started: what :func:`aopen_stream` returns.

    Attributes:
        tokens: the decoded stream (:class:`~common.streaming.AsyncTokenStream`).
        frames: the :class:`ResponseFrames` it reads (``frames.arrived``, ``frames.now``).
        request_id: the response's ``x-amzn-RequestId`` (``ResponseMetadata.RequestId``).
    """

    tokens: AsyncTokenStream
    frames: ResponseFrames
    request_id: str | None


async def aopen_stream(
    client: Any,
    endpoint_name: str,
    payload: Mapping[str, Any],
    *,
    container: str = "auto",
    preset: Preset | None = None,
    custom_attributes: str | None = None,
    accept: str | None = None,
    inference_component: str | None = None,
    stop_tokens: Iterable[str] = (),
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> OpenStream:
    """:func:`ainvoke_stream`, returning also the request id and the frames it reads.

    The arguments, the checks, the retries and the errors are those of
    :func:`ainvoke_stream`. A load tool times each token by ``frames.now`` (when its bytes
    arrived) rather than when the decoder handed it out.

    Returns:
        An :class:`OpenStream`.

    Raises:
        As :func:`ainvoke_stream`.
    """
    kind, kwargs = _checked_request(
        endpoint_name, payload, streaming=True, container=container, preset=preset,
        custom_attributes=custom_attributes, accept=accept,
        inference_component=inference_component)
    response = await _call_with_retries(
        lambda: client.invoke_endpoint_with_response_stream(**kwargs), endpoint_name,
        max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter)
    frames = ResponseFrames(response["Body"])
    tokens = aiter_tokens(frames, kind, stop_tokens=stop_tokens)
    return OpenStream(tokens, frames, response.get("ResponseMetadata", {}).get("RequestId"))


async def ainvoke_stream(
    client: Any,
    endpoint_name: str,
    payload: Mapping[str, Any],
    *,
    container: str = "auto",
    preset: Preset | None = None,
    custom_attributes: str | None = None,
    accept: str | None = None,
    inference_component: str | None = None,
    stop_tokens: Iterable[str] = (),
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> AsyncTokenStream:
    """Send ``payload`` with ``InvokeEndpointWithResponseStream``; return its async stream.

    The async twin of :func:`common.invoke_stream`, with the same checks, the same retry
    rule -- ``ThrottlingException``, ``ServiceUnavailable`` and HTTP 429/503 before the
    response starts are retried, up to ``max_attempts`` calls, after
    ``backoff_s * 2**(n-1) * (1 + jitter())`` seconds; nothing is retried once it has
    started -- and the same errors. The response is read by :class:`ResponseFrames`.

    Args:
        client: aiobotocore's ``sagemaker-runtime`` client (:func:`async_runtime_client`).
        endpoint_name: the endpoint.
        payload: the request body (``"stream": true`` required).
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (default: the preset's, else sniffed).
        preset: the endpoint's preset, to check the token budget.
        custom_attributes: the ``CustomAttributes`` header.
        accept: the ``Accept`` header (left out by default).
        inference_component: the inference component to call (``InferenceComponentName``).
        stop_tokens: extra end-of-answer token texts, as for :func:`common.iter_tokens`.
        max_attempts / backoff_s / sleep / jitter: the retry policy (``sleep`` is awaited).

    Returns:
        :func:`common.aiter_tokens` of the response body: an
        :class:`~common.streaming.AsyncTokenStream`. Read it with ``async for``; close it
        early with ``await stream.aclose()`` (or ``async with stream``).

    Raises:
        PayloadError: the payload fails :func:`common.validate_payload`, or
            ``inference_component`` is not a name.
        ModelInvocationError, EndpointNotFoundError, ThrottledError, InvocationError: before
            the stream starts, as :func:`common.invoke_stream`.
        StreamError: while iterating the returned stream, as :func:`common.iter_tokens`.
    """
    opened = await aopen_stream(
        client, endpoint_name, payload, container=container, preset=preset,
        custom_attributes=custom_attributes, accept=accept,
        inference_component=inference_component, stop_tokens=stop_tokens,
        max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter)
    return opened.tokens


async def ainvoke(
    client: Any,
    endpoint_name: str,
    payload: Mapping[str, Any],
    *,
    container: str = "auto",
    preset: Preset | None = None,
    custom_attributes: str | None = None,
    accept: str | None = "application/json",
    inference_component: str | None = None,
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> Any:
    """Send ``payload`` with ``InvokeEndpoint`` (no streaming); return the parsed JSON answer.

    The async twin of :func:`common.invoke`: checks, retries and errors as
    :func:`ainvoke_stream`; the body must not say ``"stream": true``.

    Raises:
        PayloadError, ModelInvocationError, EndpointNotFoundError, ThrottledError: as
            :func:`ainvoke_stream`.
        InvocationError: also when the answer is not JSON.
    """
    _, kwargs = _checked_request(
        endpoint_name, payload, streaming=False, container=container, preset=preset,
        custom_attributes=custom_attributes, accept=accept,
        inference_component=inference_component)
    response = await _call_with_retries(
        lambda: client.invoke_endpoint(**kwargs), endpoint_name,
        max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter)
    async with response["Body"] as answer:
        raw = await answer.read()
    return parse_json_answer(raw, response, endpoint_name)
