"""Latency figures of one token stream, measured while it is consumed.

:func:`measure` wraps any iterable of tokens -- objects with ``.text`` and ``.special``, such
as :class:`common.streaming.Token` -- and passes every token through untouched while it
stamps the clock. Its :attr:`MeasuredStream.metrics` is a :class:`StreamMetrics` snapshot
that is live while the stream runs and final once it ends (or fails).

Definitions (all times in seconds, from ``t0`` -- the ``start`` you pass, else the moment
:func:`measure` was called):

* ``ttfb_s`` -- time to the first item of any kind (a special token counts), or to the
  moment :meth:`MeasuredStream.record_first_byte` was called if that came first.
* ``ttft_s`` -- time to the first non-special token whose ``.text`` is not empty.
* "tokens" below are the non-special tokens (the generated text's tokens; a byte-fallback
  token with empty text counts, an end-of-sequence ``</s>`` does not).
* ``itl_median_s`` / ``itl_p95_s`` -- median and 95th percentile of the inter-token
  latencies, the gaps between consecutive tokens.
* ``tokens_per_s`` -- decode rate: ``(token_count - 1) / (t_last_token - t_first_token)``.
  The first token is left out because its time is the prefill, not decoding; ``None`` with
  fewer than two tokens.
* ``total_s`` -- time to the end of the stream (or its failure); while it runs, time so far.

This module imports only the standard library.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MeasuredStream", "StreamMetrics", "measure", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` by linear interpolation.

    The method is numpy's default (``"linear"``, Hyndman & Fan type 7): sort the values,
    take the fractional rank ``(n - 1) * q / 100`` and interpolate between its neighbours.
    ``q=50`` is the median, ``q=0`` the minimum, ``q=100`` the maximum.

    Args:
        values: the sample (any order).
        q: the percentile, from 0 to 100.

    Returns:
        The percentile as a float.

    Raises:
        ValueError: when ``values`` is empty or ``q`` is outside 0..100 (or not a number).
    """
    if not values:
        raise ValueError("percentile of an empty sample: pass at least one value")
    if not isinstance(q, (int, float)) or math.isnan(q) or not 0 <= q <= 100:
        raise ValueError(f"percentile q must be a number from 0 to 100, got {q!r}")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class StreamMetrics:
    """The latency figures of one stream (see the module docstring for the definitions).

    A figure that cannot be known yet -- no token so far, fewer than two tokens -- is ``None``.
    """

    ttfb_s: float | None = None
    ttft_s: float | None = None
    itl_median_s: float | None = None
    itl_p95_s: float | None = None
    tokens_per_s: float | None = None
    total_s: float = 0.0
    token_count: int = 0
    special_count: int = 0
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict (for tables, JSON and CSV)."""
        return asdict(self)

    def summary(self) -> str:
        """Return one line such as ``TTFT 62 ms | 48 tokens | 59.8 tokens/s | ...``.

        Figures that are not known are shown as ``-``; a stream that did not finish ends
        with ``| incomplete``.
        """

        def ms(value: float | None, digits: int) -> str:
            return "-" if value is None else f"{value * 1000:.{digits}f} ms"

        rate = "-" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"
        parts = [
            f"TTFT {ms(self.ttft_s, 0)}",
            f"{self.token_count} token{'' if self.token_count == 1 else 's'}",
            f"{rate} tokens/s",
            f"ITL p50 {ms(self.itl_median_s, 1)} p95 {ms(self.itl_p95_s, 1)}",
            f"total {self.total_s:.2f} s",
        ]
        if not self.finished:
            parts.append("incomplete")
        return " | ".join(parts)


class MeasuredStream(Iterator[Any], AsyncIterator[Any]):
    """An iterator over the wrapped tokens that measures them on the way through.

    It is a plain iterator over a plain iterable, and an async iterator (``async for``,
    ``async with``, :meth:`aclose`) over an async one such as ``common.aiter_tokens(...)``;
    the figures are the same either way.

    Attributes:
        text: the concatenated ``.text`` of the non-special tokens seen so far.
        done: ``True`` once the stream ended, failed or was closed.
    """

    def __init__(
        self,
        tokens: Iterable[Any] | AsyncIterable[Any],
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self.is_async = not hasattr(tokens, "__iter__") and hasattr(tokens, "__aiter__")
        self._wrapped = tokens
        self._source: Any = tokens.__aiter__() if self.is_async else iter(tokens)  # type: ignore[union-attr,arg-type]
        self._t0 = clock() if start is None else start
        self._first_item: float | None = None
        self._first_text: float | None = None
        self._token_times: list[float] = []
        self._special = 0
        self._end: float | None = None
        self._finished = False
        self._pieces: list[str] = []
        self.done = False

    @property
    def text(self) -> str:
        """The text of the non-special tokens so far (joined)."""
        return "".join(self._pieces)

    def record_first_byte(self, at: float | None = None) -> None:
        """Note that the first byte of the response arrived (``at``, default: now).

        Only the first call, and only one before the first token, changes ``ttfb_s``.
        """
        if self._first_item is None:
            self._first_item = self._clock() if at is None else at

    def __iter__(self) -> MeasuredStream:
        return self

    def __next__(self) -> Any:
        if self.done:
            raise StopIteration
        if self.is_async:
            raise TypeError("this measured stream wraps an async stream: read it with "
                            "`async for`")
        try:
            token = next(self._source)
        except StopIteration:
            self._finish(finished=True)
            raise
        except BaseException:
            self._finish(finished=False)
            raise
        return self._record(token)

    def __aiter__(self) -> MeasuredStream:
        return self

    async def __anext__(self) -> Any:
        if self.done:
            raise StopAsyncIteration
        if not self.is_async:
            raise TypeError("this measured stream wraps a plain iterable: read it with `for`")
        try:
            token = await self._source.__anext__()
        except StopAsyncIteration:
            self._finish(finished=True)
            raise
        except BaseException:
            self._finish(finished=False)
            raise
        return self._record(token)

    def _record(self, token: Any) -> Any:
        now = self._clock()
        if self._first_item is None:
            self._first_item = now
        if isinstance(token, str):
            special, text = False, token
        else:
            special, text = bool(getattr(token, "special", False)), getattr(token, "text", "")
        if special:
            self._special += 1
        else:
            self._token_times.append(now)
            if text:
                self._pieces.append(text)
                if self._first_text is None:
                    self._first_text = now
        return token

    def close(self) -> None:
        """Stop early: close the wrapped iterator (if it can be) and freeze the metrics.

        The metrics keep ``finished=False``. Closing twice does nothing. For an async
        stream use :meth:`aclose`, which also closes the wrapped stream.
        """
        if self.done:
            return
        self._finish(finished=False)
        if self.is_async:
            return
        closer = getattr(self._source, "close", None)
        if callable(closer):
            closer()

    async def aclose(self) -> None:
        """Stop early (async): freeze the metrics and close the wrapped stream.

        Awaits the wrapped stream's ``aclose()`` (or an awaitable ``close()``).
        """
        if self.done:
            return
        self._finish(finished=False)
        for owner in (self._wrapped, self._source):
            closer = getattr(owner, "aclose", None) or getattr(owner, "close", None)
            if callable(closer):
                result = closer()
                if inspect.isawaitable(result):
                    await result
                return

    def __enter__(self) -> MeasuredStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MeasuredStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _finish(self, *, finished: bool) -> None:
        self._end = self._clock()
        self._finished = finished
        self.done = True

    @property
    def metrics(self) -> StreamMetrics:
        """A snapshot of the figures: live while the stream runs, final once it is done."""
        t0 = self._t0
        end = self._end if self._end is not None else self._clock()
        times = self._token_times
        gaps = [b - a for a, b in itertools.pairwise(times)]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return StreamMetrics(
            ttfb_s=None if self._first_item is None else self._first_item - t0,
            ttft_s=None if self._first_text is None else self._first_text - t0,
            itl_median_s=percentile(gaps, 50) if gaps else None,
            itl_p95_s=percentile(gaps, 95) if gaps else None,
            tokens_per_s=(len(times) - 1) / span if span > 0 else None,
            total_s=end - t0,
            token_count=len(times),
            special_count=self._special,
            finished=self._finished,
        )


def measure(
    tokens: Iterable[Any] | AsyncIterable[Any],
    *,
    start: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> MeasuredStream:
    """Wrap a token stream so that its latency is measured as it is consumed.

    Works on both faces: wrap ``common.iter_tokens(...)`` / ``common.invoke_stream(...)`` and
    read it with ``for``, or wrap ``common.aiter_tokens(...)`` /
    ``common.ainvoke_stream(...)`` and read it with ``async for`` (close it with
    ``await stream.aclose()`` or ``async with``).

    Args:
        tokens: any iterable or async iterable of objects with ``.text`` (str) and
            ``.special`` (bool), or of plain strings (each counted as one non-special token).
            The same objects come out, in order.
        start: the ``clock()`` reading when the request was sent, so that TTFB and TTFT
            include the request's own time; default: now.
        clock: a monotonic clock in seconds (tests pass a fake one).

    Returns:
        A :class:`MeasuredStream` (``.is_async`` says which way to read it). Iterating it
        yields the tokens; if the wrapped iterator raises, the metrics are frozen
        (``finished=False``) and the same exception propagates unchanged.
    """
    return MeasuredStream(tokens, start=start, clock=clock)
