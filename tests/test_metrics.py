"""Stream metrics with a fake clock: definitions, pass-through, failures, percentiles."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import ModelStreamError
from common.metrics import StreamMetrics, measure, percentile


@dataclass(frozen=True)
class Tok:
    """Stand-in for common.streaming.Token: only .text and .special matter here."""

    text: str
    special: bool = False


class FakeClock:
    """A clock that reads whatever the test set; calling it never advances it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def timed(clock: FakeClock, schedule, end: float | None = None, error: Exception | None = None):
    """Yield each token of ``schedule`` [(time, token)] with the clock set to its time."""
    for at, token in schedule:
        clock.now = at
        yield token
    if end is not None:
        clock.now = end
    if error is not None:
        raise error


SCHEDULE = [
    (0.10, Tok("")),  # a byte-fallback piece: a token, but no text yet
    (0.12, Tok("Hel")),
    (0.15, Tok("lo")),
    (0.20, Tok(" world")),
    (0.21, Tok("</s>", special=True)),
]


def test_figures_follow_the_documented_definitions():
    clock = FakeClock(0.0)
    stream = measure(timed(clock, SCHEDULE, end=0.25), start=0.0, clock=clock)
    out = list(stream)
    m = stream.metrics
    assert out == [token for _, token in SCHEDULE]
    assert m.ttfb_s == pytest.approx(0.10)
    assert m.ttft_s == pytest.approx(0.12)
    assert m.token_count == 4
    assert m.special_count == 1
    # gaps between the four non-special tokens: 0.02, 0.03, 0.05
    assert m.itl_median_s == pytest.approx(0.03)
    assert m.itl_p95_s == pytest.approx(0.03 + 0.9 * 0.02)
    assert m.tokens_per_s == pytest.approx(3 / 0.10)
    assert m.total_s == pytest.approx(0.25)
    assert m.finished is True
    assert stream.text == "Hello world"
    assert stream.done


def test_tokens_pass_through_as_the_same_objects():
    clock = FakeClock()
    tokens = [Tok("a"), Tok("b", special=True), Tok("c")]
    seen = list(measure(iter(tokens), clock=clock))
    assert all(a is b for a, b in zip(seen, tokens, strict=True))


def test_metrics_are_live_while_the_stream_runs():
    clock = FakeClock(0.0)
    stream = measure(timed(clock, SCHEDULE), start=0.0, clock=clock)
    next(stream)
    next(stream)
    clock.now = 0.13
    live = stream.metrics
    assert live.finished is False
    assert live.token_count == 2
    assert live.ttft_s == pytest.approx(0.12)
    assert live.total_s == pytest.approx(0.13)
    assert live.tokens_per_s == pytest.approx(1 / 0.02)
    clock.now = 0.14
    assert stream.metrics.total_s == pytest.approx(0.14)


def test_default_start_is_when_measure_was_called():
    clock = FakeClock(5.0)
    stream = measure(timed(clock, [(5.2, Tok("x"))], end=5.3), clock=clock)
    list(stream)
    assert stream.metrics.ttft_s == pytest.approx(0.2)
    assert stream.metrics.total_s == pytest.approx(0.3)


def test_start_lets_ttft_include_the_request():
    clock = FakeClock(5.0)
    stream = measure(timed(clock, [(5.2, Tok("x"))]), start=4.0, clock=clock)
    list(stream)
    assert stream.metrics.ttft_s == pytest.approx(1.2)


def test_failure_freezes_metrics_and_propagates_the_same_exception():
    clock = FakeClock(0.0)
    error = ModelStreamError("ModelStreamError: boom", error_code="StreamBroken")
    stream = measure(
        timed(clock, SCHEDULE[:3], end=0.4, error=error), start=0.0, clock=clock
    )
    received = []
    with pytest.raises(ModelStreamError) as excinfo:
        for token in stream:
            received.append(token)
    assert excinfo.value is error
    assert len(received) == 3
    clock.now = 9.0  # later readings of the clock must not change the frozen figures
    m = stream.metrics
    assert m.finished is False
    assert m.total_s == pytest.approx(0.4)
    assert m.token_count == 3
    assert stream.text == "Hello"
    assert "incomplete" in m.summary()
    with pytest.raises(StopIteration):
        next(stream)


def test_record_first_byte_sets_ttfb_once():
    clock = FakeClock(0.0)
    stream = measure(timed(clock, SCHEDULE), start=0.0, clock=clock)
    clock.now = 0.05
    stream.record_first_byte()
    stream.record_first_byte(at=0.07)
    list(stream)
    assert stream.metrics.ttfb_s == pytest.approx(0.05)
    assert stream.metrics.ttft_s == pytest.approx(0.12)


def test_close_stops_the_source_and_marks_unfinished():
    clock = FakeClock(0.0)
    closed = []

    def source():
        try:
            yield Tok("a")
            yield Tok("b")
        finally:
            closed.append(True)

    with measure(source(), clock=clock) as stream:
        assert next(stream).text == "a"
    assert closed == [True]
    assert stream.metrics.finished is False
    assert stream.metrics.token_count == 1


def test_plain_strings_count_as_tokens():
    clock = FakeClock(0.0)
    stream = measure(timed(clock, [(0.1, "ab"), (0.3, "c")]), start=0.0, clock=clock)
    assert list(stream) == ["ab", "c"]
    assert stream.text == "abc"
    assert stream.metrics.token_count == 2
    assert stream.metrics.tokens_per_s == pytest.approx(1 / 0.2)


@pytest.mark.parametrize(
    ("schedule", "ttft"),
    [
        ([], None),
        ([(0.1, Tok("</s>", special=True))], None),
        ([(0.1, Tok("one"))], 0.1),
        ([(0.1, Tok("a")), (0.1, Tok("b"))], 0.1),  # no time between: no rate
    ],
)
def test_figures_that_cannot_be_known_are_none(schedule, ttft):
    clock = FakeClock(0.0)
    stream = measure(timed(clock, schedule), start=0.0, clock=clock)
    list(stream)
    m = stream.metrics
    assert m.tokens_per_s is None
    assert m.ttft_s == (None if ttft is None else pytest.approx(ttft))
    if len(schedule) < 2:
        assert m.itl_median_s is None and m.itl_p95_s is None
    assert m.finished is True


def test_summary_line():
    m = StreamMetrics(
        ttfb_s=0.05, ttft_s=0.062, itl_median_s=0.0167, itl_p95_s=0.018,
        tokens_per_s=59.8, total_s=0.85, token_count=48, finished=True,
    )
    assert m.summary() == (
        "TTFT 62 ms | 48 tokens | 59.8 tokens/s | ITL p50 16.7 ms p95 18.0 ms | total 0.85 s"
    )
    empty = StreamMetrics(total_s=1.5)
    assert empty.summary() == (
        "TTFT - | 0 tokens | - tokens/s | ITL p50 - p95 - | total 1.50 s | incomplete"
    )


def test_as_dict_has_every_field():
    m = StreamMetrics(ttft_s=0.1, token_count=3, finished=True)
    assert m.as_dict() == {
        "ttfb_s": None, "ttft_s": 0.1, "itl_median_s": None, "itl_p95_s": None,
        "tokens_per_s": None, "total_s": 0.0, "token_count": 3, "special_count": 0,
        "finished": True,
    }


# --------------------------------------------------------------------------- properties

_gaps = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)
_items = st.lists(
    st.tuples(_gaps, st.text(max_size=4), st.booleans()), max_size=30
)


@given(_items)
def test_any_stream_passes_through_and_adds_up(items):
    clock = FakeClock(0.0)
    schedule, at = [], 0.0
    for gap, text, special in items:
        at += gap
        schedule.append((at, Tok(text, special)))
    stream = measure(timed(clock, schedule), start=0.0, clock=clock)
    out = list(stream)
    assert all(a is b for a, (_, b) in zip(out, schedule, strict=True))
    normal = [(t, tok) for t, tok in schedule if not tok.special]
    m = stream.metrics
    assert stream.text == "".join(tok.text for _, tok in normal)
    assert m.token_count == len(normal)
    assert m.special_count == len(schedule) - len(normal)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(normal)]
    if gaps:
        assert m.itl_median_s == pytest.approx(statistics.median(gaps))
        assert min(gaps) <= m.itl_p95_s <= max(gaps)
    if m.ttft_s is not None:
        assert m.ttfb_s <= m.ttft_s <= m.total_s


_samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50
)


@given(_samples)
def test_percentile_matches_statistics_inclusive_quantiles(values):
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), abs=1e-6)
    if len(values) >= 2:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for q in (1, 25, 90, 95, 99):
            assert percentile(values, q) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-6)


@given(_samples, st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotonic_in_q(values, q1, q2):
    low, high = sorted((q1, q2))
    assert percentile(values, low) <= percentile(values, high) + 1e-9


@pytest.mark.parametrize(
    ("values", "q", "reason"),
    [([], 50, "empty"), ([1.0], -1, "0 to 100"), ([1.0], 100.5, "0 to 100"),
     ([1.0], math.nan, "0 to 100"), ([1.0], "50", "0 to 100")],
)
def test_percentile_rejects_bad_input(values, q, reason):
    with pytest.raises(ValueError, match=reason):
        percentile(values, q)
