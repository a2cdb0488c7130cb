"""Stop: closing a stream stops it -- in the client (show_stream) and in the stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

import common
from common import display
from common.local.backends import GenerationRequest, ReplayBackend
from common.local.runtime import EndpointInfo, RuntimeServer
from common.prompts import build_llama2_prompt

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
ENDPOINTS = {"tgi-ep": EndpointInfo("tgi-ep", "InService", TGI_IMAGE, {})}
PROMPT = build_llama2_prompt([{"role": "user", "content": "Write a launch email."}])
PACED = ReplayBackend(ttft_s=0.0, tokens_per_s=40.0)
TOTAL = len(PACED.tokens_for(GenerationRequest(prompt=PROMPT)))


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    with RuntimeServer(ENDPOINTS.get, backend=PACED) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RuntimeServer):
    return boto3.client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=server.url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(read_timeout=20, retries={"total_max_attempts": 1}))


def _open(client, attributes: str | None = None):
    kwargs = {"CustomAttributes": attributes} if attributes else {}
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 400}, "stream": True}
    response = client.invoke_endpoint_with_response_stream(
        EndpointName="tgi-ep", Body=json.dumps(body), ContentType="application/json", **kwargs)
    return common.iter_tokens(response["Body"], container="tgi")


def _record(server: RuntimeServer, request_count: int, timeout_s: float = 5.0) -> dict:
    """The request log's record number ``request_count`` once it has an outcome."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = server.requests()
        if len(log) >= request_count and log[request_count - 1]["outcome"]:
            return log[request_count - 1]
        time.sleep(0.02)
    raise AssertionError(f"no outcome in time: {server.requests()[-1:]}")


def test_closing_the_body_stops_generation_in_the_stand_in(client, server):
    before = len(server.requests())
    tokens = _open(client)
    for _ in range(3):
        next(tokens)
    tokens.close()
    record = _record(server, before + 1)
    assert record["client_closed"] is True
    assert record["outcome"].startswith("client closed the stream after ")
    assert "generation stopped" in record["outcome"]
    # It noticed within a token or two, far from the whole answer.
    assert 3 <= record["tokens"] <= 6 < TOTAL, record


def test_show_stream_stops_from_code_and_keeps_the_partial_text(client, server, capsys):
    before = len(server.requests())
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    result = common.show_stream(_open(client), mode="print", stop=stop)
    timer.join()
    assert result.stopped is True and result.error is None
    assert 0 < result.tokens < TOTAL - 1
    full = "".join(t.text for t in PACED.tokens_for(GenerationRequest(prompt=PROMPT))
                   if not t.special)
    assert full.startswith(result.text) and result.text
    out = capsys.readouterr().out
    assert "[stopped" in out and out.rstrip().endswith("| stopped")
    record = _record(server, before + 1)
    assert record["client_closed"] is True and record["tokens"] < TOTAL


def test_stop_wakes_a_read_blocked_on_a_slow_first_token(client, server):
    before = len(server.requests())
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    started = time.monotonic()
    result = common.show_stream(_open(client, "local-fault=slow-first-token:10"), mode="print",
                                stop=stop)
    timer.join()
    assert time.monotonic() - started < 5, "the stop did not wake the blocked read"
    assert result.stopped is True and result.error is None and result.text == ""
    assert _record(server, before + 1, timeout_s=15)["client_closed"] is True


def test_a_stream_that_ends_before_the_stop_is_not_marked_stopped(client):
    stop = threading.Event()
    result = common.show_stream(["a", "b"], mode="print", stop=stop)
    stop.set()
    assert result.stopped is False and result.text == "ab"


def test_an_error_is_still_an_error_when_no_stop_was_asked():
    def failing():
        yield "partial"
        raise common.StreamError("broken", partial_text="partial")

    result = common.show_stream(failing(), mode="print", raise_errors=False)
    assert result.stopped is False and isinstance(result.error, common.StreamError)


def test_the_stop_button_of_the_widget_stops_the_stream(monkeypatch):
    import ipywidgets

    boxes = []
    monkeypatch.setattr(display, "show_widget", boxes.append)
    clicked = threading.Event()

    def buttons():
        return [c for c in boxes[0].children if isinstance(c, ipywidgets.Button)]

    def slow_pieces():
        for index in range(200):
            if index == 5:
                buttons()[0].click()  # what a click in the browser runs
                clicked.set()
            yield f"w{index} "
            time.sleep(0.005)

    result = common.show_stream(slow_pieces(), mode="widget")
    assert clicked.is_set()
    assert result.stopped is True and result.text.startswith("w0 w1")
    assert result.tokens < 10
    (button,) = buttons()
    assert display.STOP_CLASS in button._dom_classes
    assert button.disabled and button.description == "Stopped"
