"""A chat with the endpoint in the notebook: transcript, text box, Send, Stop, Clear, meter.

:func:`show_chat` shows an ipywidgets chat around a :class:`~common.conversation.Conversation`
and a function that sends one request body and returns its token stream (the notebook's own
``invoke_endpoint_with_response_stream`` call). Each answer streams into the transcript as
it arrives, with its TTFT and tokens/s; **Stop** closes the answer's stream (its partial text
is kept, in the transcript and in the conversation); **Clear** forgets the turns (the system
prompt stays); the meter shows the prompt tokens used of the limit and the turns dropped to
make the conversation fit.

The cell that shows the chat ends at once: the kernel is then idle, so it handles Send and
Stop clicks while an answer streams in a worker thread (which updates the widgets).

Headless (``COMMON_DISPLAY=print``, as nbval and the demo run the notebooks), the chat sends
``question`` through the same code and prints the answer.

CSS classes (stable; browser tests and the server page use the same names):

=============================== =========================================================
``llama2-chat``                 the outer box
``llama2-chat-transcript``      the transcript (one child per message)
``llama2-chat-user``            a question in the transcript
``llama2-chat-answer``          an answer in the transcript (its text)
``llama2-chat-figures``         an answer's TTFT and tokens/s
``llama2-chat-input``           the text box
``llama2-chat-send``            the Send button
``llama2-chat-stop``            the Stop button
``llama2-chat-clear``           the Clear button
``llama2-chat-meter``           the context meter
``llama2-chat-notice``          notices: turns dropped, errors
=============================== =========================================================
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from common import display
from common.conversation import Conversation, PreparedTurn
from common.display import (
    StreamResult,
    final_line,
    interrupt_stream,
    live_metrics_line,
    read_until_stopped,
    resolve_mode,
)
from common.errors import RecipeError
from common.metrics import measure

__all__ = ["CHAT_CLASSES", "ChatView", "show_chat"]

CHAT_CLASSES = {
    "root": "llama2-chat",
    "transcript": "llama2-chat-transcript",
    "user": "llama2-chat-user",
    "answer": "llama2-chat-answer",
    "figures": "llama2-chat-figures",
    "input": "llama2-chat-input",
    "send": "llama2-chat-send",
    "stop": "llama2-chat-stop",
    "clear": "llama2-chat-clear",
    "meter": "llama2-chat-meter",
    "notice": "llama2-chat-notice",
}
_TEXT_STYLE = ("white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45; "
               "margin: 2px 0;")
_REDRAW_INTERVAL_S = 0.05

OpenStream = Callable[[dict[str, Any]], Iterable[Any]]


def _meter_text(conversation: Conversation, turn: PreparedTurn | None,
                answer_tokens: int | None) -> str:
    if turn is None:
        used = f"0 of {conversation.prompt_limit} prompt tokens"
    else:
        used = f"{turn.prompt_tokens} of {turn.prompt_limit} prompt tokens in the last request"
        if answer_tokens is not None:
            used += f" (+{answer_tokens} answered)"
    dropped = conversation.dropped_turns
    return (f"Context: {used} | {dropped} turn{'s' if dropped != 1 else ''} dropped | "
            f"counted with {conversation.count_tokens.source}")


class ChatView:
    """The chat's controller: what the buttons do, also callable from code.

    Use :func:`show_chat` to make one. Attributes: ``conversation``; ``results`` (a
    :class:`~common.display.StreamResult` per answer, ``stopped=True`` for stopped ones);
    ``box`` (the widget, in widget mode).
    """

    def __init__(self, conversation: Conversation, open_stream: OpenStream, *,
                 mode: str, question: str | None = None, title: str | None = None) -> None:
        self.conversation = conversation
        self.open_stream = open_stream
        self.mode = mode
        self.results: list[StreamResult] = []
        self._stop = threading.Event()
        self._tokens: Any = None
        self._worker: threading.Thread | None = None
        self._last_turn: PreparedTurn | None = None
        self.box: Any = None
        if mode == "widget":
            self._build_widgets(question, title)
        elif title:
            print(title, flush=True)

    # -- widgets
    def _build_widgets(self, question: str | None, title: str | None) -> None:
        import ipywidgets as widgets

        self._widgets = widgets

        def classed(widget: Any, key: str) -> Any:
            widget.add_class(CHAT_CLASSES[key])
            return widget

        self.transcript = classed(widgets.VBox([]), "transcript")
        self.input = classed(widgets.Textarea(
            value=question or "", placeholder="Ask something, then press Send",
            layout=widgets.Layout(width="100%", height="4em")), "input")
        self.send_button = classed(widgets.Button(description="Send", icon="paper-plane",
                                                  button_style="primary"), "send")
        self.stop_button = classed(widgets.Button(description="Stop", icon="stop",
                                                  disabled=True), "stop")
        self.clear_button = classed(widgets.Button(description="Clear", icon="trash"), "clear")
        self.meter = classed(widgets.HTML(html.escape(_meter_text(self.conversation, None,
                                                                  None))), "meter")
        self.notice = classed(widgets.HTML(""), "notice")
        self.send_button.on_click(lambda _b: self.send(self.input.value))
        self.stop_button.on_click(lambda _b: self.stop())
        self.clear_button.on_click(lambda _b: self.clear())
        children = []
        if title:
            children.append(widgets.HTML(f"<b>{html.escape(title)}</b>"))
        children += [self.transcript, self.input,
                     widgets.HBox([self.send_button, self.stop_button, self.clear_button]),
                     self.meter, self.notice]
        self.box = classed(widgets.VBox(children), "root")
        display.show_widget(self.box)

    def _bubble(self, text: str, key: str) -> Any:
        widget = self._widgets.HTML(self._html(text))
        widget.add_class(CHAT_CLASSES[key])
        return widget

    @staticmethod
    def _html(text: str) -> str:
        return f'<div style="{_TEXT_STYLE}">{html.escape(text)}</div>'

    def _say(self, text: str) -> None:
        if self.mode == "widget":
            self.notice.value = html.escape(text)
        else:
            print(text, flush=True)

    # -- actions
    @property
    def busy(self) -> bool:
        """Whether an answer is streaming."""
        return self._worker is not None and self._worker.is_alive()

    def send(self, text: str) -> None:
        """Send ``text`` as the next question (what Send does). In widget mode the answer
        streams in a worker thread (:meth:`wait` waits for it); in print mode this returns
        once the answer is printed. A message that cannot fit, or a failed request, is
        shown, not raised, so the chat stays usable."""
        if self.busy:
            self._say("An answer is still streaming: press Stop first.")
            return
        try:
            turn = self.conversation.prepare(text)
        except RecipeError as exc:
            self._say(str(exc))
            return
        self._last_turn = turn
        self._stop = threading.Event()
        notice = turn.notice()
        if self.mode == "widget":
            self.input.value = ""
            self.notice.value = html.escape(notice or "")
            answer = self._bubble("", "answer")
            figures = self._bubble("waiting for the first token ...", "figures")
            self.transcript.children = (*self.transcript.children,
                                        self._bubble(text, "user"), answer, figures)
            self.send_button.disabled = True
            self.stop_button.disabled = False
            self._worker = threading.Thread(target=self._answer, args=(turn, answer, figures),
                                            name="chat answer", daemon=True)
            self._worker.start()
        else:
            print(f"You: {text}", flush=True)
            if notice:
                print(notice, flush=True)
            print("Assistant:", end="", flush=True)
            self._answer(turn, None, None)

    def _answer(self, turn: PreparedTurn, answer: Any, figures: Any) -> None:
        started = time.perf_counter()
        try:
            tokens = self.open_stream(turn.payload)
        except Exception as exc:  # shown in the chat; the question is withdrawn
            self.conversation.withdraw_question()
            self._finish_widgets()
            self._say(f"The request failed: {type(exc).__name__}: {exc}")
            if figures is not None:
                figures.value = self._html("no answer (the request failed)")
            return
        self._tokens = tokens
        stream = measure(tokens, start=started)
        last = [0.0]
        pieces: list[str] = []

        def on_piece(piece: str, now: float) -> None:
            pieces.append(piece)
            if answer is None:
                print(piece, end="", flush=True)
            elif now - last[0] >= _REDRAW_INTERVAL_S:
                last[0] = now
                answer.value = self._html("".join(pieces))
                figures.value = self._html(live_metrics_line(stream.metrics))

        outcome = read_until_stopped(stream, tokens, on_piece, self._stop)
        text = stream.text
        self.conversation.record_answer(text)
        metrics = stream.metrics
        result = StreamResult(text, metrics, metrics.token_count, outcome.error,
                              outcome.stopped)
        self.results.append(result)
        summary = final_line(metrics, stopped=outcome.stopped)
        meter = _meter_text(self.conversation, turn, metrics.token_count)
        if answer is None:
            print(flush=True)
            if outcome.stopped:
                print("[stopped: the partial answer is kept]", flush=True)
            if outcome.error is not None:
                print(f"Stream failed: {type(outcome.error).__name__}: {outcome.error}",
                      flush=True)
            print(summary, flush=True)
            print(meter, flush=True)
            return
        answer.value = self._html(text)
        figures.value = self._html(summary)
        self.meter.value = html.escape(meter)
        if outcome.error is not None:
            self._say(f"Stream failed: {type(outcome.error).__name__}: {outcome.error}")
        self._finish_widgets()

    def _finish_widgets(self) -> None:
        self._tokens = None
        if self.mode == "widget":
            self.send_button.disabled = False
            self.stop_button.disabled = True

    def stop(self) -> None:
        """Stop the answer that is streaming (what Stop does): its connection is closed and
        its partial text kept. Does nothing when no answer streams."""
        self._stop.set()
        tokens = self._tokens
        if tokens is not None:
            interrupt_stream(tokens)

    def clear(self) -> None:
        """Forget the conversation's turns and empty the transcript (what Clear does)."""
        if self.busy:
            self.stop()
            self.wait()
        self.conversation.clear()
        self._last_turn = None
        if self.mode == "widget":
            self.transcript.children = ()
            self.notice.value = ""
            self.meter.value = html.escape(_meter_text(self.conversation, None, None))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the streaming answer to end; return whether it has."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy


def show_chat(
    conversation: Conversation,
    open_stream: OpenStream,
    *,
    question: str | None = None,
    title: str | None = None,
    mode: str | None = None,
) -> ChatView:
    """Show a chat with the endpoint: transcript, text box, Send, Stop, Clear, meter.

    Args:
        conversation: the :class:`~common.conversation.Conversation` (messages, limits,
            token counter, prompt builder or Messages API).
        open_stream: ``open_stream(payload) -> token stream``: sends one request body with
            ``invoke_endpoint_with_response_stream`` and returns
            ``common.iter_tokens(response["Body"], ...)``.
        question: in widget mode, put in the text box to start with; headless (print mode),
            sent at once and its answer printed.
        title: a heading.
        mode: ``"widget"``, ``"print"`` or ``"auto"``/``None`` (see
            :func:`common.display.resolve_mode`).

    Returns:
        The :class:`ChatView` (``send``, ``stop``, ``clear``, ``wait``, ``results``).

    Raises:
        ValueError: for an unknown mode; headless without a ``question``.
        ImportError: widget mode without ipywidgets.
    """
    chosen = resolve_mode(mode)
    if chosen == "print" and not question:
        raise ValueError("Headless (print mode) the chat needs question= to send: pass "
                         "the scripted question.")
    view = ChatView(conversation, open_stream, mode=chosen, question=question, title=title)
    if chosen == "print":
        view.send(question or "")
    return view
