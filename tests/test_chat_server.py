"""The chat relay (``python -m common.chat serve``) against the stand-in's runtime server.

The relay runs on aiohttp's test server (handler cancellation on, as ``serve`` runs it) and
calls the stand-in through the real async stack (aiobotocore, ``common.ainvoke_stream``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.chat.server import RelaySettings, build_app
from common.local.backends import GenerationRequest, ReplayBackend
from common.local.runtime import EndpointInfo, RuntimeServer

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
ENDPOINTS = {"relay-ep": EndpointInfo("relay-ep", "InService", TGI_IMAGE, {})}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runtime() -> Iterator[RuntimeServer]:
    with RuntimeServer(ENDPOINTS.get, backend=ReplayBackend(ttft_s=0.0, tokens_per_s=50.0)
                       ) as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(runtime, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    runtime.set_fault(None)


def run(coroutine_function, settings: RelaySettings | None = None):
    """Run ``coroutine_function(client)`` against the relay on aiohttp's test server."""
    from aiohttp.test_utils import TestClient, TestServer

    async def main():
        app = build_app(settings or RelaySettings(endpoint="relay-ep", container="tgi"))
        async with TestClient(TestServer(app)) as client:
            return await coroutine_function(client)

    return asyncio.run(main())


def events(text: str) -> list[tuple[str, dict]]:
    found = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def own_origin(client) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


QUESTION = {"messages": [{"role": "user", "content": "Write about AnyCloud Internet Service."}]}


def test_the_page_has_the_chat_classes():
    async def go(client):
        page = await client.get("/")
        script = await client.get("/static/chat.js")
        return page.status, await page.text(), page.headers, await script.text()

    status, page, headers, script = run(go)
    assert status == 200
    for name in ("transcript", "input", "send", "stop", "meter"):
        assert f'class="llama2-chat-{name}' in page, name
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "textContent" in script and "innerHTML" not in script


def test_an_answer_is_relayed_as_server_sent_events(runtime):
    async def go(client):
        response = await client.post("/api/chat", json=QUESTION, headers=own_origin(client))
        return response.status, response.headers["Content-Type"], await response.text()

    status, content_type, body = run(go)
    assert status == 200 and content_type.startswith("text/event-stream")
    found = events(body)
    assert found[0][0] == "meta" and found[0][1]["prompt_limit"] == 3072 - 0
    text = "".join(data["text"] for kind, data in found if kind == "token")
    assert "AnyCloud" in text
    kind, done = found[-1]
    assert kind == "done" and done["tokens"] > 10 and done["ttft_ms"] is not None
    record = runtime.requests()[-1]
    assert record["body"]["inputs"].endswith("Write about AnyCloud Internet Service. [/INST]")
    assert record["outcome"].startswith("completed")


def test_the_history_goes_into_the_prompt_and_old_turns_are_dropped_and_said(runtime):
    history = []
    for index in range(4):
        history += [{"role": "user", "content": f"question {index} " + "word " * 120},
                    {"role": "assistant", "content": f"answer {index} " + "word " * 120}]
    history.append({"role": "user", "content": "And now?"})
    settings = RelaySettings(endpoint="relay-ep", container="tgi", max_input_tokens=900,
                             max_total_tokens=1400, max_new_tokens=400)

    async def go(client):
        response = await client.post("/api/chat", json={"messages": history},
                                     headers=own_origin(client))
        return await response.text()

    meta = events(run(go, settings))[0][1]
    assert meta["dropped_turns"] >= 1 and "Dropped the oldest" in meta["notice"]
    prompt = runtime.requests()[-1]["body"]["inputs"]
    assert "question 0" not in prompt and "answer 3" in prompt
    assert prompt.startswith("[INST] <<SYS>>\n")


def test_cross_origin_posts_are_refused(runtime):
    before = len(runtime.requests())

    async def go(client):
        evil = await client.post("/api/chat", json=QUESTION,
                                 headers={"Origin": "http://evil.example"})
        form = await client.post("/api/chat", data="messages=x",
                                 headers={**own_origin(client),
                                          "Content-Type": "application/x-www-form-urlencoded"})
        rebound = await client.post("/api/chat", json=QUESTION,
                                    headers={"Host": "evil.example:80",
                                             "Origin": "http://evil.example:80"})
        return evil.status, form.status, rebound.status

    assert run(go) == (403, 415, 403)
    assert len(runtime.requests()) == before, "a refused post reached SageMaker"


def test_message_size_and_body_size_are_bounded(runtime):
    settings = RelaySettings(endpoint="relay-ep", container="tgi", max_message_chars=100,
                             max_body_bytes=2000)

    async def go(client):
        long = await client.post("/api/chat", headers=own_origin(client), json={
            "messages": [{"role": "user", "content": "x" * 101}]})
        huge = await client.post("/api/chat", headers=own_origin(client), json={
            "messages": [{"role": "user", "content": "x"}] * 500})
        return long.status, await long.json(), huge.status

    long_status, long_body, huge_status = run(go, settings)
    assert long_status == 413 and "at most 100" in long_body["error"]
    assert huge_status == 413


def test_a_message_that_cannot_fit_is_explained(runtime):
    settings = RelaySettings(endpoint="relay-ep", container="tgi", max_input_tokens=50,
                             max_total_tokens=600, max_new_tokens=500)

    async def go(client):
        response = await client.post("/api/chat", headers=own_origin(client), json={
            "messages": [{"role": "user", "content": "word " * 80}]})
        return response.status, await response.json()

    status, body = run(go, settings)
    assert status == 400 and "cannot fit" in body["error"] and "50" in body["error"]


def test_aws_errors_are_logged_but_not_shown_to_the_browser(runtime, caplog):
    settings = RelaySettings(endpoint="no-such-endpoint", container="tgi")

    async def go(client):
        response = await client.post("/api/chat", json=QUESTION, headers=own_origin(client))
        return await response.text()

    with caplog.at_level(logging.ERROR, logger="common.chat"):
        body = run(go, settings)
    kind, error = events(body)[-1]
    assert kind == "error"
    assert error["message"] == "The model endpoint could not answer."
    assert "no-such-endpoint" not in body and "123456789012" not in body
    assert "ValidationError" not in body and "account" not in body
    logged = caplog.text
    assert error["error_id"] in logged and "no-such-endpoint" in logged


def test_a_stream_error_mid_answer_is_hidden_too(runtime, caplog):
    runtime.set_fault("model-stream-error@3")

    async def go(client):
        response = await client.post("/api/chat", json=QUESTION, headers=own_origin(client))
        return await response.text()

    with caplog.at_level(logging.ERROR, logger="common.chat"):
        body = run(go)
    found = events(body)
    assert [k for k, _ in found].count("token") == 3
    assert found[-1][0] == "error"
    assert found[-1][1]["message"] == "The answer broke off before it was complete."
    assert "ModelStreamError" not in body and "ModelStreamError" in caplog.text


def test_a_browser_that_goes_away_closes_its_sagemaker_stream(runtime):
    async def go(client):
        response = await client.post("/api/chat", json=QUESTION, headers=own_origin(client))
        seen = 0
        async for _chunk in response.content.iter_any():
            seen += 1
            if seen >= 3:
                break
        response.close()  # the browser goes away
        for _ in range(100):
            record = runtime.requests()[-1]
            if record.get("client_closed"):
                return record
            await asyncio.sleep(0.05)
        return runtime.requests()[-1]

    record = run(go)
    assert record.get("client_closed") is True, record["outcome"]
    total = len(ReplayBackend().tokens_for(GenerationRequest(prompt=record["body"]["inputs"])))
    assert record["tokens"] < total - 5


def test_many_readers_at_once_on_one_event_loop(runtime):
    async def go(client):
        async def one(index):
            body = {"messages": [{"role": "user", "content": f"Reader {index} asks."}]}
            response = await client.post("/api/chat", json=body, headers=own_origin(client))
            return events(await response.text())[-1][0]

        return await asyncio.gather(*(one(i) for i in range(20)))

    assert run(go) == ["done"] * 20


def test_serve_prints_the_url_first_and_binds_loopback(runtime):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "common.chat", "serve", "--endpoint", "relay-ep", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/"), url
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2) as answer:
                    assert answer.read() == b"ok"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_inference_component_is_named_on_every_call(runtime):
    settings = RelaySettings(endpoint="relay-ep", container="tgi", inference_component="ic-7b")

    async def go(client):
        response = await client.post("/api/chat", json=QUESTION, headers=own_origin(client))
        return await response.text()

    run(go, settings)
    headers = {name.lower(): value for name, value in runtime.requests()[-1]["headers"].items()}
    assert headers.get("x-amzn-sagemaker-inference-component") == "ic-7b"
