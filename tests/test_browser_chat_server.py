"""The relay's chat page (``python -m common.chat serve``) in headless Chromium.

The relay runs as a user starts it, as a separate process with ``--port 0``, against a
stand-in runtime server whose replay is paced slowly (so that an answer takes seconds).
The test types a question, sends it, sees the answer grow, presses Stop mid-answer (the
stand-in's request log must show that the SageMaker stream was closed), and sends a
follow-up whose prompt carries the first turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import _launch, pytestmark
from test_browser_chat import _wait_for, watch_growth

from common.local.backends import GenerationRequest, ReplayBackend
from common.local.runtime import EndpointInfo, RuntimeServer

__all__ = ["pytestmark"]

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
REPO = Path(__file__).resolve().parents[1]
FIRST = "Write an email about the AnyCloud Internet Service."
FOLLOW_UP = "Now make it shorter."
BACKEND = ReplayBackend(ttft_s=0.05, tokens_per_s=15.0)


@pytest.fixture
def relay_url(tmp_path: Path) -> Iterator[tuple[str, RuntimeServer]]:
    endpoints = {"page-ep": EndpointInfo("page-ep", "InService", TGI_IMAGE, {})}
    with RuntimeServer(endpoints.get, backend=BACKEND) as runtime:
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        for name in ("HTTPS_PROXY", "https_proxy", "AWS_PROFILE"):
            env.pop(name, None)
        log = (tmp_path / "relay.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "common.chat", "serve", "--endpoint", "page-ep",
             "--port", "0", "--container", "tgi"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO)
        try:
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), url
            yield url, runtime
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()


def test_the_relay_page_sends_stops_and_follows_up(relay_url) -> None:
    from playwright.sync_api import sync_playwright

    url, runtime = relay_url
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill(".llama2-chat-input", FIRST)
            page.click(".llama2-chat-send")
            answer = page.locator(".llama2-chat-answer").first
            seen = watch_growth(answer)
            assert len(seen) >= 3, f"the answer did not grow: {seen!r}"
            page.click(".llama2-chat-stop")
            figures = page.locator(".llama2-chat-figures").first
            _wait_for(lambda: "stopped" in figures.inner_text(), 10, "the stop")
            stopped_text = answer.inner_text()
            meter = page.locator(".llama2-chat-meter").inner_text()
            _wait_for(lambda: runtime.requests()[-1].get("client_closed"), 10,
                      "the stand-in to see the stream closed")
            first = runtime.requests()[-1]

            page.fill(".llama2-chat-input", FOLLOW_UP)
            page.click(".llama2-chat-send")
            second = page.locator(".llama2-chat-figures").nth(1)
            _wait_for(lambda: second.count() and "so far" not in second.inner_text()
                      and "tokens/s" in second.inner_text(), 60, "the second answer")
            transcript = page.locator(".llama2-chat-transcript").inner_text()
        finally:
            browser.close()

    assert stopped_text.strip() and "in the last request" in meter
    total = len(BACKEND.tokens_for(GenerationRequest(prompt=first["body"]["inputs"])))
    assert first["tokens"] < total - 1, "the stand-in generated the whole answer after Stop"
    assert FIRST in transcript and FOLLOW_UP in transcript
    prompt = runtime.requests()[-1]["body"]["inputs"]
    assert prompt.endswith(f"{FOLLOW_UP} [/INST]")
    assert FIRST in prompt and stopped_text.strip()[:30] in prompt
