"""Concurrent streaming load tool: ``python -m common.bench --endpoint NAME``.

Keeps ``concurrency`` streams open at once against one endpoint (real SageMaker or the local
stand-in -- it only uses the ``sagemaker-runtime`` API, so the environment decides which),
sends ``requests`` requests per concurrency level, and reports per level: time to first token
(p50/p95), inter-token latency (p50/p95), tokens/s per stream and in total, and errors -- as a
table on stdout, a CSV, and optionally a PNG chart.

Every stream runs on one asyncio event loop (aiobotocore's client,
:func:`common.aio.aopen_stream`): hundreds of streams cost one thread, not one each. One
:class:`LoadRunner` -- one loop, one client whose pool holds a connection per stream of the
busiest level -- serves every level of a run. Inside a Jupyter kernel, whose loop is already
running, its loop runs in a worker thread, so :func:`run_sweep` is a plain call there too.
:func:`run_level` (a thread per stream, boto3) stays for comparison (``--engine threads``;
see ``benchmarks/load.py``).

Each token is timed when its bytes were read from the connection
(:attr:`common.aio.ResponseFrames.arrived`), not when the decoder handed it out, so TTFT and
inter-token latency leave out the client's own parsing; ``--requests-csv`` writes every
request's figures and its request id, to set against the server's own times
(``benchmarks/bench_vs_llmeter.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common.metrics import StreamMetrics, measure, percentile

ENGINES = ("asyncio", "threads")
_T = TypeVar("_T")

DEFAULT_PROMPT = (
    "Write a short, friendly email announcing the AnyCloud Internet Service, with the coupon "
    "code EARLYB1RD for 20% off the first 3 months."
)


@dataclass
class RequestResult:
    """One request's outcome: its metrics, or the error that ended it.

    Attributes:
        metrics: the stream's figures (``None`` when it failed before the stream began).
        error: the error that ended it, as ``"Type: message"``.
        request_id: the response's request id, when the stream began (asyncio engine).
        started_s: ``time.perf_counter()`` just before the request was sent; TTFT and the
            other times count from here.
    """

    metrics: StreamMetrics | None
    error: str | None = None
    request_id: str | None = None
    started_s: float | None = None


@dataclass
class LevelReport:
    """The aggregate of every request at one concurrency level."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    itl_p50_s: float | None
    itl_p95_s: float | None
    stream_tokens_per_s_p50: float | None
    stream_tokens_per_s_min: float | None
    total_tokens_per_s: float
    error_messages: list[str] = field(default_factory=list)
    results: list[RequestResult] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        """Return the report as a flat dict for the table and the CSV (times in ms)."""

        def ms(value: float | None) -> str:
            return "" if value is None else f"{value * 1000:.1f}"

        def num(value: float | None) -> str:
            return "" if value is None else f"{value:.1f}"

        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "ttft_p50_ms": ms(self.ttft_p50_s),
            "ttft_p95_ms": ms(self.ttft_p95_s),
            "itl_p50_ms": ms(self.itl_p50_s),
            "itl_p95_ms": ms(self.itl_p95_s),
            "stream_tok_s_p50": num(self.stream_tokens_per_s_p50),
            "stream_tok_s_min": num(self.stream_tokens_per_s_min),
            "total_tok_s": num(self.total_tokens_per_s),
            "wall_s": f"{self.wall_s:.2f}",
        }


def build_request_payload(prompt: str, container: str, max_new_tokens: int) -> dict[str, Any]:
    """Return the streaming request body for ``prompt`` in the Llama 2 chat layout."""
    from common.endpoints import build_payload
    from common.prompts import build_llama2_prompt

    text = build_llama2_prompt([{"role": "user", "content": prompt}])
    return build_payload(text, container=container, max_new_tokens=max_new_tokens)


def _one_request(invoke: Callable[[], Any]) -> RequestResult:
    start = time.perf_counter()
    stream = measure(invoke(), start=start)
    try:
        for _ in stream:
            pass
    except Exception as exc:  # every failure is counted and reported, not hidden
        return RequestResult(stream.metrics, f"{type(exc).__name__}: {exc}")
    return RequestResult(stream.metrics)


def run_level(
    invoke: Callable[[], Any],
    concurrency: int,
    requests: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> LevelReport:
    """Send ``requests`` streaming requests with ``concurrency`` at once and aggregate them.

    Args:
        invoke: a callable that sends one request and returns an iterable of tokens
            (``common.invoke_stream(...)`` bound to an endpoint and payload).
        concurrency: how many streams are open at once.
        requests: how many requests in total at this level.
        progress: called with 1 after each finished request (a progress bar's ``update``).

    Returns:
        The :class:`LevelReport`.
    """
    results: list[RequestResult] = []
    lock = threading.Lock()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(_one_request, invoke) for _ in range(requests)]
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a failure before the stream counts too
                result = RequestResult(None, f"{type(exc).__name__}: {exc}")
            with lock:
                results.append(result)
            if progress is not None:
                progress(1)
    wall = time.perf_counter() - started
    return summarize(concurrency, results, wall)


async def _one_async_request(invoke: Callable[[], Awaitable[Any]]) -> RequestResult:
    from common.aio import OpenStream

    start = time.perf_counter()
    try:
        opened = await invoke()
    except Exception as exc:  # a failure before the stream counts too
        return RequestResult(None, f"{type(exc).__name__}: {exc}", started_s=start)
    if isinstance(opened, OpenStream):  # tokens timed by when their bytes arrived
        request_id = opened.request_id
        measured = measure(opened.tokens, start=start, clock=opened.frames.now)
    else:
        request_id = None
        measured = measure(opened, start=start)
    try:
        async for _ in measured:
            pass
    except Exception as exc:  # every failure is counted and reported, not hidden
        return RequestResult(measured.metrics, f"{type(exc).__name__}: {exc}", request_id,
                             start)
    finally:
        await measured.aclose()  # returns the connection at once, even after a failure
    return RequestResult(measured.metrics, None, request_id, start)


async def arun_level(
    invoke: Callable[[], Awaitable[AsyncIterable[Any]]],
    concurrency: int,
    requests: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> LevelReport:
    """The asyncio twin of :func:`run_level`: every stream on the running event loop.

    Args:
        invoke: a coroutine function that sends one request and returns an async token
            stream (``common.ainvoke_stream(...)`` bound to a client, endpoint and payload)
            or an :class:`~common.aio.OpenStream` (``common.aio.aopen_stream(...)``), whose
            tokens are then timed by when their bytes arrived.
        concurrency: how many streams are open at once.
        requests: how many requests in total at this level.
        progress: called with 1 after each finished request.

    Returns:
        The :class:`LevelReport`.
    """
    slots = asyncio.Semaphore(concurrency)
    results: list[RequestResult] = []

    async def one() -> None:
        async with slots:
            result = await _one_async_request(invoke)
        results.append(result)
        if progress is not None:
            progress(1)

    started = time.perf_counter()
    tasks = []
    for _ in range(requests):
        tasks.append(asyncio.ensure_future(one()))
        # One loop step per new stream: it sends its request (aiohttp writes the body in a
        # task of its own on Python < 3.12) before the next one is built, so no request's
        # time includes the other new requests' set-up.
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return summarize(concurrency, results, time.perf_counter() - started)


def run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end from synchronous code, and return its result.

    With no event loop running in this thread it is ``asyncio.run``; inside a Jupyter kernel
    (or any running loop, which cannot be re-entered) it runs on a fresh loop in a worker
    thread and this call waits for it.
    """
    own = _OwnLoop()
    try:
        return own.run(coroutine)
    finally:
        own.close()


class _OwnLoop:
    """An event loop of the load tool's own, kept across calls: run in this thread, or in a
    worker thread when this thread already runs a loop (a Jupyter kernel's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._thread = threading.Thread(target=self.loop.run_forever,
                                        name="common-bench-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop to its end; return its result (or raise its error)."""
        if self._thread is None:
            return self.loop.run_until_complete(coroutine)
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Finish the loop's async generators and default executor, then close it."""
        try:
            self.run(self.loop.shutdown_asyncgens())
            self.run(self.loop.shutdown_default_executor())
        finally:
            if self._thread is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join()
            self.loop.close()


class LoadRunner:
    """One event loop and one aiobotocore client for every level of a load run.

    Use it in a ``with`` block; :meth:`level` runs one concurrency level and can be called
    as often as needed (:func:`run_sweep` calls it per level; a benchmark can interleave it
    with other tools). The client's pool keeps a connection per stream of the busiest level
    (``max_concurrency``); its HTTP session is built when the block starts and a level's
    connections are opened before its clock starts (:func:`common.aio.open_connections`),
    so no request's times include loop, client, TCP or TLS set-up.

    Args:
        endpoint_name: the endpoint.
        payload: the streaming request body (checked by :func:`common.aio.aopen_stream`).
        max_concurrency: the most streams any level will keep open.
        container: the stream format (``"tgi"``, ``"lmi"`` or ``"auto"``).
        inference_component: the component to call (``InferenceComponentName``).
        region: the AWS region (default: the session's).
        read_timeout: seconds a stream may send nothing before it fails.

    Raises:
        ValueError: ``max_concurrency`` below 1.
        ImportError: aiobotocore is not installed (when the block starts).
    """

    def __init__(self, endpoint_name: str, payload: Mapping[str, Any], *, max_concurrency: int,
                 container: str = "auto", inference_component: str | None = None,
                 region: str | None = None, read_timeout: float = 60.0) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.endpoint_name = endpoint_name
        self.payload = payload
        self.max_concurrency = max_concurrency
        self.container = container
        self.inference_component = inference_component
        self.region = region
        self.read_timeout = read_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self._own: _OwnLoop | None = None
        self._client_context: Any = None

    def __enter__(self) -> LoadRunner:
        from common import aio

        self._own = _OwnLoop()
        try:
            self._client_context = aio.async_runtime_client(
                self.region, read_timeout=self.read_timeout,
                max_pool_connections=max(10, self.max_concurrency))
            self.client = self._own.run(self._client_context.__aenter__())
        except BaseException:
            self._own.close()
            self._own = None
            raise
        self.loop = self._own.loop
        return self

    def __exit__(self, *exc_info: object) -> None:
        own, self._own = self._own, None
        if own is None:
            return
        try:
            own.run(self._client_context.__aexit__(None, None, None))
        finally:
            self.client = self.loop = None
            own.close()

    def _invoke(self) -> Awaitable[Any]:
        from common.aio import aopen_stream

        return aopen_stream(self.client, self.endpoint_name, self.payload,
                            container=self.container,
                            inference_component=self.inference_component)

    def level(self, concurrency: int, requests: int | None = None, *,
              progress: Any = False) -> LevelReport:
        """Run one level: ``requests`` streaming requests (default ``2 * concurrency``),
        ``concurrency`` at a time, on this runner's loop and client.

        Args:
            concurrency: streams open at once (at most ``max_concurrency``).
            requests: requests in total at this level.
            progress: as for :func:`run_sweep` (default: nothing shown).

        Returns:
            The level's :class:`LevelReport`, with every request in ``results``.

        Raises:
            RuntimeError: outside the ``with`` block.
            ValueError: ``concurrency`` is not 1 to ``max_concurrency``, or ``requests`` < 1.
        """
        if self._own is None:
            raise RuntimeError("LoadRunner.level() runs inside `with LoadRunner(...) as "
                               "runner:` (that block opens the loop and the client)")
        if not 1 <= concurrency <= self.max_concurrency:
            raise ValueError(f"concurrency must be 1 to max_concurrency "
                             f"({self.max_concurrency}), not {concurrency}")
        count = 2 * concurrency if requests is None else requests
        if count < 1:
            raise ValueError(f"requests must be at least 1, not {count}")
        from common.aio import open_connections

        self._own.run(open_connections(self.client, concurrency))
        with _progress(progress, concurrency, count) as update:
            return self._own.run(arun_level(self._invoke, concurrency, count, progress=update))


@contextmanager
def _progress(progress: Any, level: int, count: int) -> Any:
    """Yield the per-request callback: ``progress`` itself when callable, else a tqdm bar's
    ``update`` (``None``/``True``) or nothing (``False``)."""
    if callable(progress):
        yield progress
        return
    if progress is False:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=count, desc=f"concurrency {level}", unit="req", file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def _checked_levels(levels: Sequence[int]) -> list[int]:
    checked = [int(level) for level in levels]
    if not checked or any(level < 1 for level in checked):
        raise ValueError(f"levels must be positive concurrency levels like [1, 2, 4]; got "
                         f"{list(levels)!r}")
    return checked


def run_sweep(
    endpoint_name: str,
    payload: Mapping[str, Any],
    levels: Sequence[int],
    *,
    requests_per_level: int | None = None,
    inference_component: str | None = None,
    container: str = "auto",
    region: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[LevelReport]:
    """Measure one endpoint (or inference component) at each concurrency level in turn.

    Each level sends ``requests_per_level`` streaming requests, ``level`` at a time. Every
    level runs on one asyncio event loop with one aiobotocore client (a :class:`LoadRunner`;
    the client's pool holds a connection per stream of the busiest level). A plain call:
    from a script it runs its own loop, inside a Jupyter kernel a loop in a worker thread.

    Args:
        endpoint_name: the endpoint.
        payload: the streaming request body (``"stream": true``); checked before anything
            is sent.
        levels: the concurrency levels, e.g. ``[1, 2, 4, 8, 16, 32]``.
        requests_per_level: requests per level (default ``2 * level``, so every stream slot
            is used twice).
        inference_component: the component to call (``InferenceComponentName``).
        container: the stream format (``"tgi"``, ``"lmi"`` or ``"auto"``).
        region: the AWS region (default: the session's).
        progress: a callable, called with 1 after each finished request; ``None`` shows a
            tqdm bar per level on stderr; ``False`` shows nothing.

    Returns:
        One :class:`LevelReport` per level, in order; failed requests are counted in
        ``errors`` (with up to five distinct messages), never raised.

    Raises:
        ValueError: for an empty list of levels, a level below 1, or
            ``requests_per_level`` below 1.
        PayloadError: the payload fails :func:`common.validate_payload`.
        ImportError: aiobotocore is not installed.
    """
    from common.endpoints import validate_payload

    checked = _checked_levels(levels)
    if requests_per_level is not None and requests_per_level < 1:
        raise ValueError(f"requests_per_level must be at least 1, not {requests_per_level}")
    validate_payload(payload, container=container, streaming=True)
    with LoadRunner(endpoint_name, payload, max_concurrency=max(checked), container=container,
                    inference_component=inference_component, region=region) as runner:
        return [runner.level(level, requests_per_level, progress=progress) for level in checked]


def summarize(concurrency: int, results: Sequence[RequestResult], wall_s: float) -> LevelReport:
    """Aggregate request results into a :class:`LevelReport` (percentiles over requests)."""
    ok = [r.metrics for r in results if r.error is None and r.metrics is not None]
    ttfts = [m.ttft_s for m in ok if m.ttft_s is not None]
    itl50 = [m.itl_median_s for m in ok if m.itl_median_s is not None]
    itl95 = [m.itl_p95_s for m in ok if m.itl_p95_s is not None]
    rates = [m.tokens_per_s for m in ok if m.tokens_per_s]
    tokens = sum(m.token_count for m in ok)
    errors = [r.error for r in results if r.error is not None]

    def pct(values: list[float], q: float) -> float | None:
        return percentile(values, q) if values else None

    return LevelReport(
        concurrency=concurrency,
        requests=len(results),
        errors=len(errors),
        wall_s=wall_s,
        ttft_p50_s=pct(ttfts, 50),
        ttft_p95_s=pct(ttfts, 95),
        itl_p50_s=pct(itl50, 50),
        itl_p95_s=pct(itl95, 95),
        stream_tokens_per_s_p50=pct(rates, 50),
        stream_tokens_per_s_min=min(rates) if rates else None,
        total_tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        error_messages=sorted(set(errors))[:5],
        results=list(results),
    )


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return ``rows`` (mappings with the same keys) as a Markdown table."""
    if not rows:
        return "(no results)"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row[h]) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write ``rows`` (mappings with the same keys) to ``path`` as CSV, with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def request_rows(reports: Sequence[LevelReport]) -> list[dict[str, Any]]:
    """Return one flat dict per request of every report (times in ms; ``started_s`` is the
    ``time.perf_counter()`` reading when the request was sent, to six decimals)."""

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value * 1000:.3f}"

    rows = []
    for report in reports:
        for result in report.results:
            metrics = result.metrics
            rows.append({
                "concurrency": report.concurrency,
                "request_id": result.request_id or "",
                "started_s": "" if result.started_s is None else f"{result.started_s:.6f}",
                "ttfb_ms": ms(metrics.ttfb_s) if metrics else "",
                "ttft_ms": ms(metrics.ttft_s) if metrics else "",
                "tokens": metrics.token_count if metrics else 0,
                "total_ms": ms(metrics.total_s) if metrics else "",
                "error": result.error or "",
            })
    return rows


def format_table(reports: Sequence[LevelReport]) -> str:
    """Return the reports as a Markdown table."""
    return markdown_table([r.row() for r in reports])


def write_csv(reports: Sequence[LevelReport], path: Path) -> None:
    """Write the reports to ``path`` as CSV."""
    write_rows_csv([r.row() for r in reports], path)


def plot(reports: Sequence[LevelReport], path: Path, title: str) -> None:
    """Draw TTFT p50/p95 and per-stream tokens/s against concurrency into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [r.concurrency for r in reports]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(levels, [(r.ttft_p50_s or 0) * 1000 for r in reports], "o-", label="p50")
    left.plot(levels, [(r.ttft_p95_s or 0) * 1000 for r in reports], "s--", label="p95")
    left.set_xlabel("concurrent streams")
    left.set_ylabel("time to first token (ms)")
    left.legend()
    right.plot(levels, [r.stream_tokens_per_s_p50 or 0 for r in reports], "o-", label="per stream")
    right.set_xlabel("concurrent streams")
    right.set_ylabel("tokens/s per stream (p50)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_levels(text: str) -> list[int]:
    """Parse ``"1,5,20"`` into ``[1, 5, 20]``.

    Raises:
        argparse.ArgumentTypeError: on anything but positive integers.
    """
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--concurrency wants numbers like 1,5,20: {exc}") from exc
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("--concurrency wants positive numbers like 1,5,20")
    return levels


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of the load tool."""
    parser = argparse.ArgumentParser(
        prog="python -m common.bench",
        description="Concurrent streaming load against a SageMaker endpoint (real or the "
        "local stand-in: the usual AWS environment variables decide).",
    )
    parser.add_argument("--endpoint", required=True, help="endpoint name")
    parser.add_argument("--container", choices=["tgi", "lmi"], default="tgi",
                        help="request/stream format of the endpoint's container (default tgi)")
    parser.add_argument("--concurrency", type=parse_levels, default=[1, 5, 20],
                        help="comma-separated concurrency levels (default 1,5,20)")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per level (default: 2 x the level)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--inference-component", default=None, metavar="NAME",
                        help="the inference component to call (InferenceComponentName)")
    parser.add_argument("--region", default=None)
    parser.add_argument("--read-timeout", type=float, default=60.0)
    parser.add_argument("--csv", type=Path, default=None, help="write the table as CSV here")
    parser.add_argument("--png", type=Path, default=None, help="draw the chart into this PNG")
    parser.add_argument("--requests-csv", type=Path, default=None, metavar="PATH",
                        help="write one row per request here: its level, request id, send "
                        "time (time.perf_counter), TTFB, TTFT, tokens, total time and error")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--engine", choices=ENGINES, default="asyncio",
                        help="asyncio: every stream on one event loop (aiobotocore; the "
                        "default); threads: one thread per stream (boto3), for comparison")
    return parser


def run(args: argparse.Namespace, out=sys.stdout) -> list[LevelReport]:
    """Run every level of the load test described by ``args``; returns the reports."""
    payload = build_request_payload(args.prompt, args.container, args.max_new_tokens)
    counts = [(level, args.requests or 2 * level) for level in args.concurrency]
    progress = False if args.no_progress else None
    if getattr(args, "engine", "asyncio") == "threads":
        reports = _threaded_levels(args, payload, counts, progress)
    else:
        with LoadRunner(args.endpoint, payload, max_concurrency=max(args.concurrency),
                        container=args.container, region=args.region,
                        inference_component=getattr(args, "inference_component", None),
                        read_timeout=args.read_timeout) as runner:
            reports = [runner.level(level, count, progress=progress) for level, count in counts]
    out.write(format_table(reports) + "\n")
    for report in reports:
        for message in report.error_messages:
            out.write(f"  concurrency {report.concurrency} error: {message}\n")
    if args.csv:
        write_csv(reports, args.csv)
    if getattr(args, "requests_csv", None):
        write_rows_csv(request_rows(reports), args.requests_csv)
    if args.png:
        plot(reports, args.png, f"{args.endpoint}: streaming under load")
    return reports


def _threaded_levels(args: argparse.Namespace, payload: Mapping[str, Any],
                     counts: Sequence[tuple[int, int]], progress: Any) -> list[LevelReport]:
    """The levels with a thread per stream (boto3, :func:`run_level`)."""
    from common.endpoints import invoke_stream, runtime_client

    # runtime_client's settings, with a connection per open stream (as the asyncio engine
    # has), so that the two engines differ only in threads vs. one event loop
    most = max(level for level, _ in counts)
    client = runtime_client(args.region, read_timeout=args.read_timeout,
                            max_pool_connections=max(10, most))
    component = getattr(args, "inference_component", None)

    def invoke():
        if component is None:
            return invoke_stream(client, args.endpoint, payload, container=args.container)
        return invoke_stream(client, args.endpoint, payload, container=args.container,
                             inference_component=component)

    reports = []
    for level, count in counts:
        with _progress(progress, level, count) as update:
            reports.append(run_level(invoke, level, count, progress=update))
    return reports


#: Modules aiobotocore imports at start-up for an HTTP backend this command never uses.
UNUSED_BACKENDS = ("httpx2", "httpx")


def _skip_unused_backends() -> None:
    """Keep aiobotocore from importing httpx2/httpx in this process (about 20 ms of CPU).

    aiobotocore 3.x imports httpx2 (installed with huggingface_hub) or httpx at import time
    for its optional httpx backend, which the load tool never selects; ``None`` in
    ``sys.modules`` makes that import fail as if neither were installed, which aiobotocore
    handles. Only the command does this -- its process imports nothing else -- never a
    caller of :func:`run_sweep`, whose process may need either library.
    """
    for name in UNUSED_BACKENDS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _import_client_libraries() -> None:
    """Import aiobotocore's session and botocore's config with the cyclic GC paused; then
    freeze every object so far into the GC's permanent generation.

    Importing aiobotocore (with botocore and aiohttp) allocates hundreds of thousands of
    objects and none of them is garbage, yet the collector walks them again and again
    while they are made: about 14 ms of CPU per process (5 % of the import) on the
    benchmark machine. Frozen, they are never walked again by the collections that the
    streams' own allocations trigger. A missing package is left to :mod:`common.aio`,
    whose ImportError says how to install it.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        import aiobotocore.session  # noqa: F401
        import botocore.config  # noqa: F401
    except ImportError:
        pass
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m common.bench``; returns 1 when any request failed."""
    args = build_parser().parse_args(argv)
    if __name__ == "__main__" and getattr(args, "engine", "asyncio") == "asyncio":
        _skip_unused_backends()
        _import_client_libraries()
    reports = run(args)
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
