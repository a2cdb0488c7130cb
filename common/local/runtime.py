"""The ``sagemaker-runtime`` HTTP server of the local stand-in (the data plane).

It serves botocore's two invoke routes (service model ``sagemaker-runtime``, protocol
``rest-json``):

* ``POST /endpoints/{EndpointName}/invocations`` -- ``InvokeEndpoint``: the container's whole
  answer as the body, its content type as ``Content-Type``.
* ``POST /endpoints/{EndpointName}/invocations-response-stream`` --
  ``InvokeEndpointWithResponseStream``: ``Content-Type: application/vnd.amazon.eventstream``,
  the container's content type in ``X-Amzn-SageMaker-Content-Type``, chunked transfer
  encoding, and one ``PayloadPart`` frame flushed per container write (per token) as it is
  produced -- except the stream's first write, which goes out as two ``PayloadPart`` frames
  cut inside its first line (:func:`cut_first_part`), because SageMaker's part boundaries are
  arbitrary and a decoder must join a line split across parts. The bytes are the same; only
  where one part ends and the next begins differs.

Both answer ``x-Amzn-Invoked-Production-Variant``, ``x-amzn-RequestId`` and
``X-Local-Request-Id`` (the key of this server's request log and frame timings). Errors use
SageMaker's JSON error shape: status, ``x-amzn-ErrorType`` and ``{"Message": ...}``
(``ModelError`` adds ``OriginalStatusCode``, ``OriginalMessage``, ``LogStreamArn``), so boto3
raises the same ``ClientError`` codes as on AWS.

The server binds to a loopback address only and answers 403 to any request whose ``Host`` is
not a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``), which keeps web pages from
reaching it through DNS rebinding.

Local routes (not SageMaker's): ``GET``/``DELETE /_local/requests`` (the request log),
``GET /_local/timings/{request_id}`` (when each token's frame was sent, ``perf_counter_ns``),
``POST /_local/fault`` with ``{"spec": "..." | null}``, ``GET /_local/fault``,
``GET /_local/ping``.

Fault injection
---------------
Per request: ``local-fault=SPEC`` in ``CustomAttributes`` (a ``;``- or ``,``-separated list;
the other attributes are left for the container). Per server: :meth:`RuntimeServer.set_fault`
or ``POST /_local/fault``; a server fault applies to every later request until cleared,
except ``throttle`` and ``unavailable``, which are used up after COUNT requests. ``SPEC`` is
one fault or several joined with ``+``::

    slow-first-token:SECONDS          wait SECONDS more before the first token
    model-stream-error@N[:CODE]       after N tokens, a ModelStreamError event (ErrorCode CODE:
                                      StreamBroken (default) or ModelInvocationTimeExceeded),
                                      then the stream ends
    internal-stream-failure@N         after N tokens, an InternalStreamFailure event, then end
    container-error@N                 after N tokens, the container's own error event (TGI
                                      {"error", "error_type"}, LMI vLLM's {"error": {...}})
    drop@N                            after N tokens, close the TCP connection mid-chunk
    stall@N                           after N tokens, send nothing more; keep the connection
                                      open until the client goes away (or 120 s)
    throttle[:COUNT]                  ThrottlingException (HTTP 400) before the stream
    unavailable[:COUNT]               ServiceUnavailable (HTTP 503) before the stream
    model-error[:STATUS]              ModelError (HTTP 424) with OriginalStatusCode STATUS
                                      (default 500) before the stream
    chunking[:SEED]                   cut every payload into PayloadParts at random byte
                                      positions (seeded), to exercise decoders (instead of
                                      the one cut in the first line of every stream)

``InvokeEndpoint`` has no event stream: there ``model-stream-error`` and
``internal-stream-failure`` do nothing, ``drop`` closes the connection before any response,
``stall`` never answers (so the invocation times out, below), ``container-error`` is the
container's error status (ModelError).

Time limit: SageMaker gives a container 60 seconds to answer ``InvokeEndpoint`` (botocore's
``sagemaker-runtime`` documentation: "A customer's model containers must respond to requests
within 60 seconds"); past it the
caller gets ``ModelError`` (HTTP 424) with ``OriginalStatusCode`` 0 and "Your invocation timed
out while waiting for a response from container primary" (the text quoted in
aws/amazon-sagemaker-examples#799, aws-samples/host-yolov8-on-sagemaker-endpoint#21 and
RamVegiraju/SageMaker-Deployment#3). The server does the same after
:attr:`RuntimeServer.invoke_timeout_s` real seconds (60 by default) from the request's arrival
(a queue for an inference component's copy included); the streaming route has no such limit
(SageMaker's streaming time limit is not published).
An invalid spec is answered with a 400 ``ValidationError`` that quotes this grammar.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import ipaddress
import json
import random
import re
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from common.errors import PayloadError
from common.local import containers
from common.local.backends import Backend, GeneratedToken
from common.local.components import COMPONENT_HEADER, Admission, InvocationRejected
from common.local.eventstream import encode_exception, encode_payload_part

__all__ = [
    "CUSTOM_ATTRIBUTES_MAX",
    "DEFAULT_ACCOUNT_ID",
    "FAULT_GRAMMAR",
    "INVOKE_TIMEOUT_MESSAGE",
    "INVOKE_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "EndpointInfo",
    "Fault",
    "RuntimeServer",
    "cut_first_part",
    "parse_fault_spec",
    "split_custom_attributes",
]

DEFAULT_ACCOUNT_ID = "123456789012"
INVOKE_TIMEOUT_S = 60.0
"""How long a container has to answer ``InvokeEndpoint`` (real seconds), as on SageMaker."""
INVOKE_TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review "
    "the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try "
    "again."
)
MAX_BODY_BYTES = 6_291_456
CUSTOM_ATTRIBUTES_MAX = 1024
FAULT_KEY = "local-fault"
STALL_LIMIT_S = 120.0
_TIMINGS_KEPT = 1000

FAULT_GRAMMAR = (
    "SPEC is FAULT or FAULT+FAULT+...; FAULT is one of: slow-first-token:SECONDS, "
    "model-stream-error@N[:ModelInvocationTimeExceeded|StreamBroken], "
    "internal-stream-failure@N, container-error@N, drop@N, stall@N, throttle[:COUNT], "
    "unavailable[:COUNT], model-error[:STATUS], chunking[:SEED]"
)

_FAULT_PATTERNS: dict[str, re.Pattern[str]] = {
    "slow-first-token": re.compile(r"slow-first-token:(?P<seconds>\d+(?:\.\d+)?)"),
    "model-stream-error": re.compile(
        r"model-stream-error@(?P<after>\d+)(?::(?P<code>ModelInvocationTimeExceeded|StreamBroken))?"
    ),
    "internal-stream-failure": re.compile(r"internal-stream-failure@(?P<after>\d+)"),
    "container-error": re.compile(r"container-error@(?P<after>\d+)"),
    "drop": re.compile(r"drop@(?P<after>\d+)"),
    "stall": re.compile(r"stall@(?P<after>\d+)"),
    "throttle": re.compile(r"throttle(?::(?P<count>[1-9]\d*))?"),
    "unavailable": re.compile(r"unavailable(?::(?P<count>[1-9]\d*))?"),
    "model-error": re.compile(r"model-error(?::(?P<status>[1-5]\d\d))?"),
    "chunking": re.compile(r"chunking(?::(?P<seed>\d+))?"),
}
_IN_STREAM = ("model-stream-error", "internal-stream-failure", "container-error", "drop",
              "stall")
_STREAM_ERROR_MESSAGES = {
    "ModelInvocationTimeExceeded": "Model invocation time exceeded the time limit for "
                                   "streaming responses.",
    "StreamBroken": "The model container's response stream broke unexpectedly.",
}


@dataclass(frozen=True)
class EndpointInfo:
    """What the runtime needs to know about an endpoint (the control plane's ``lookup``).

    Attributes:
        name: the endpoint name.
        status: ``Creating``, ``InService``, ``Updating``, ``Failed``, ``Deleting``...
        image: the model's container image URI (picks TGI or LMI).
        environment: the model container's environment variables.
        variant: the production variant name answered in ``x-Amzn-Invoked-Production-Variant``.
    """

    name: str
    status: str
    image: str
    environment: dict[str, str] = field(default_factory=dict)
    variant: str = "AllTraffic"


@dataclass(frozen=True)
class Fault:
    """One parsed fault (see the module docstring for the grammar).

    Attributes:
        kind: the fault's name (``"drop"``, ``"throttle"``...).
        after: N, the tokens sent before an in-stream fault.
        seconds: the extra delay of ``slow-first-token``.
        code: the ``ErrorCode`` of ``model-stream-error``.
        status: the ``OriginalStatusCode`` of ``model-error``.
        count: how many requests a server-level ``throttle`` / ``unavailable`` affects.
        seed: the random seed of ``chunking``.
    """

    kind: str
    after: int | None = None
    seconds: float | None = None
    code: str | None = None
    status: int | None = None
    count: int | None = None
    seed: int | None = None

    def __str__(self) -> str:
        text = self.kind
        if self.after is not None:
            text += f"@{self.after}"
        for value in (self.seconds, self.code, self.status, self.count, self.seed):
            if value is not None:
                text += f":{value}"
        return text


def cut_first_part(data: bytes) -> list[bytes]:
    """Return the first write of a response stream as the ``PayloadPart`` payloads to send.

    SageMaker does not promise that a part holds whole lines ("usually ... a full json, this
    is not guaranteed", AWS's streaming launch post): a line may arrive in two parts. The
    stand-in makes that happen in every stream, early and deterministically, so that a
    reader's decoder meets it at once: the first write is cut in the middle of its first line
    (a write of one byte, or a first line of one byte, is sent whole). Joined, the parts are
    ``data``.
    """
    end = data.find(b"\n")
    line = len(data) if end < 0 else end
    if line < 2:
        return [data]
    cut = line // 2
    return [data[:cut], data[cut:]]


def parse_fault_spec(spec: str) -> list[Fault]:
    """Parse a fault spec (see the module docstring).

    Returns:
        The faults, in order.

    Raises:
        PayloadError: the spec does not follow :data:`FAULT_GRAMMAR`.
    """
    faults = []
    for part in str(spec).strip().split("+"):
        part = part.strip()
        kind = next((k for k, p in _FAULT_PATTERNS.items() if p.fullmatch(part)), None)
        if kind is None:
            raise PayloadError(f"invalid fault spec {spec!r} (at {part!r}). {FAULT_GRAMMAR}")
        groups = _FAULT_PATTERNS[kind].fullmatch(part).groupdict()  # type: ignore[union-attr]
        faults.append(Fault(
            kind=kind,
            after=int(groups["after"]) if groups.get("after") else None,
            seconds=float(groups["seconds"]) if groups.get("seconds") else None,
            code=groups.get("code") or ("StreamBroken" if kind == "model-stream-error"
                                        else None),
            status=int(groups["status"]) if groups.get("status") else (
                500 if kind == "model-error" else None),
            count=int(groups["count"]) if groups.get("count") else (
                1 if kind in ("throttle", "unavailable") else None),
            seed=int(groups["seed"]) if groups.get("seed") else (
                0 if kind == "chunking" else None),
        ))
    return faults


def split_custom_attributes(value: str | None) -> tuple[str | None, str]:
    """Split a ``CustomAttributes`` value into (the ``local-fault`` spec, the rest).

    The attributes are ``key=value`` items separated by ``;`` or ``,``; the rest keeps the
    other items and their separators' order.
    """
    if not value:
        return None, value or ""
    spec = None
    kept = []
    for item in re.split(r"[;,]", value):
        key, _, item_value = item.partition("=")
        if key.strip() == FAULT_KEY:
            spec = item_value.strip()
        elif item.strip():
            kept.append(item.strip())
    return spec, ";".join(kept)


def _is_loopback_host(host_header: str | None) -> bool:
    if not host_header:
        return False
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ServerError(Exception):
    """An error response the handler sends (SageMaker's JSON error shape)."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


class _ConnectionGone(Exception):
    """The handler closed (or lost) the connection on purpose; nothing more can be sent."""


class _InvocationTimedOut(Exception):
    """An ``InvokeEndpoint`` passed :data:`INVOKE_TIMEOUT_S` before the container answered."""


# --------------------------------------------------------------------------- the server


class RuntimeServer:
    """The local ``sagemaker-runtime`` server.

    Args:
        lookup: ``lookup(endpoint_name) -> EndpointInfo | None`` (the control plane).
        backend: what generates the tokens (:class:`common.local.backends.Backend`).
        host: a loopback address to bind (``127.0.0.1`` by default; ``localhost`` is
            accepted and bound as ``127.0.0.1``).
        port: the port (0: a free one).
        account_id: the account named in error messages and log stream ARNs.
        region: the region named in error messages and log stream ARNs.
        router: ``router(endpoint_name, inference_component_name_or_None)`` -> an
            :class:`~common.local.components.Admission` for a request to an inference
            component, ``None`` for a plain endpoint; raises
            :class:`~common.local.components.InvocationRejected` (the control plane's
            ``ComponentManager.admit``). ``None``: the header is ignored.
        invoke_timeout_s: real seconds a container has to answer ``InvokeEndpoint`` before
            the caller gets SageMaker's timeout ``ModelError`` (:data:`INVOKE_TIMEOUT_S`).

    Raises:
        ValueError: ``host`` is not a loopback address.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        lookup: Callable[[str], EndpointInfo | None],
        *,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
        router: Callable[[str, str | None], Admission | None] | None = None,
        invoke_timeout_s: float = INVOKE_TIMEOUT_S,
    ) -> None:
        if host.lower() == "localhost":
            host = "127.0.0.1"
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback or ipaddress.ip_address(host).version != 4:
            raise ValueError(f"the runtime server binds to an IPv4 loopback address only, not "
                             f"{host!r}: use host='127.0.0.1'")
        self.lookup = lookup
        self.backend = backend
        self.host = host
        self.account_id = account_id
        self.region = region
        self.router = router
        self.invoke_timeout_s = float(invoke_timeout_s)
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._log: list[dict[str, Any]] = []
        self._timings: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._fault_spec: str | None = None
        self._faults: list[Fault] = []
        self._remaining: dict[int, int] = {}

    # -- lifecycle
    def start(self) -> RuntimeServer:
        """Bind and serve in a background thread; return ``self``.

        Raises:
            RuntimeError: the server is already running.
            OSError: the port cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("the runtime server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"sagemaker-runtime:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and join every thread (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()  # joins the request threads (block_on_close)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> RuntimeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` -- the value for ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.

        Raises:
            RuntimeError: the server is not running.
        """
        if self._httpd is None:
            raise RuntimeError("the runtime server is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    # -- request log and timings
    def requests(self) -> list[dict[str, Any]]:
        """Every request received so far, oldest first (copies).

        Each record has ``request_id``, ``time`` (epoch seconds), ``operation``
        (``InvokeEndpoint``, ``InvokeEndpointWithResponseStream`` or ``Local``), ``method``,
        ``path``, ``endpoint``, ``headers`` (``Authorization`` reduced to its scheme),
        ``body`` (parsed JSON, else text, else ``None``), ``body_bytes``,
        ``custom_attributes`` (without the fault key), ``faults``, and once answered
        ``status``, ``error_code``, ``container``, ``tokens`` (sent), ``outcome``,
        ``ignored_parameters`` (parameters the container accepted but ignores) and
        ``inference_component`` (the ``InferenceComponentName`` header, if any). A client
        that closes the connection mid-stream stops the generation for its request, as TGI
        and DJL Serving do: the record then has ``client_closed: True`` and an ``outcome``
        that names the tokens sent.
        """
        with self._lock:
            return copy.deepcopy(self._log)

    def clear_requests(self) -> None:
        """Forget the request log and the timings."""
        with self._lock:
            self._log.clear()
            self._timings.clear()

    def timings(self, request_id: str) -> dict[str, Any] | None:
        """When a request's frames were sent, or ``None`` for an unknown id.

        Returns:
            ``{"request_id", "received_ns", "headers_ns", "frames": [[token_index, ns],
            ...], "done_ns"}``, all ``time.perf_counter_ns()`` values; ``token_index``
            counts tokens from 1.
        """
        with self._lock:
            record = self._timings.get(request_id)
            return copy.deepcopy(record) if record is not None else None

    # -- faults
    def set_fault(self, spec: str | None) -> None:
        """Set the fault for every later request (``None`` clears it).

        Raises:
            PayloadError: ``spec`` does not follow :data:`FAULT_GRAMMAR`.
        """
        faults = parse_fault_spec(spec) if spec else []
        with self._lock:
            self._fault_spec = spec or None
            self._faults = faults
            self._remaining = {i: f.count for i, f in enumerate(faults)
                               if f.kind in ("throttle", "unavailable") and f.count}

    @property
    def fault(self) -> str | None:
        """The server-level fault spec now in force, or ``None``."""
        with self._lock:
            return self._fault_spec

    def _take_server_faults(self) -> list[Fault]:
        with self._lock:
            taken = []
            for i, fault in enumerate(self._faults):
                if i in self._remaining:
                    if self._remaining[i] <= 0:
                        continue
                    self._remaining[i] -= 1
                taken.append(fault)
            if self._remaining and all(v <= 0 for v in self._remaining.values()) and all(
                    i in self._remaining for i in range(len(self._faults))):
                self._faults, self._fault_spec, self._remaining = [], None, {}
            return taken

    # -- internals used by the handler
    def _record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._log.append(entry)
        return entry

    def _update(self, entry: dict[str, Any], **values: Any) -> None:
        with self._lock:
            entry.update(values)

    def _timing(self, request_id: str) -> dict[str, Any]:
        record = {"request_id": request_id, "received_ns": time.perf_counter_ns(),
                  "headers_ns": None, "frames": [], "done_ns": None}
        with self._lock:
            self._timings[request_id] = record
            while len(self._timings) > _TIMINGS_KEPT:
                self._timings.popitem(last=False)
        return record

    def _mark(self, record: dict[str, Any], key: str, value: Any = None) -> None:
        now = time.perf_counter_ns()
        with self._lock:
            if key == "frames":
                record["frames"].append([value, now])
            elif record.get(key) is None:
                record[key] = now


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    # Many streams open their connections at once (botocore pools 10 per client, the load
    # tool runs dozens of clients); Python's default backlog of 5 dropped some of them.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type, owner: RuntimeServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open connection so that its handler thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | _ConnectionGone | TimeoutError):
            return  # the client (or a drop fault) closed the connection: nothing to report
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- the handler


_ROUTE = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<op>invocations|invocations-response-stream)$")
_OPERATIONS = {"invocations": "InvokeEndpoint",
               "invocations-response-stream": "InvokeEndpointWithResponseStream"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-sagemaker-runtime"

    def version_string(self) -> str:
        """The ``Server`` header."""
        return self.server_version
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the in-process request log, not to stderr."""

    @property
    def owner(self) -> RuntimeServer:
        return self.server.owner

    # -- entry points
    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        request_id = str(uuid.uuid4())
        self.request_id = request_id
        path = urlsplit(self.path).path
        try:
            if not _is_loopback_host(self.headers.get("Host")):
                self.close_connection = True
                raise _ServerError(
                    403, "AccessDeniedException",
                    f"Host {self.headers.get('Host')!r} is not a loopback name: the local "
                    "stand-in answers only requests addressed to localhost, 127.x.x.x or "
                    "[::1].")
            route = _ROUTE.match(path)
            if route and self.command == "POST":
                self._invoke(unquote(route["name"]), _OPERATIONS[route["op"]], request_id)
            elif path.startswith("/_local/"):
                self._local(path)
            else:
                self._read_body()
                raise _ServerError(404, "UnknownOperationException",
                                   f"{self.command} {path} is not a sagemaker-runtime operation")
        except _ServerError as error:
            self._send_json_error(error)

    # -- helpers
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES + 1024 * 1024:
            self.close_connection = True
            raise _ServerError(413, "ValidationError",
                               f"Request body of {length} bytes exceeds the limit of "
                               f"{MAX_BODY_BYTES} bytes.")
        return self.rfile.read(length) if length else b""

    def _send_bytes(self, status: int, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", self.request_id)
        self.send_header("X-Local-Request-Id", self.request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json_error(self, error: _ServerError) -> None:
        body = json.dumps({"Message": error.message, **error.fields}).encode()
        self._send_bytes(error.status, body, "application/json",
                         {"x-amzn-ErrorType": error.code})

    def _local(self, path: str) -> None:
        owner = self.owner
        body = self._read_body()
        if path == "/_local/requests" and self.command == "GET":
            self._send_bytes(200, json.dumps(owner.requests()).encode(), "application/json")
        elif path == "/_local/requests" and self.command == "DELETE":
            owner.clear_requests()
            self._send_bytes(204, b"", "application/json")
        elif path.startswith("/_local/timings/") and self.command == "GET":
            record = owner.timings(path.rsplit("/", 1)[1])
            if record is None:
                self._send_json_error(_ServerError(404, "ResourceNotFound",
                                                   "no timings for that request id"))
            else:
                self._send_bytes(200, json.dumps(record).encode(), "application/json")
        elif path == "/_local/fault" and self.command == "POST":
            try:
                spec = json.loads(body or b"{}").get("spec")
                owner.set_fault(spec)
            except (ValueError, AttributeError) as exc:
                self._send_json_error(_ServerError(400, "ValidationError", str(exc)))
                return
            self._send_bytes(200, json.dumps({"spec": owner.fault}).encode(), "application/json")
        elif path == "/_local/fault" and self.command == "GET":
            self._send_bytes(200, json.dumps({"spec": owner.fault}).encode(), "application/json")
        elif path == "/_local/ping":
            self._send_bytes(200, json.dumps({"status": "ok",
                                              "backend": owner.backend.label}).encode(),
                             "application/json")
        else:
            self._send_json_error(_ServerError(404, "UnknownOperationException",
                                               f"{self.command} {path} is not a local route"))

    def _headers_for_log(self) -> dict[str, str]:
        headers = {}
        for name, value in self.headers.items():
            if name.lower() == "authorization":
                value = value.split(" ", 1)[0] + " (redacted)"
            elif name.lower() == "x-amz-security-token":
                value = "(redacted)"
            headers[name] = value
        return headers

    # -- invocations
    def _invoke(self, name: str, operation: str, request_id: str) -> None:
        owner = self.owner
        self._deadline = (None if operation == "InvokeEndpointWithResponseStream"
                          else time.monotonic() + owner.invoke_timeout_s)
        timing = owner._timing(request_id)
        entry = owner._record({
            "request_id": request_id, "time": time.time(), "operation": operation,
            "method": self.command, "path": self.path, "endpoint": name,
            "headers": self._headers_for_log(), "body": None, "body_bytes": 0,
            "custom_attributes": None, "faults": [], "status": None, "error_code": None,
            "container": None, "tokens": 0, "outcome": None, "ignored_parameters": [],
            "inference_component": None,
            "served_model": None,
        })
        try:
            body = self._read_body()
            owner._update(entry, body=_decode_body(body), body_bytes=len(body))
            self._check_and_run(name, operation, body, entry, timing)
        except _ServerError as error:
            owner._update(entry, status=error.status, error_code=error.code,
                          outcome="rejected")
            self._send_json_error(error)
        except containers.ContainerRejected as rejected:
            owner._update(entry, status=424, error_code="ModelError",
                          outcome=f"container answered {rejected.status}")
            self._send_json_error(self._model_error(name, rejected.status, rejected.body))
        except _ConnectionGone:
            self.close_connection = True
        except ConnectionError:
            self.close_connection = True
            owner._update(entry, client_closed=True, outcome=(
                f"client closed the stream after {entry.get('tokens', 0)} tokens; "
                "generation stopped"))
        finally:
            owner._mark(timing, "done_ns")

    def _check_and_run(self, name: str, operation: str, body: bytes, entry: dict[str, Any],
                       timing: dict[str, Any]) -> None:
        owner = self.owner
        attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attributes is not None and (len(attributes) > CUSTOM_ATTRIBUTES_MAX
                                       or not attributes.isascii()):
            raise _ServerError(
                400, "ValidationError",
                "1 validation error detected: Value at 'customAttributes' failed to satisfy "
                f"constraint: Member must have length less than or equal to "
                f"{CUSTOM_ATTRIBUTES_MAX} and contain only ASCII characters")
        if len(body) > MAX_BODY_BYTES:
            raise _ServerError(400, "ValidationError",
                               f"Request body of {len(body)} bytes exceeds the limit of "
                               f"{MAX_BODY_BYTES} bytes.")
        spec, rest = split_custom_attributes(attributes)
        try:
            request_faults = parse_fault_spec(spec) if spec else []
        except PayloadError as exc:
            raise _ServerError(400, "ValidationError", str(exc)) from exc
        owner._update(entry, custom_attributes=rest if attributes is not None else None)
        info = owner.lookup(name)
        if info is None or info.status != "InService":
            raise _ServerError(400, "ValidationError",
                               f"Endpoint {name} of account {owner.account_id} not found.")
        admission = self._route(name, info, entry)
        if admission is not None:
            info = dataclasses.replace(info, image=admission.image,
                                       environment=admission.environment,
                                       variant=admission.variant)
        faults = [*owner._take_server_faults(), *request_faults]
        owner._update(entry, faults=[str(f) for f in faults])
        for fault in faults:
            if fault.kind == "throttle":
                raise _ServerError(400, "ThrottlingException", "Rate exceeded")
            if fault.kind == "unavailable":
                raise _ServerError(503, "ServiceUnavailable",
                                   "The service is unavailable. Please try again later.")
            if fault.kind == "model-error":
                status = fault.status or 500
                original = json.dumps({"error": "injected model error (local-fault)",
                                       "error_type": "generation"}).encode()
                raise self._model_error(name, status, original)
        spec_ = containers.container_for_image(info.image)
        if spec_ is None:
            raise self._model_error(name, 500, (
                f"The local stand-in does not emulate the image {info.image!r}: use a "
                "huggingface-pytorch-tgi-inference (TGI) or djl-inference (LMI) image."
            ).encode())
        owner._update(entry, container=spec_.kind)
        streaming = operation == "InvokeEndpointWithResponseStream"
        try:
            parsed = containers.parse_request(spec_, body, info.environment)
        except containers.ContainerRejected as rejected:
            if streaming and rejected.stream_body is not None:
                owner._update(entry, status=200, outcome="container error event")
                writer = _StreamWriter(self, info, "text/event-stream", faults, timing)
                writer.open()
                writer.payload(rejected.stream_body)
                writer.close()
                return
            raise
        owner._update(entry, ignored_parameters=parsed.ignored, served_model=parsed.model_id)
        if admission is not None:
            try:
                admission.acquire(owner._stopping)
            except InvocationRejected as rejected:
                raise _ServerError(rejected.status, rejected.code, rejected.message) from None
        self._admission = admission
        try:
            session = containers.open_session(parsed)
            if streaming:
                self._stream(info, parsed, session, faults, entry, timing)
            else:
                self._whole(info, parsed, session, faults, entry, timing)
        finally:
            self._admission = None
            if admission is not None:
                admission.release()

    def _route(self, name: str, info: EndpointInfo, entry: dict[str, Any]
               ) -> Admission | None:
        """Ask the router where an inference component's request goes (``None``: the
        endpoint's own model)."""
        router = self.owner.router
        if router is None:
            return None
        component = self.headers.get(COMPONENT_HEADER)
        self.owner._update(entry, inference_component=component)
        try:
            return router(name, component)
        except InvocationRejected as rejected:
            raise _ServerError(rejected.status, rejected.code, rejected.message) from None

    def _model_error(self, name: str, status: int, original: bytes) -> _ServerError:
        owner = self.owner
        text = original.decode("utf-8", "replace")
        kind = "client" if 400 <= status < 500 else "server"
        region = owner.region
        message = (
            f"Received {kind} error ({status}) from primary with message \"{text}\". See "
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group=/aws/sagemaker/Endpoints/{name} in account "
            f"{owner.account_id} for more information."
        )
        fields: dict[str, Any] = {
            "OriginalStatusCode": status, "OriginalMessage": text,
            "LogStreamArn": f"arn:aws:logs:{region}:{owner.account_id}:log-group:"
                            f"/aws/sagemaker/Endpoints/{name}",
        }
        if kind == "client":
            fields["ErrorCode"] = "CLIENT_ERROR_FROM_MODEL"
        return _ServerError(424, "ModelError", message, **fields)

    def _tokens(self, parsed: containers.ParsedRequest, faults: list[Fault]
                ) -> Iterator[GeneratedToken]:
        delay = sum(f.seconds or 0.0 for f in faults if f.kind == "slow-first-token")
        if delay:
            deadline = getattr(self, "_deadline", None)
            if deadline is not None and time.monotonic() + delay > deadline:
                self.owner._stopping.wait(max(0.0, deadline - time.monotonic()))
                raise _InvocationTimedOut
            self.owner._stopping.wait(delay)
        tokens = self.owner.backend.generate(parsed.generation)
        admission = getattr(self, "_admission", None)
        yield from (admission.pace(tokens) if admission is not None else tokens)

    def _generate(self, parsed: containers.ParsedRequest, session: containers.OutputSession,
                  faults: list[Fault], entry: dict[str, Any],
                  emit: Callable[[bytes, int | None], None]) -> Fault | None:
        """Run the backend through ``session``, calling ``emit(bytes, token_index)``; return
        the in-stream fault that fired (the caller acts on it), else ``None``."""
        in_stream = {f.after: f for f in faults if f.kind in _IN_STREAM}
        emit(session.start(), None)
        if 0 in in_stream:
            return in_stream[0]
        generator = self._tokens(parsed, faults)
        finished = False
        deadline = getattr(self, "_deadline", None)
        try:
            for token in generator:
                if self.owner._stopping.is_set():
                    raise _ConnectionGone("the server is stopping")
                if deadline is not None and time.monotonic() > deadline:
                    raise _InvocationTimedOut
                if _client_left(self):
                    # As TGI and DJL Serving do for a direct client: a closed connection
                    # cancels the request, and no further token is generated for it.
                    self.owner._update(entry, client_closed=True, outcome=(
                        f"client closed the stream after {session.count} tokens; "
                        "generation stopped"))
                    raise _ConnectionGone("the client closed the connection")
                out, finished = session.push(token)
                emit(out, session.count)
                self.owner._update(entry, tokens=session.count)
                if session.count in in_stream and not finished:
                    return in_stream[session.count]
                if finished:
                    break
        except (_ConnectionGone, ConnectionError, containers.ContainerRejected,
                _InvocationTimedOut):
            raise
        except Exception as exc:  # the backend failed: the container reports it
            self.owner._update(entry, backend_error="".join(
                traceback.format_exception_only(type(exc), exc)).strip())
            emit(session.error(f"{type(exc).__name__}: {exc}"), None)
            return None
        finally:
            generator.close()
        if not finished:
            emit(session.incomplete(), None)
            return None
        emit(session.end(), None)
        fault = in_stream.get(session.count)
        return fault if fault is not None and fault.kind != "container-error" else None

    def _stream(self, info: EndpointInfo, parsed: containers.ParsedRequest,
                session: containers.OutputSession, faults: list[Fault],
                entry: dict[str, Any], timing: dict[str, Any]) -> None:
        owner = self.owner
        writer = _StreamWriter(self, info, session.content_type, faults, timing)
        if not parsed.stream:
            # The container answers with one document once generation is over, so its
            # errors still arrive as an HTTP status: collect before answering.
            document = bytearray()
            fault = self._generate(parsed, session, faults, entry,
                                   lambda data, index: document.extend(data))
            writer.open()
            owner._update(entry, status=200)
            if fault is None or fault.kind == "container-error":
                writer.payload(bytes(document))
            self._end_stream(writer, fault, session, entry)
            return
        writer.open()
        owner._update(entry, status=200)
        fault = self._generate(parsed, session, faults, entry, writer.payload)
        self._end_stream(writer, fault, session, entry)

    def _end_stream(self, writer: _StreamWriter, fault: Fault | None,
                    session: containers.OutputSession, entry: dict[str, Any]) -> None:
        owner = self.owner
        if fault is None:
            owner._update(entry, outcome=f"completed ({session.finish_reason or 'error'})")
            writer.close()
        elif fault.kind == "model-stream-error":
            owner._update(entry, outcome=f"ModelStreamError ({fault.code})")
            writer.frame(encode_exception("ModelStreamError",
                                          _STREAM_ERROR_MESSAGES[fault.code or "StreamBroken"],
                                          ErrorCode=fault.code or "StreamBroken"))
            writer.close()
        elif fault.kind == "internal-stream-failure":
            owner._update(entry, outcome="InternalStreamFailure")
            writer.frame(encode_exception(
                "InternalStreamFailure",
                "An internal failure occurred while streaming the response. Retry the request."))
            writer.close()
        elif fault.kind == "container-error":
            owner._update(entry, outcome="container error event")
            writer.payload(session.error("injected container error (local-fault)"))
            writer.close()
        elif fault.kind == "drop":
            owner._update(entry, outcome="dropped")
            writer.drop()
        elif fault.kind == "stall":
            owner._update(entry, outcome="stalled")
            writer.stall()

    def _whole(self, info: EndpointInfo, parsed: containers.ParsedRequest,
               session: containers.OutputSession, faults: list[Fault],
               entry: dict[str, Any], timing: dict[str, Any]) -> None:
        owner = self.owner
        document = bytearray()
        try:
            fault = self._generate(parsed, session, faults, entry,
                                   lambda data, index: document.extend(data))
            if fault is not None and fault.kind == "stall":  # no answer: the timeout ends it
                _wait_for_client_to_leave(self, self._deadline)
                if time.monotonic() < self._deadline:  # the client gave up first
                    owner._update(entry, outcome="stalled")
                    _hang_up(self)
                    raise _ConnectionGone("stall fault")
                raise _InvocationTimedOut
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise _InvocationTimedOut
        except _InvocationTimedOut:
            owner._update(entry, outcome=f"timed out after {owner.invoke_timeout_s:g} s")
            raise self._model_error(info.name, 0, INVOKE_TIMEOUT_MESSAGE.encode()) from None
        if fault is not None and fault.kind == "container-error":
            # A streaming body carries the error event; otherwise the container answers with
            # an error status (session.error raises ContainerRejected).
            document.extend(session.error("injected container error (local-fault)"))
        if fault is not None and fault.kind == "drop":
            owner._update(entry, outcome="dropped")
            _hang_up(self)
            raise _ConnectionGone("drop fault")
        owner._update(entry, status=200, outcome=f"completed ({session.finish_reason})")
        owner._mark(timing, "headers_ns")
        owner._mark(timing, "done_ns")
        self._send_bytes(200, bytes(document), session.content_type,
                         {"x-Amzn-Invoked-Production-Variant": info.variant})


def _decode_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _hang_up(handler: _Handler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):  # the client already closed it
        handler.connection.shutdown(socket.SHUT_RDWR)


_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_ESTABLISHED = 1  # tcp_info.tcpi_state (linux/tcp_states.h)


def _client_left(handler: _Handler) -> bool:
    """Whether the client has closed its end (the request was read, so readable = EOF).

    Asked before every token. On Linux the connection's TCP state answers it (``CLOSE_WAIT``
    once the client's FIN arrived, ``CLOSE`` after a reset): ``getsockopt`` keeps the GIL,
    where ``select`` hands it over -- with hundreds of streams, a thread per connection, that
    hand-over cost more than the rest of a token's work. Elsewhere, ``select`` and a peek.
    """
    connection = handler.connection
    if _TCP_INFO is not None:
        try:
            return connection.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] != _TCP_ESTABLISHED
        except OSError:
            pass  # not a TCP socket: ask select
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and not connection.recv(1, socket.MSG_PEEK)
    except (OSError, ValueError):
        return True


def _wait_for_client_to_leave(handler: _Handler, deadline: float | None = None) -> None:
    """Block until the client closes the connection, the server stops, or ``deadline``
    (``time.monotonic``; default: 120 s from now) passes."""
    deadline = time.monotonic() + STALL_LIMIT_S if deadline is None else deadline
    connection = handler.connection
    while time.monotonic() < deadline and not handler.owner._stopping.is_set():
        readable, _, _ = select.select([connection], [], [], 0.1)
        if readable:
            try:
                if not connection.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return


class _StreamWriter:
    """Writes one event-stream response with chunked transfer encoding."""

    def __init__(self, handler: _Handler, info: EndpointInfo, content_type: str,
                 faults: list[Fault], timing: dict[str, Any]) -> None:
        self.handler = handler
        self.info = info
        self.content_type = content_type
        self.timing = timing
        chunking = next((f for f in faults if f.kind == "chunking"), None)
        self.rng = random.Random(chunking.seed) if chunking is not None else None
        self.first = True

    def open(self) -> None:
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.amazon.eventstream")
        handler.send_header("X-Amzn-SageMaker-Content-Type", self.content_type)
        handler.send_header("x-Amzn-Invoked-Production-Variant", self.info.variant)
        handler.send_header("x-amzn-RequestId", handler.request_id)
        handler.send_header("X-Local-Request-Id", handler.request_id)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        handler.owner._mark(self.timing, "headers_ns")

    def _write(self, data: bytes) -> None:
        self.handler.wfile.write(data)

    def frame(self, frame: bytes) -> None:
        """Send one event-stream message as one HTTP chunk."""
        self._write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def payload(self, data: bytes, index: int | None = None) -> None:
        """Send ``data`` as PayloadPart frames: one; two for the stream's first write
        (:func:`cut_first_part`); random cuts under ``chunking``."""
        if not data:
            return
        pieces = [data]
        if self.rng is not None and len(data) > 1:
            cuts = sorted(self.rng.sample(range(1, len(data)), k=min(len(data) - 1,
                                                                       self.rng.randint(1, 4))))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        elif self.first:
            pieces = cut_first_part(data)
        self.first = False
        for piece in pieces:
            self.frame(encode_payload_part(piece))
        if index is not None:
            self.handler.owner._mark(self.timing, "frames", index)

    def close(self) -> None:
        """End the chunked body properly."""
        self.handler.owner._mark(self.timing, "done_ns")
        self._write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Send half a frame inside a chunk, then close the connection."""
        frame = encode_payload_part(b'{"dropped": "the connection closes inside this frame"}')
        self._write(b"%x\r\n%s" % (len(frame), frame[: len(frame) // 2]))
        _hang_up(self.handler)
        raise _ConnectionGone("drop fault")

    def stall(self) -> None:
        """Send nothing more until the client leaves (or the server stops, or 120 s)."""
        _wait_for_client_to_leave(self.handler)
        _hang_up(self.handler)
        raise _ConnectionGone("stall fault")
