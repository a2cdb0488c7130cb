"""The notebook chat and the live view's Stop in a real browser (JupyterLab + Chromium).

The 7B TGI recipe's deploy and inference notebooks run unchanged through *Run All* (as in
``test_browser.py``, whose JupyterLab and browser helpers this test shares); then the test
uses the chat that ``common.show_chat`` drew at the end of the inference notebook, as a
reader does: it types a question, presses **Send**, sees the answer grow, presses **Stop**
mid-answer (the stand-in's replay is paced slowly, so the answer takes seconds), and sends a
follow-up -- whose prompt, in the stand-in's request log, carries the first turn.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_browser import PANEL, _copy_recipe, _jupyter_lab, _launch, _run_all, pytestmark

from common.local.stack import LocalStack

__all__ = ["pytestmark"]

FIRST = "Write an email about the AnyCloud Internet Service."
FOLLOW_UP = "Now make it shorter."
CHAT_PACE = {"ttft_s": 0.05, "tokens_per_s": 15.0}  # an answer of ~150 tokens takes ~10 s


@contextmanager
def chat_paced(stack: LocalStack) -> Iterator[None]:
    """Pace the session's replay backend slowly (:data:`CHAT_PACE`); restore it after."""
    backend = stack.backend
    saved = {name: getattr(backend, name) for name in CHAT_PACE}
    for name, value in CHAT_PACE.items():
        setattr(backend, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(backend, name, value)


def watch_growth(answer, values: int = 3, timeout_s: float = 30) -> list[str]:
    """The first ``values`` different texts ``answer`` shows (fewer on a timeout); each must
    begin with the one before -- the answer grows in place."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < values and time.monotonic() < deadline:
        text = answer.inner_text()
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.1)
    assert all(later.startswith(earlier.rstrip())
               for earlier, later in itertools.pairwise(seen)), seen
    return seen


@contextmanager
def deployed_recipe_page(stack: LocalStack, tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    """JupyterLab with the recipe's deploy notebook run; yields (lab, page, inference path)."""
    from playwright.sync_api import sync_playwright

    with _jupyter_lab(stack, tmp_path) as lab, sync_playwright() as playwright:
        deploy, inference = _copy_recipe(lab.root)
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _run_all(page, lab, deploy)
            yield lab, page, inference
        finally:
            browser.close()


def _chat_requests(stack: LocalStack, question: str) -> list[dict]:
    """The streaming requests whose prompt asks ``question`` last."""
    return [r for r in stack.requests()
            if r["operation"] == "InvokeEndpointWithResponseStream"
            and isinstance(r.get("body"), dict)
            and str(r["body"].get("inputs", "")).endswith(f"{question} [/INST]")]


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_chat_in_jupyterlab_send_stop_and_follow_up(local_stack: LocalStack, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import test_browser

    def keep_the_endpoint(stack_env: dict[str, str], home: Path) -> dict[str, str]:
        env = lab_environment(stack_env, home)
        env.pop("RECIPES_CLEAN_UP", None)  # the chat is used after Run All: keep its endpoint
        return env

    lab_environment = test_browser._lab_environment
    monkeypatch.setattr(test_browser, "_lab_environment", keep_the_endpoint)

    backend = local_stack.backend
    with deployed_recipe_page(local_stack, tmp_path) as (lab, page, inference):
        _run_all(page, lab, inference)
        chat = page.locator(f"{PANEL} .llama2-chat")
        chat.wait_for(timeout=30_000)
        with chat_paced(local_stack):
            meter = chat.locator(".llama2-chat-meter")
            assert "0 of" in meter.inner_text()
            box = chat.locator(".llama2-chat-input textarea")
            box.fill(FIRST)
            chat.locator("button.llama2-chat-send").click()
            answer = chat.locator(".llama2-chat-answer").first
            seen = watch_growth(answer)
            if len(seen) < 3:
                page.screenshot(path=str(tmp_path / "chat-did-not-grow.png"))
                pytest.fail(f"the answer did not grow: {seen!r}; chat: {chat.inner_text()!r}"
                            f"; last request: {local_stack.requests()[-1:]!r}")
            chat.locator("button.llama2-chat-stop").click()
            figures = chat.locator(".llama2-chat-figures").first
            _wait_for(lambda: "stopped" in figures.inner_text(), 20, "the stopped figures")
            stopped_text = answer.inner_text()
            assert stopped_text.strip(), "the partial answer was not kept"
            assert "TTFT" in figures.inner_text()
            assert "in the last request" in meter.inner_text()

            box.fill(FOLLOW_UP)
            chat.locator("button.llama2-chat-send").click()
            second = chat.locator(".llama2-chat-figures").nth(1)
            second.wait_for(timeout=20_000)
            _wait_for(lambda: "tokens/s" in second.inner_text()
                      and "so far" not in second.inner_text()
                      and "waiting" not in second.inner_text(), 60, "the second answer")
            transcript = chat.locator(".llama2-chat-transcript").inner_text()

    assert FIRST in transcript and FOLLOW_UP in transcript
    (first,) = _chat_requests(local_stack, FIRST)
    assert first.get("client_closed") is True, first["outcome"]
    assert first["tokens"] < len(backend.tokens_for(_request(first))) - 1, (
        "the stand-in generated the whole answer after Stop")
    follow = _chat_requests(local_stack, FOLLOW_UP)
    assert len(follow) == 1
    prompt = follow[0]["body"]["inputs"]
    assert FIRST in prompt, "the follow-up's prompt lacks the first question"
    kept = stopped_text.strip()[:30]
    assert kept in prompt, "the follow-up's prompt lacks the stopped answer"


def _request(record: dict):
    from common.local.backends import GenerationRequest

    return GenerationRequest(prompt=record["body"]["inputs"])


def test_the_live_views_stop_button_works_while_the_cell_runs(local_stack: LocalStack,
                                                               tmp_path: Path) -> None:
    """Stop in ``show_stream``'s view while Run All is running that very cell (the kernel
    gets the click in a subshell of its own); the rest of the notebook still runs."""
    before = len(local_stack.requests())

    def press_stop(page) -> None:
        view = page.locator(f"{PANEL} .llama2-stream").first
        view.wait_for(timeout=60_000)
        text = view.locator(".llama2-stream-text")
        _wait_for(lambda: len(text.inner_text()) > 40, 30, "the first answer to start")
        view.locator("button.llama2-stream-stop").click()
        _wait_for(lambda: "stopped" in view.locator(".llama2-stream-metrics").inner_text(),
                  20, "the live view to say stopped")

    with deployed_recipe_page(local_stack, tmp_path) as (lab, page, inference):
        with chat_paced(local_stack):
            _run_all(page, lab, inference, during=press_stop)
        first = page.locator(f"{PANEL} .llama2-stream").first
        footer = first.locator(".llama2-stream-metrics").inner_text()
        button = first.locator("button.llama2-stream-stop").inner_text()
        views = page.locator(f"{PANEL} .llama2-stream").count()

    assert footer.rstrip().endswith("| stopped"), footer
    assert "Stopped" in button
    assert views >= 3, "the cells after the stopped one did not all run"
    streams = [r for r in local_stack.requests()[before:]
               if r["operation"] == "InvokeEndpointWithResponseStream"]
    # The first stream is the short one the notebook reads raw ("What the stream looks
    # like"); the live view's first answer, which Stop closed, is the second.
    raw, stopped, *rest = streams
    assert stopped.get("client_closed") is True, stopped["outcome"]
    assert all(r.get("outcome", "").startswith("completed") for r in [raw, *rest]), [
        r["outcome"] for r in [raw, *rest]]
