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
* :func:`ainvoke` -- the non-streaming call.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from common.endpoints import (
    DEFAULT_READ_TIMEOUT_S,
    _json_answer,
    _request,
    _resolve_container,
    _retry_pause,
    validate_payload,
)
from common.streaming import AsyncTokenStream, aiter_tokens

if TYPE_CHECKING:
    from common.presets import Preset

__all__ = ["ainvoke", "ainvoke_stream", "async_runtime_client"]

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
        yield client


def _checked_request(endpoint_name: str, payload: Mapping[str, Any], *, streaming: bool,
                     container: str, preset: Preset | None, custom_attributes: str | None,
                     accept: str | None, inference_component: str | None
                     ) -> tuple[str, dict[str, Any]]:
    """Validate as the sync helpers do; return (the container, the invoke call's arguments)."""
    kind = _resolve_container(container, preset)
    body = validate_payload(payload, preset, container=kind, custom_attributes=custom_attributes,
                            streaming=streaming)
    return kind, _request(endpoint_name, body, custom_attributes, accept, inference_component)


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
    helpers do, through the same :func:`common.endpoints._retry_pause`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    for attempt in range(1, max_attempts + 1):
        try:
            return await call()
        except (ClientError, BotoCoreError) as exc:
            pause = _retry_pause(exc, attempt, endpoint_name, max_attempts=max_attempts,
                                 backoff_s=backoff_s, jitter=jitter)
        await sleep(pause)
    raise AssertionError("unreachable: the loop returns or raises")


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
    started -- and the same errors.

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
    kind, kwargs = _checked_request(
        endpoint_name, payload, streaming=True, container=container, preset=preset,
        custom_attributes=custom_attributes, accept=accept,
        inference_component=inference_component)
    response = await _call_with_retries(
        lambda: client.invoke_endpoint_with_response_stream(**kwargs), endpoint_name,
        max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter)
    return aiter_tokens(response["Body"], kind, stop_tokens=stop_tokens)


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
    return _json_answer(raw, response, endpoint_name)
