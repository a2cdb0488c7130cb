"""The chat relay: one static page, and each answer relayed as server-sent events.

Routes:

* ``GET /`` -- the chat page (``static/chat.html`` with ``chat.js`` and ``chat.css``; no
  build step). It uses the notebook chat's CSS classes (``llama2-chat-transcript``,
  ``-input``, ``-send``, ``-stop``, ``-clear``, ``-meter``, ``-notice``, ``-answer``,
  ``-figures``), keeps the conversation in the browser and sends it with each question.
* ``POST /api/chat`` -- ``{"messages": [{"role": "user"|"assistant", "content": str}, ...]}``
  ending with the user's question. The server fits the conversation to the endpoint's limits
  (:class:`common.Conversation`), calls :func:`common.ainvoke_stream`, and answers
  ``text/event-stream`` events: ``meta`` (prompt tokens, limit, turns dropped), ``token``
  (``{"text"}``) per piece, then ``done`` (TTFT, tokens, tokens/s) or ``error``
  (``{"message", "error_id"}``).
* ``GET /healthz`` -- ``ok``.

What it guards:

* **One event loop for every reader**: aiohttp serves the browsers and aiobotocore reads
  SageMaker, so a waiting stream costs a coroutine, not a thread.
* **A browser that goes away closes its SageMaker stream**: the handler is cancelled when
  its connection closes (``handler_cancellation``), and a write to a closed connection
  fails; either way the response body from SageMaker is closed at once.
* **Loopback by default**: the CLI binds ``127.0.0.1`` unless ``--host`` says otherwise;
  on a loopback bind, requests whose ``Host`` is not a loopback name are refused, which
  defeats DNS rebinding.
* **No cross-origin posts**: a ``POST`` whose ``Origin`` is not this server's own is
  refused (403), and ``Content-Type`` must be ``application/json`` (so a cross-site form
  cannot post either).
* **Bounded input**: the request body (``max_body_bytes``), each message
  (``max_message_chars``) and the number of messages (``max_messages``) -- 413/400 with the
  numbers.
* **No AWS internals in the browser**: an AWS or stream error is logged in full with an
  error id; the browser gets a plain sentence and that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from common.conversation import Conversation, TokenCounter
from common.errors import PayloadError, StreamError, ThrottledError

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ChatRelay", "RelaySettings", "build_app"]

LOG = logging.getLogger("common.chat")

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant."

OpenStream = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class RelaySettings:
    """What the relay serves and how much it accepts.

    Attributes:
        endpoint: the SageMaker endpoint name.
        inference_component: the inference component to call, if the endpoint hosts them.
        region: the AWS region (default: the environment's).
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (payload checks and stream format).
        system_prompt: the system prompt of every conversation.
        max_input_tokens / max_total_tokens / max_new_tokens: the endpoint's limits (the
            Llama 2 presets' by default).
        max_message_chars: the longest message accepted.
        max_messages: the most messages in one request's history.
        max_body_bytes: the largest request body.
        parameters: generation parameters for every answer.
        allowed_hosts: ``Host`` names accepted (``None``: any -- for a non-loopback bind).
    """

    endpoint: str
    inference_component: str | None = None
    region: str | None = None
    container: str = "auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_input_tokens: int | None = 3072
    max_total_tokens: int = 4096
    max_new_tokens: int = 512
    max_message_chars: int = 4000
    max_messages: int = 200
    max_body_bytes: int = 256 * 1024
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"temperature": 0.6, "top_p": 0.9})
    allowed_hosts: frozenset[str] | None = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is a loopback host."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ChatRelay:
    """The relay's handlers and its one SageMaker client.

    Args:
        settings: :class:`RelaySettings`.
        open_stream: ``await open_stream(payload) -> async token stream`` (tests inject one);
            default: :func:`common.ainvoke_stream` on one shared
            :func:`common.async_runtime_client`.
        count_tokens: the conversation's token counter (default: the high estimate).
    """

    def __init__(self, settings: RelaySettings, *, open_stream: OpenStream | None = None,
                 count_tokens: TokenCounter | None = None) -> None:
        self.settings = settings
        self._open_stream = open_stream
        self.count_tokens = count_tokens or TokenCounter.estimate()
        self.active = 0

    # -- life cycle
    async def client_context(self, app: Any) -> AsyncIterator[None]:
        """aiohttp ``cleanup_ctx``: one aiobotocore client for every reader."""
        if self._open_stream is not None:
            yield
            return
        from common.aio import ainvoke_stream, async_runtime_client

        settings = self.settings
        async with async_runtime_client(settings.region, max_pool_connections=1000) as client:
            async def open_stream(payload: dict[str, Any]) -> Any:
                return await ainvoke_stream(client, settings.endpoint, payload,
                                            container=settings.container,
                                            inference_component=settings.inference_component)

            self._open_stream = open_stream
            yield
            self._open_stream = None

    # -- checks
    def _check_host(self, request: Any) -> None:
        allowed = self.settings.allowed_hosts
        if allowed is None:
            return
        if _host_name(request.headers.get("Host", "")).lower() not in allowed:
            raise _Refused(403, "This server answers only requests addressed to localhost.")

    def _check_origin(self, request: Any) -> None:
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.headers.get('Host', '')}"
        if origin is not None and origin != own:
            raise _Refused(403, "Cross-origin requests are refused.")
        if request.content_type != "application/json":
            raise _Refused(415, "Send the conversation as application/json.")

    def _messages(self, data: Any) -> list[dict[str, str]]:
        settings = self.settings
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not messages:
            raise _Refused(400, 'Send {"messages": [{"role": "user", "content": "..."}]}.')
        if len(messages) > settings.max_messages:
            raise _Refused(413, f"The conversation has {len(messages)} messages; this server "
                                f"accepts at most {settings.max_messages}. Clear it.")
        checked = []
        for index, message in enumerate(messages):
            expected = "user" if index % 2 == 0 else "assistant"
            if (not isinstance(message, dict) or message.get("role") != expected
                    or not isinstance(message.get("content"), str)):
                raise _Refused(400, f"messages[{index}] must be {{'role': '{expected}', "
                                    "'content': <text>}: questions and answers alternate, "
                                    "starting and ending with a question.")
            content = message["content"]
            if len(content) > settings.max_message_chars:
                raise _Refused(413, f"A message of {len(content)} characters is too long: "
                                    f"this server accepts at most "
                                    f"{settings.max_message_chars}.")
            checked.append({"role": expected, "content": content})
        if checked[-1]["role"] != "user":
            raise _Refused(400, "The last message must be the user's question.")
        return checked

    def _conversation(self, messages: list[dict[str, str]]) -> Conversation:
        settings = self.settings
        conversation = Conversation(
            settings.system_prompt, max_input_tokens=settings.max_input_tokens,
            max_total_tokens=settings.max_total_tokens, max_new_tokens=settings.max_new_tokens,
            container=settings.container, count_tokens=self.count_tokens,
            **dict(settings.parameters))
        conversation.turns = messages[:-1]
        return conversation

    # -- handlers
    async def page(self, request: Any) -> Any:
        """``GET /``, ``/static/chat.js``, ``/static/chat.css``."""
        try:
            self._check_host(request)
        except _Refused as refused:
            return web.json_response({"error": refused.message}, status=refused.status)
        name = request.match_info.get("name", "chat.html")
        types = {"chat.html": "text/html", "chat.js": "text/javascript",
                 "chat.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        text = importlib.resources.files("common.chat").joinpath("static", name).read_text(
            encoding="utf-8")
        return web.Response(text=text, content_type=types[name], headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                       "style-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        })

    async def chat(self, request: Any) -> Any:
        """``POST /api/chat``: relay one answer as server-sent events."""
        try:
            self._check_host(request)
            self._check_origin(request)
            if (request.content_length or 0) > self.settings.max_body_bytes:
                raise _Refused(413, f"The request is {request.content_length} bytes; this "
                                    f"server accepts at most {self.settings.max_body_bytes}.")
            try:
                data = json.loads(await request.read())
            except web.HTTPRequestEntityTooLarge as exc:
                raise _Refused(413, f"The request is over {self.settings.max_body_bytes} "
                                    "bytes.") from exc
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Refused(400, "The request is not JSON.") from exc
            messages = self._messages(data)
            try:
                turn = self._conversation(messages).prepare(messages[-1]["content"])
            except PayloadError as exc:  # our own words about the user's message
                raise _Refused(400, str(exc)) from exc
        except _Refused as refused:
            return web.json_response({"error": refused.message}, status=refused.status)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(_sse("meta", {
            "prompt_tokens": turn.prompt_tokens, "prompt_limit": turn.prompt_limit,
            "dropped_turns": turn.dropped_turns, "notice": turn.notice(),
            "counted_with": turn.counted_with}))
        await self._relay(request, response, turn.payload)
        return response

    async def _relay(self, request: Any, response: Any, payload: dict[str, Any]) -> None:
        from common.metrics import measure

        request_id = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        stream: Any = None
        sent = 0
        self.active += 1
        try:
            assert self._open_stream is not None, "the relay's client is not open"
            stream = await self._open_stream(payload)
            measured = measure(stream, start=started)
            async for token in measured:
                if token.text and not token.special:
                    await response.write(_sse("token", {"text": token.text}))
                    sent += 1
            metrics = measured.metrics
            await response.write(_sse("done", {
                "ttft_ms": None if metrics.ttft_s is None else round(metrics.ttft_s * 1000),
                "tokens": metrics.token_count,
                "tokens_per_s": None if metrics.tokens_per_s is None
                else round(metrics.tokens_per_s, 1),
                "finish_reason": getattr(stream, "finish_reason", None)}))
        except (ConnectionResetError, asyncio.CancelledError):
            LOG.info("request %s: the browser went away after %d pieces; closing its "
                     "SageMaker stream", request_id, sent)
            raise
        except Exception as exc:  # logged in full; the browser gets a sentence and the id
            LOG.error("request %s failed after %d pieces: %s: %s", request_id, sent,
                      type(exc).__name__, exc, exc_info=exc)
            with contextlib.suppress(ConnectionResetError):
                await response.write(_sse("error", {
                    "message": _public_message(exc), "error_id": request_id}))
        finally:
            self.active -= 1
            if stream is not None:
                await stream.aclose()


def _public_message(exc: BaseException) -> str:
    if isinstance(exc, ThrottledError):
        return "The model is busy right now: try again in a moment."
    if isinstance(exc, StreamError):
        return "The answer broke off before it was complete."
    return "The model endpoint could not answer."


RELAY_KEY = web.AppKey("relay", ChatRelay)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(settings: RelaySettings, *, open_stream: OpenStream | None = None,
              count_tokens: TokenCounter | None = None) -> Any:
    """Return the relay's ``aiohttp.web.Application`` (serve it with ``handler_cancellation``
    on, as :func:`serve` does, so a browser that goes away cancels its relay at once).

    Args:
        settings: :class:`RelaySettings`.
        open_stream: as for :class:`ChatRelay` (tests inject one).
        count_tokens: the token counter (:func:`common.token_counter`).
    """
    relay = ChatRelay(settings, open_stream=open_stream, count_tokens=count_tokens)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[RELAY_KEY] = relay
    app.cleanup_ctx.append(relay.client_context)
    app.router.add_get("/", relay.page)
    app.router.add_get("/static/{name}", relay.page)
    app.router.add_post("/api/chat", relay.chat)
    app.router.add_get("/healthz", _healthz)
    return app


async def serve(settings: RelaySettings, *, host: str, port: int,
                count_tokens: TokenCounter | None = None,
                ready: Callable[[str], None] = print) -> None:
    """Serve until cancelled; call ``ready(url)`` once listening (the CLI prints it)."""
    runner = web.AppRunner(build_app(settings, count_tokens=count_tokens),
                           handler_cancellation=True, access_log=LOG)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        ready(f"http://{shown}:{bound[1]}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
