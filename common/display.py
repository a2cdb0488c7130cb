"""The live view of a token stream in a notebook, with its latency figures.

:func:`show_stream` consumes a token stream (``common.iter_tokens(response["Body"])``),
measures it with :func:`common.metrics.measure`, and shows the answer as it grows:

* ``"widget"`` mode -- an ipywidgets box whose text grows in place (wrapped, newlines and
  emoji kept, HTML-escaped) above a footer with TTFT, tokens so far, tokens/s and the
  elapsed time; the footer ends with the final figures.
* ``"print"`` mode -- each piece of text printed (flushed) as it arrives, then a newline and
  :meth:`StreamMetrics.summary`.
* ``"auto"`` (the default) -- the ``COMMON_DISPLAY`` environment variable (``widget``,
  ``print`` or ``auto``) if set; else ``widget`` inside a Jupyter kernel with ipywidgets
  installed, else ``print``.

Widget redraws are throttled (at most ``1 / redraw_interval_s`` per second, 20 by default)
so that a fast stream never queues comm messages; the last redraw always shows exactly the
text that arrived.

CSS class names of the widget (stable; browser tests find the view by them):

========================== ==========================================================
``llama2-stream``          the outer ``VBox``
``llama2-stream-title``    the title line (only with ``title=``)
``llama2-stream-text``     the answer (an ``HTML`` widget; its text is the answer)
``llama2-stream-metrics``  the footer with the figures
``llama2-stream-error``    the error line (only after a failure)
``llama2-stream-stop``     the **Stop** button
========================== ==========================================================

Stopping
--------
Closing a stream stops it. The **Stop** button, or ``stop.set()`` on the
:class:`threading.Event` passed as ``stop=``, closes the response body (botocore's
``EventStream``, hence its HTTP connection); the text received so far is kept and the result
says :attr:`StreamResult.stopped` -- a stop is never raised as an error. The tokens are read
in a worker thread while the cell's own thread draws them. A running cell receives no
widget message until it ends, so the Stop button's clicks are routed to a kernel subshell
of their own (ipykernel 7), or polled with ``jupyter_ui_poll`` (ipykernel 6). A read that is
blocked waiting for bytes (a slow first token, a stalled stream) is woken by shutting the
connection down.
"""

from __future__ import annotations

import html
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from common.metrics import MeasuredStream, StreamMetrics, measure

__all__ = [
    "DISPLAY_ENV_VAR",
    "ERROR_CLASS",
    "METRICS_CLASS",
    "ROOT_CLASS",
    "STOP_CLASS",
    "TEXT_CLASS",
    "TITLE_CLASS",
    "StreamResult",
    "plot_latency_comparison",
    "resolve_mode",
    "show_stream",
]

DISPLAY_ENV_VAR = "COMMON_DISPLAY"
ROOT_CLASS = "llama2-stream"
TITLE_CLASS = "llama2-stream-title"
TEXT_CLASS = "llama2-stream-text"
METRICS_CLASS = "llama2-stream-metrics"
ERROR_CLASS = "llama2-stream-error"
STOP_CLASS = "llama2-stream-stop"

_MODES = ("auto", "widget", "print")
_TEXT_STYLE = (
    "white-space: pre-wrap; overflow-wrap: anywhere; font-family: var(--jp-code-font-family, "
    "monospace); line-height: 1.45; margin: 0;"
)


@dataclass
class StreamResult:
    """What :func:`show_stream` saw.

    Attributes:
        text: the answer's text (the non-special tokens, joined) -- complete, or what
            arrived before a failure.
        metrics: the final :class:`~common.metrics.StreamMetrics`.
        tokens: the number of non-special tokens.
        error: the exception that ended the stream when ``raise_errors=False``, else ``None``.
        stopped: ``True`` when the reader stopped the stream (Stop button or ``stop=``)
            before it ended: ``text`` is then the partial answer, kept on purpose.
    """

    text: str
    metrics: StreamMetrics
    tokens: int
    error: BaseException | None = None
    stopped: bool = False


# --------------------------------------------------------------------------- mode choice


def in_jupyter_kernel() -> bool:
    """Return whether this code runs inside a Jupyter (IPython) kernel, where rich displays
    and widgets show; ``False`` in a plain interpreter or without IPython. Raises nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_mode(mode: str | None = None) -> str:
    """Return the display mode to use: ``"widget"`` or ``"print"``.

    Args:
        mode: ``"widget"``, ``"print"``, ``"auto"`` or ``None`` (= ``"auto"``). ``"auto"``
            reads ``COMMON_DISPLAY``; when that is unset, empty or ``auto`` it picks
            ``widget`` inside a Jupyter kernel with ipywidgets installed, else ``print``.

    Raises:
        ValueError: for an unknown ``mode`` or ``COMMON_DISPLAY`` value.
    """
    choice = "auto" if mode is None else mode
    if choice not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
    if choice == "auto":
        env = os.environ.get(DISPLAY_ENV_VAR, "").strip().lower() or "auto"
        if env not in _MODES:
            raise ValueError(
                f"{DISPLAY_ENV_VAR}={os.environ[DISPLAY_ENV_VAR]!r} is not a display mode: set "
                f"it to one of {', '.join(_MODES)}, or unset it."
            )
        choice = env
    if choice == "auto":
        choice = "widget" if in_jupyter_kernel() and _widgets_available() else "print"
    return choice


# --------------------------------------------------------------------------- views


def live_metrics_line(metrics: StreamMetrics) -> str:
    """Return the one-line figures of a stream still running: TTFT, tokens so far, tokens/s
    and seconds elapsed (``-`` for a figure not known yet). Raises nothing."""
    ttft = "-" if metrics.ttft_s is None else f"{metrics.ttft_s * 1000:.0f} ms"
    rate = "-" if metrics.tokens_per_s is None else f"{metrics.tokens_per_s:.1f}"
    return (
        f"TTFT {ttft} | {metrics.token_count} tokens so far | {rate} tokens/s | "
        f"{metrics.total_s:.2f} s elapsed"
    )


def _error_line(error: BaseException) -> str:
    return f"Stream failed: {type(error).__name__}: {error}"


def final_line(metrics: StreamMetrics, *, stopped: bool = False) -> str:
    """The figures of a finished stream; a stopped one ends with ``| stopped`` (not
    ``| incomplete``), since it ended because the reader asked."""
    summary = metrics.summary()
    if stopped:
        summary = summary.removesuffix(" | incomplete") + " | stopped"
    return summary


class _PrintView:
    """Plain text: each piece printed as it arrives, then the summary."""

    def __init__(self, title: str | None) -> None:
        if title:
            print(title, flush=True)

    def add(self, piece: str, stream: MeasuredStream, *, now: float) -> None:
        print(piece, end="", flush=True)

    def finish(self, stream: MeasuredStream, error: BaseException | None,
               stopped: bool = False) -> None:
        print(flush=True)
        if stopped:
            print("[stopped: the partial answer above is kept]", flush=True)
        if error is not None:
            print(_error_line(error), flush=True)
        print(final_line(stream.metrics, stopped=stopped), flush=True)


def show_widget(widget: Any) -> None:
    """Display ``widget`` in the notebook; returns nothing. A seam that tests replace: callers
    look it up on this module at call time.

    Raises:
        ImportError: IPython is not installed.
    """
    from IPython.display import display

    display(widget)


class _WidgetView:
    """An ipywidgets box whose text grows in place, redrawn at most every ``interval`` s."""

    def __init__(self, title: str | None, *, interval: float,
                 stop: threading.Event | None = None) -> None:
        try:
            import ipywidgets as widgets
        except ImportError as exc:
            raise ImportError(
                "display mode 'widget' needs ipywidgets: pip install ipywidgets, or use "
                f"show_stream(..., mode='print') / {DISPLAY_ENV_VAR}=print."
            ) from exc
        self._widgets = widgets
        self._interval = interval
        self._last_redraw: float | None = None
        self._pieces: list[str] = []
        self.redraws = 0
        self.text = widgets.HTML(value=self._text_html(""))
        self.text.add_class(TEXT_CLASS)
        self.footer = widgets.HTML(value="waiting for the first token ...")
        self.footer.add_class(METRICS_CLASS)
        children: list[Any] = []
        if title:
            heading = widgets.HTML(value=f"<b>{html.escape(title)}</b>")
            heading.add_class(TITLE_CLASS)
            children.append(heading)
        children += [self.text, self.footer]
        self.stop_button: Any = None
        if stop is not None:
            self.stop_button = widgets.Button(description="Stop", icon="stop",
                                              tooltip="Stop generating (keeps the text so far)")
            self.stop_button.add_class(STOP_CLASS)
            self.stop_button.on_click(lambda _button: stop.set())
            children.append(self.stop_button)
        self.box = widgets.VBox(children)
        self.box.add_class(ROOT_CLASS)
        show_widget(self.box)

    @staticmethod
    def _text_html(text: str) -> str:
        return f'<div style="{_TEXT_STYLE}">{html.escape(text)}</div>'

    def add(self, piece: str, stream: MeasuredStream, *, now: float) -> None:
        self._pieces.append(piece)
        if self._last_redraw is not None and now - self._last_redraw < self._interval:
            return
        self._last_redraw = now
        self._redraw(live_metrics_line(stream.metrics))

    def _redraw(self, footer: str) -> None:
        self.redraws += 1
        self.text.value = self._text_html("".join(self._pieces))
        self.footer.value = html.escape(footer)

    def finish(self, stream: MeasuredStream, error: BaseException | None,
               stopped: bool = False) -> None:
        self._redraw(final_line(stream.metrics, stopped=stopped))
        if self.stop_button is not None:
            self.stop_button.disabled = True
            if stopped:
                self.stop_button.description = "Stopped"
        if error is not None:
            line = self._widgets.HTML(
                value=f'<span style="color: var(--jp-error-color1, #d32f2f);">'
                f"{html.escape(_error_line(error))}</span>"
            )
            line.add_class(ERROR_CLASS)
            self.box.children = (*self.box.children, line)


def _piece(token: Any) -> str:
    if isinstance(token, str):
        return token
    if getattr(token, "special", False):
        return ""
    return getattr(token, "text", "") or ""


# --------------------------------------------------------------------------- stopping


@dataclass
class ReadOutcome:
    """How :func:`read_until_stopped` ended: ``error`` (a failure of the stream, not caused
    by the stop) and ``stopped`` (the stop came before the stream's end)."""

    error: BaseException | None = None
    stopped: bool = False


def close_stream(tokens: Any) -> None:
    """Close a token stream and its response body (from the thread that reads it).

    ``common.iter_tokens`` streams close botocore's ``EventStream`` (hence the HTTP
    connection, which tells the endpoint to stop); other iterables are closed when they
    have a ``close()``.
    """
    close = getattr(tokens, "close", None)
    if callable(close):
        close()


def interrupt_stream(tokens: Any) -> bool:
    """Wake a read that is blocked on ``tokens``' connection, from any thread.

    botocore's ``EventStream`` reads through a urllib3 response; shutting its socket down for
    reading makes the blocked ``recv`` return at once (the reading thread then closes the
    stream). Returns whether a connection was shut down; other iterables are left alone.
    """
    source = getattr(tokens, "_source", tokens)  # a TokenStream's event stream
    raw = getattr(source, "_raw_stream", None)  # botocore EventStream -> urllib3 response
    shutdown = getattr(raw, "shutdown", None)
    if not callable(shutdown):
        return False
    try:
        shutdown()
    except (OSError, ValueError, RuntimeError):  # already closed or released
        return False
    return True


def read_until_stopped(
    stream: Iterable[Any],
    tokens: Any,
    on_piece: Callable[[str, float], None],
    stop: threading.Event,
    clock: Callable[[], float] = time.perf_counter,
) -> ReadOutcome:
    """Read ``stream`` in this thread, calling ``on_piece(text, arrival_time)`` for each
    piece of text, until it ends, fails, or ``stop`` is set.

    On a stop the stream ``tokens`` is closed (:func:`close_stream`) and the outcome says
    ``stopped``; an error raised because the connection was shut down for the stop is part
    of the stop, not a failure.

    Returns:
        A :class:`ReadOutcome`; a failure of the stream is returned in it, never raised.
    """
    outcome = ReadOutcome()
    try:
        for token in stream:
            piece = _piece(token)
            if piece:
                on_piece(piece, clock())
            if stop.is_set():
                outcome.stopped = True
                break
    except Exception as exc:
        if stop.is_set():
            outcome.stopped = True
        else:
            outcome.error = exc
    if outcome.stopped:
        close_stream(tokens)
    return outcome


_DONE = object()


def _on_shell_channel_thread(kernel: Any, call: Callable[[], Any]) -> Any:
    """Run ``call()`` on ipykernel 7's shell-channel thread; return its result."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except Exception as exc:  # handed back to the caller below
            box["error"] = exc
        finally:
            done.set()

    kernel.shell_channel_thread.io_loop.add_callback(run)
    if not done.wait(5):
        raise TimeoutError("ipykernel's shell-channel thread did not answer")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _clicks_while_running(button: Any) -> Callable[[], None] | None:
    """Let ``button``'s clicks reach the kernel while the cell runs; return a function that
    undoes it (call it after the last change to the button), or ``None`` when impossible.

    ipykernel 7 (kernel subshells, JEP 91): a subshell is a thread of its own that handles
    shell messages while the main one runs a cell, and ipykernel routes a comm's incoming
    messages to the subshell its ``_reply_subshell_id`` names. The button's comm is routed to
    a subshell made for this stream, so its click runs there and sets the stop event.
    ipykernel 6 (no subshells): ``jupyter_ui_poll`` lets the kernel handle pending widget
    events from the cell's thread (see :func:`_ui_poller`).
    """
    if not in_jupyter_kernel():
        return None
    from IPython import get_ipython

    kernel = get_ipython().kernel  # type: ignore[union-attr]
    manager = getattr(getattr(kernel, "shell_channel_thread", None), "manager", None)
    comm = getattr(button, "comm", None)
    if (not getattr(kernel, "_supports_kernel_subshells", False) or manager is None
            or comm is None or not hasattr(comm, "_reply_subshell_for")):
        return None
    try:
        subshell_id = _on_shell_channel_thread(kernel, manager._create_subshell)
    except Exception:  # an ipykernel whose internals differ: fall back to polling
        return None
    comm._reply_subshell_id = subshell_id

    def undo() -> None:
        comm._reply_subshell_id = None
        _on_shell_channel_thread(kernel, lambda: manager._delete_subshell(subshell_id))

    return undo


def _ui_poller() -> Callable[[], None] | None:
    """A function that lets the kernel handle pending widget events (ipykernel 6, with
    ``jupyter_ui_poll``), or ``None`` outside a kernel or without it."""
    if not in_jupyter_kernel():
        return None
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        return None
    poller = ui_events()
    poll = poller.__enter__()
    state = {"open": True}

    def handle_events() -> None:
        if state["open"]:
            poll(10)

    handle_events.close = lambda: (state.update(open=False),  # type: ignore[attr-defined]
                                   poller.__exit__(None, None, None))
    return handle_events


def show_stream(
    tokens: Iterable[Any],
    *,
    title: str | None = None,
    start: float | None = None,
    mode: str | None = None,
    raise_errors: bool = True,
    redraw_interval_s: float = 0.05,
    clock: Callable[[], float] = time.perf_counter,
    stop: threading.Event | None = None,
) -> StreamResult:
    """Show a token stream live as it is consumed, and return its text and metrics.

    The widget has a **Stop** button; ``stop=`` stops from code (``stop.set()`` from another
    thread or a callback). Either closes the response body and keeps the partial text.

    Args:
        tokens: an iterable of tokens with ``.text`` and ``.special`` (e.g.
            ``common.iter_tokens(response["Body"])``) or of plain strings.
        title: a heading shown above the answer.
        start: the ``clock()`` reading when the request was sent, so that TTFT includes the
            request (``time.perf_counter()`` taken before ``invoke_endpoint_with_response_stream``).
        mode: ``"widget"``, ``"print"`` or ``"auto"``/``None`` -- see :func:`resolve_mode`.
        raise_errors: re-raise a failure of the stream after showing it (default). With
            ``False`` the failure is returned in :attr:`StreamResult.error` instead.
        redraw_interval_s: the least time between two widget redraws (0.05 s = 20 per
            second); the final redraw always happens.
        clock: the clock for the metrics and the throttle (tests pass a fake one).
        stop: a :class:`threading.Event`; setting it stops the stream (its connection is
            closed) and the result has ``stopped=True`` with the text so far. Default: a new
            one, set by the Stop button.

    Returns:
        A :class:`StreamResult` (``stopped=True`` after a stop; a stop never raises).

    Raises:
        common.errors.StreamError: (or whatever else the token iterator raised) -- the same
            exception object, after the partial text and the error were shown.
        ValueError: for an unknown ``mode`` or ``COMMON_DISPLAY`` value.
        ImportError: for ``mode="widget"`` without ipywidgets.
    """
    chosen = resolve_mode(mode)
    stop_event = stop if stop is not None else threading.Event()
    stream = measure(tokens, start=start, clock=clock)
    view: _PrintView | _WidgetView
    if chosen == "widget":
        view = _WidgetView(title, interval=redraw_interval_s, stop=stop_event)
    else:
        view = _PrintView(title)
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outcome = ReadOutcome()

    def read() -> None:
        try:
            result = read_until_stopped(stream, tokens,
                                        lambda piece, now: arrived.put((piece, now)),
                                        stop_event, clock)
            outcome.error, outcome.stopped = result.error, result.stopped
        finally:
            arrived.put(_DONE)

    reader = threading.Thread(target=read, name="show_stream reader", daemon=True)
    finished = threading.Event()

    def watch() -> None:
        # A stop wakes a read that is blocked on the connection at once (not at the next
        # token): shut the socket down for reading; the reader then closes the stream.
        while not finished.is_set():
            if stop_event.wait(0.05):
                if not finished.is_set():
                    interrupt_stream(tokens)
                return

    watcher = threading.Thread(target=watch, name="show_stream stop", daemon=True)
    undo_routing = handle_ui_events = None
    if isinstance(view, _WidgetView) and view.stop_button is not None:
        undo_routing = _clicks_while_running(view.stop_button)
        if undo_routing is None:
            handle_ui_events = _ui_poller()
    try:
        reader.start()
        watcher.start()
        done = False
        while not done:
            try:
                item = arrived.get(timeout=0.02)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _DONE:
                    done = True
                    break
                view.add(item[0], stream, now=item[1])
                try:
                    item = arrived.get_nowait()
                except queue.Empty:
                    item = None
            if handle_ui_events is not None:
                handle_ui_events()
    finally:
        finished.set()
        if handle_ui_events is not None:
            handle_ui_events.close()  # type: ignore[attr-defined]
    reader.join()
    watcher.join()
    error = outcome.error
    try:
        view.finish(stream, error, outcome.stopped)
    finally:
        if undo_routing is not None:
            undo_routing()
    if error is not None and raise_errors:
        raise error
    metrics = stream.metrics
    return StreamResult(stream.text, metrics, metrics.token_count, error, outcome.stopped)


# --------------------------------------------------------------------------- chart


def _check_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[str, float, float]]:
    checked: list[tuple[str, float, float]] = []
    for index, row in enumerate(rows):
        if len(row) != 3:
            raise ValueError(
                f"rows[{index}] must be (label, streaming_ttft_s, blocking_total_s); got {row!r}"
            )
        label, ttft, total = row
        for name, value in (("streaming_ttft_s", ttft), ("blocking_total_s", total)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"rows[{index}] {name} must be a finite number of seconds >= 0, "
                    f"got {value!r}"
                )
        checked.append((str(label), float(ttft), float(total)))
    if not checked:
        raise ValueError("rows is empty: pass at least one (label, ttft_s, total_s) row")
    return checked


def plot_latency_comparison(rows: Iterable[Sequence[Any]], *, ax: Any = None) -> Any:
    """Draw time-to-first-token with streaming against the blocking call's latency.

    Args:
        rows: ``(label, streaming_ttft_s, blocking_total_s)`` per model or container, e.g.
            ``[("7B on TGI", 0.21, 6.4)]``.
        ax: a matplotlib ``Axes`` to draw on; default: a new figure.

    Returns:
        The matplotlib ``Figure`` that holds the chart.

    Raises:
        ValueError: when ``rows`` is empty or a row is not (label, seconds >= 0, seconds >= 0).
        ImportError: when matplotlib is not installed.
    """
    checked = _check_rows(rows)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7.0, 1.6 + 0.7 * len(checked)))
        created = True
    else:
        created = False
    positions = range(len(checked))
    height = 0.38
    streaming = ax.barh(
        [p - height / 2 for p in positions], [r[1] for r in checked], height,
        label="streaming: first token",
    )
    blocking = ax.barh(
        [p + height / 2 for p in positions], [r[2] for r in checked], height,
        label="blocking: whole answer",
    )
    for bars in (streaming, blocking):
        ax.bar_label(bars, fmt="%.2f s", padding=3, fontsize="small")
    ax.set_yticks(list(positions), [r[0] for r in checked])
    ax.invert_yaxis()
    ax.set_xlabel("seconds until the reader sees text")
    ax.set_xlim(0, max(max(r[1], r[2]) for r in checked) * 1.2 or 1.0)
    # Below the axes, so that the legend never hides the longest bar's label.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize="small")
    ax.set_title("Streaming vs. blocking: time to first visible text")
    if created:
        ax.figure.tight_layout()
    return ax.figure
