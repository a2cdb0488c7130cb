"""Live stream view: print mode, throttled widget mode, failures, mode choice, the chart."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import pytest

from common import display
from common.display import (
    ERROR_CLASS,
    METRICS_CLASS,
    ROOT_CLASS,
    TEXT_CLASS,
    TITLE_CLASS,
    StreamResult,
    plot_latency_comparison,
    resolve_mode,
    show_stream,
)
from common.errors import ContainerStreamError

try:  # the real token type when the decoders are there; the shape is all that matters
    from common.streaming import Token
except ImportError:

    @dataclass(frozen=True)
    class Token:  # type: ignore[no-redef]
        text: str
        id: int | None = None
        special: bool = False
        logprob: float | None = None


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ticking(clock: FakeClock, tokens, step: float, error: Exception | None = None):
    """Yield ``tokens`` advancing the clock by ``step`` before each one, then maybe fail."""
    for token in tokens:
        clock.now += step
        yield token
    if error is not None:
        raise error


PIECES = ["Hello", ",", " 🦙", "\nsecond line", " <b>&amp;</b>", "\n"]


def tokens_for(pieces):
    return [Token(p, id=i) for i, p in enumerate(pieces)] + [Token("</s>", id=2, special=True)]


@pytest.fixture
def shown(monkeypatch):
    """Capture the widgets show_stream displays instead of sending them to a frontend."""
    boxes = []
    monkeypatch.setattr(display, "show_widget", boxes.append)
    return boxes


def by_class(box, css_class):
    return [child for child in box.children if css_class in child._dom_classes]


def text_of(html_value: str) -> str:
    match = re.fullmatch(r'<div style="[^"]*">(.*)</div>', html_value, flags=re.DOTALL)
    assert match, html_value
    return html.unescape(match.group(1))


# --------------------------------------------------------------------------- print mode


def test_print_mode_prints_the_text_then_the_summary(capsys):
    clock = FakeClock()
    result = show_stream(
        ticking(clock, tokens_for(PIECES), 0.01), mode="print", start=0.0, clock=clock
    )
    out = capsys.readouterr().out
    full = "".join(PIECES)
    assert out == full + "\n" + result.metrics.summary() + "\n"
    assert result.metrics.summary().startswith(f"TTFT 10 ms | {len(PIECES)} tokens |")
    assert isinstance(result, StreamResult)
    assert result.text == full
    assert result.tokens == len(PIECES)
    assert result.error is None
    assert result.metrics.finished


def test_print_mode_title_comes_first(capsys):
    show_stream(iter([Token("hi")]), mode="print", title="7B on TGI")
    assert capsys.readouterr().out.startswith("7B on TGI\nhi\n")


def test_print_mode_failure_shows_partial_text_and_error_then_reraises(capsys):
    clock = FakeClock()
    error = ContainerStreamError("TGI reported an error mid-stream: CUDA OOM", partial_text="Hel")
    with pytest.raises(ContainerStreamError) as excinfo:
        show_stream(
            ticking(clock, [Token("Hel"), Token("lo")], 0.01, error), mode="print", clock=clock
        )
    assert excinfo.value is error
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Hello"
    assert lines[1] == f"Stream failed: ContainerStreamError: {error}"
    assert lines[2].endswith("| incomplete")


def test_failure_can_be_returned_instead_of_raised(capsys):
    error = ContainerStreamError("boom")
    result = show_stream(
        ticking(FakeClock(), [Token("par"), Token("tial")], 0.01, error),
        mode="print", raise_errors=False,
    )
    assert result.error is error
    assert result.text == "partial"
    assert result.metrics.finished is False


# --------------------------------------------------------------------------- widget mode


def test_widget_mode_ends_with_the_exact_text_and_the_final_figures(shown):
    clock = FakeClock()
    result = show_stream(
        ticking(clock, tokens_for(PIECES), 0.01), mode="widget", title="<7B>", clock=clock
    )
    (box,) = shown
    assert ROOT_CLASS in box._dom_classes
    (title,) = by_class(box, TITLE_CLASS)
    assert "&lt;7B&gt;" in title.value
    (text,) = by_class(box, TEXT_CLASS)
    (footer,) = by_class(box, METRICS_CLASS)
    assert text_of(text.value) == "".join(PIECES) == result.text
    assert "<b>" not in text.value  # the model's text is escaped, not rendered
    assert "white-space: pre-wrap" in text.value
    assert footer.value == html.escape(result.metrics.summary())
    assert not by_class(box, ERROR_CLASS)


def test_widget_redraws_are_throttled_but_the_final_text_is_complete(monkeypatch):
    assignments = []
    boxes = []

    def watch(box):  # attach the counter before the first redraw
        boxes.append(box)
        by_class(box, TEXT_CLASS)[0].observe(assignments.append, names="value")

    monkeypatch.setattr(display, "show_widget", watch)
    clock = FakeClock()
    pieces = [f"w{i} " for i in range(1000)]  # 1000 tokens, one per millisecond: 1 s
    result = show_stream(
        ticking(clock, [Token(p) for p in pieces], 0.001), mode="widget", clock=clock,
        redraw_interval_s=0.05,
    )
    # <= 20 redraws/s: the first token, ~20 throttled redraws, the final one -- not 1000.
    assert 10 <= len(assignments) <= 1.0 / 0.05 + 2
    (text,) = by_class(boxes[0], TEXT_CLASS)
    assert text_of(text.value) == text_of(assignments[-1]["new"]) == "".join(pieces)
    assert result.text == "".join(pieces)


def test_widget_failure_shows_partial_text_and_error_then_reraises(shown):
    clock = FakeClock()
    error = ContainerStreamError("LMI reported an error mid-stream: boom", partial_text="ab")
    with pytest.raises(ContainerStreamError) as excinfo:
        show_stream(
            ticking(clock, [Token("a"), Token("b")], 0.01, error), mode="widget", clock=clock
        )
    assert excinfo.value is error
    (box,) = shown
    (text,) = by_class(box, TEXT_CLASS)
    assert text_of(text.value) == "ab"
    (line,) = by_class(box, ERROR_CLASS)
    assert html.escape(str(error)) in line.value
    assert "incomplete" in by_class(box, METRICS_CLASS)[0].value


def test_widget_mode_without_ipywidgets_says_how_to_fix(monkeypatch, shown):
    import builtins

    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("No module named 'ipywidgets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    with pytest.raises(ImportError, match="mode='print'"):
        show_stream(iter([Token("x")]), mode="widget")
    assert resolve_mode("auto") == "print"  # auto never picks a widget it cannot build


# --------------------------------------------------------------------------- mode choice


@pytest.mark.parametrize(("env", "in_kernel", "expected"), [
    ("print", True, "print"),
    ("widget", False, "widget"),
    ("WIDGET", False, "widget"),
    ("auto", True, "widget"),
    ("auto", False, "print"),
    (None, True, "widget"),
    (None, False, "print"),
    ("", True, "widget"),
])
def test_auto_mode_reads_the_env_var_then_the_kernel(monkeypatch, env, in_kernel, expected):
    if env is None:
        monkeypatch.delenv("COMMON_DISPLAY", raising=False)
    else:
        monkeypatch.setenv("COMMON_DISPLAY", env)
    monkeypatch.setattr(display, "in_jupyter_kernel", lambda: in_kernel)
    assert resolve_mode() == expected
    assert resolve_mode("auto") == expected


def test_explicit_mode_beats_the_env_var(monkeypatch):
    monkeypatch.setenv("COMMON_DISPLAY", "widget")
    assert resolve_mode("print") == "print"


def test_kernel_detection_uses_get_ipython(monkeypatch):
    import IPython

    monkeypatch.delenv("COMMON_DISPLAY", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert resolve_mode() == "print"
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()}))
    assert resolve_mode() == "widget"


def test_env_var_selects_print_for_show_stream(monkeypatch, capsys, shown):
    monkeypatch.setenv("COMMON_DISPLAY", "print")
    monkeypatch.setattr(display, "in_jupyter_kernel", lambda: True)
    show_stream(iter([Token("hi")]))
    assert capsys.readouterr().out.startswith("hi\n")
    assert shown == []


@pytest.mark.parametrize(("mode", "env"), [("fancy", None), (None, "tty")])
def test_unknown_modes_are_rejected(monkeypatch, mode, env):
    if env:
        monkeypatch.setenv("COMMON_DISPLAY", env)
    with pytest.raises(ValueError, match="one of auto, widget, print"):
        show_stream(iter([]), mode=mode)


# --------------------------------------------------------------------------- chart


@pytest.fixture
def agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_latency_chart_draws_both_bars_per_row(agg):
    rows = [("7B TGI", 0.21, 6.4), ("13B LMI", 0.35, 11.0)]
    fig = plot_latency_comparison(rows)
    (ax,) = fig.axes
    streaming, blocking = ax.containers
    assert [bar.get_width() for bar in streaming] == [0.21, 0.35]
    assert [bar.get_width() for bar in blocking] == [6.4, 11.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["7B TGI", "13B LMI"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "streaming: first token", "blocking: whole answer"
    }


def test_latency_chart_draws_on_a_given_axes(agg):
    fig, ax = agg.subplots()
    assert plot_latency_comparison([("x", 0.1, 1.0)], ax=ax) is fig


@pytest.mark.parametrize("rows", [
    [], [("x", 0.1)], [("x", -0.1, 1.0)], [("x", 0.1, float("nan"))], [("x", "0.1", 1.0)],
])
def test_latency_chart_rejects_bad_rows(rows):
    with pytest.raises(ValueError):
        plot_latency_comparison(rows)
