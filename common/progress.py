"""The progress of a long wait, readable wherever it is shown.

:class:`ProgressLine` is what ``common.wait_for_endpoint``,
``common.wait_for_inference_component`` and ``invoke_stream(..., wait_for_capacity=...)`` show
while they poll:

* in Jupyter (a kernel with ipywidgets, ``COMMON_DISPLAY`` unset or ``auto``/``widget``) --
  **one line that updates in place** (an IPython display handle, so the saved notebook keeps
  only the last state, not every poll);
* anywhere else -- a terminal, a headless run (``COMMON_DISPLAY=print``, as the tests and the
  demo run the notebooks), or an explicit ``out`` stream -- **a few plain lines**: one when
  the state changes (``Creating`` -> ``InService``), one more every ``repeat_after_s`` of an
  unchanged state so a long wait still shows it is alive, and the final line. Never ``\\r``:
  rewritten lines run together into one long line in a log file or a saved output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["ProgressLine", "format_elapsed"]


def format_elapsed(seconds: float) -> str:
    """Return ``seconds`` as ``MM:SS`` (minutes go past 59: ``75:00``)."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def _display_handle(text: str) -> Any:
    """Show ``text`` as an updatable plain-text output in Jupyter; return its handle."""
    from IPython.display import Pretty, display

    return display(Pretty(text), display_id=True)


class ProgressLine:
    """One wait's progress: an updating line in Jupyter, a few plain lines elsewhere.

    Use :meth:`update` at every poll and :meth:`finish` once at the end.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        enabled: bool = True,
        mode: str | None = None,
        repeat_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the line (nothing is shown until the first :meth:`update`).

        Args:
            out: write plain lines here (default ``sys.stdout``); giving one always means
                plain lines.
            enabled: ``False`` shows nothing at all.
            mode: ``"widget"``, ``"print"`` or ``"auto"``/``None``, as
                :func:`common.display.resolve_mode` reads them: ``widget`` updates one line
                in place in Jupyter, ``print`` writes lines.
            repeat_after_s: plain lines only: write an unchanged state again after this
                many seconds of ``clock``.
            clock: the clock ``repeat_after_s`` is measured on (injectable for tests).

        Raises:
            ValueError: for an unknown ``mode`` or ``COMMON_DISPLAY`` value.
        """
        from common.display import resolve_mode

        self.enabled = enabled
        self.live = enabled and out is None and resolve_mode(mode) == "widget"
        self.out = out
        self.repeat_after_s = repeat_after_s
        self._clock = clock
        self._handle: Any = None
        self._state: object = None
        self._written_at: float | None = None

    def _write(self, text: str) -> None:
        stream = self.out if self.out is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()
        self._written_at = self._clock()

    def _show_live(self, text: str) -> None:
        if self._handle is None:
            self._handle = _display_handle(text)
        else:
            from IPython.display import Pretty

            self._handle.update(Pretty(text))

    def update(self, text: str, *, state: object = None) -> None:
        """Show ``text`` as the current progress.

        Args:
            text: the whole line, e.g. ``"llama-2-7b: Creating (elapsed 03:15)"``.
            state: what counts as a change for plain lines (e.g. the status); ``None``
                means the text itself. A plain line is written when the state changes, or
                when ``repeat_after_s`` have passed since the last one.
        """
        if not self.enabled:
            return
        if self.live:
            self._show_live(text)
            return
        key = text if state is None else state
        due = (self._written_at is None
               or self._clock() - self._written_at >= self.repeat_after_s)
        if key != self._state or due:
            self._state = key
            self._write(text)

    def note(self, text: str) -> None:
        """Write ``text`` as a line of its own that stays (before the progress starts)."""
        if not self.enabled:
            return
        stream = self.out if self.out is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def finish(self, text: str) -> None:
        """Show the final state (the updating line becomes ``text``; a plain line is written)."""
        if not self.enabled:
            return
        if self.live:
            self._show_live(text)
            return
        self._state = None
        self._write(text)
