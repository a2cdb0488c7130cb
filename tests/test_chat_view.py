"""common.show_chat: the notebook chat, driven as its buttons drive it, against the stand-in."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

import common
from common import chat_view, display
from common.local.backends import ReplayBackend
from common.local.runtime import EndpointInfo, RuntimeServer

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
ENDPOINTS = {"chat-ep": EndpointInfo("chat-ep", "InService", TGI_IMAGE, {})}


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    with RuntimeServer(ENDPOINTS.get, backend=ReplayBackend(ttft_s=0.0, tokens_per_s=100.0)
                       ) as running:
        yield running


def stream_opener(url: str):
    """The notebook's ``open_stream`` for the runtime server at ``url``."""
    runtime = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(read_timeout=20, retries={"total_max_attempts": 1}))

    def send(body):
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName="chat-ep", Body=json.dumps(body), ContentType="application/json")
        return common.iter_tokens(response["Body"], container="tgi")

    return send


@pytest.fixture(scope="module")
def open_stream(server: RuntimeServer):
    return stream_opener(server.url)


@pytest.fixture
def shown(monkeypatch):
    boxes = []
    monkeypatch.setattr(display, "show_widget", boxes.append)
    return boxes


def chat():
    return common.Conversation.from_preset(common.get_preset("7b", "tgi"), "Be brief.",
                                           max_new_tokens=400)


def text_of(widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def classes(widget) -> list[str]:
    return list(widget._dom_classes)


def test_the_widget_has_the_stable_classes(shown, open_stream):
    view = common.show_chat(chat(), open_stream, mode="widget", question="Hi")
    (box,) = shown
    found = set()

    def walk(widget):
        found.update(classes(widget))
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(box)
    for name in ("transcript", "input", "send", "stop", "clear", "meter"):
        assert chat_view.CHAT_CLASSES[name] in found, name
    assert view.input.value == "Hi"
    assert "0 of 3072 prompt tokens" in text_of(view.meter)


def test_send_streams_the_answer_with_figures_then_a_follow_up_uses_the_history(
        shown, open_stream, server):
    view = common.show_chat(chat(), open_stream, mode="widget")
    before = len(server.requests())
    view.input.value = "Write an email about the AnyCloud Internet Service."
    view.send_button.click()
    assert view.wait(20)
    user, answer, figures = view.transcript.children
    assert "llama2-chat-user" in classes(user) and "llama2-chat-answer" in classes(answer)
    assert "AnyCloud" in text_of(answer)
    assert "TTFT" in text_of(figures) and "tokens/s" in text_of(figures)
    assert "in the last request" in text_of(view.meter)
    assert view.input.value == "" and not view.send_button.disabled
    view.input.value = "Shorter, please."
    view.send_button.click()
    assert view.wait(20)
    assert len(view.transcript.children) == 6
    second = server.requests()[before + 1]["body"]["inputs"]
    assert "Write an email about the AnyCloud Internet Service." in second
    assert view.results[0].text.strip()[:40] in second


def test_stop_mid_answer_keeps_the_partial_text_and_closes_the_stream(shown, server):
    slow = ReplayBackend(ttft_s=0.0, tokens_per_s=30.0)
    with RuntimeServer(ENDPOINTS.get, backend=slow) as paced:
        view = common.show_chat(chat(), stream_opener(paced.url), mode="widget")
        view.send("Write an email about the AnyCloud Internet Service.")
        time.sleep(0.5)
        assert view.busy and not view.stop_button.disabled
        view.stop_button.click()
        assert view.wait(5)
        result = view.results[0]
        assert result.stopped and result.error is None and result.text
        assert "stopped" in text_of(view.transcript.children[2])
        assert view.conversation.messages[-1] == {"role": "assistant", "content": result.text}
        deadline = time.monotonic() + 5
        while not paced.requests()[-1].get("client_closed") and time.monotonic() < deadline:
            time.sleep(0.02)
        record = paced.requests()[-1]
        assert record["client_closed"] is True and record["tokens"] < 100


def test_clear_empties_the_transcript_and_the_turns(shown, open_stream):
    view = common.show_chat(chat(), open_stream, mode="widget")
    view.send("Hello")
    assert view.wait(20)
    view.clear_button.click()
    assert view.transcript.children == ()
    assert view.conversation.messages == [{"role": "system", "content": "Be brief."}]


def test_a_message_too_long_is_shown_not_raised(shown, open_stream):
    view = common.show_chat(chat(), open_stream, mode="widget")
    view.send("word " * 5000)
    assert "cannot fit" in text_of(view.notice)
    assert view.transcript.children == ()


def test_a_failed_request_is_shown_and_the_question_withdrawn(shown):
    def failing(body):
        raise common.ThrottledError("ThrottlingException: Rate exceeded. Retry later.")

    view = common.show_chat(chat(), failing, mode="widget")
    view.send("Hello")
    assert view.wait(5)
    assert "ThrottledError" in text_of(view.notice)
    assert view.conversation.messages == [{"role": "system", "content": "Be brief."}]
    assert not view.send_button.disabled


def test_headless_sends_the_scripted_question_and_prints_the_answer(open_stream, capsys):
    view = common.show_chat(chat(), open_stream, mode="print",
                            question="Write an email about the AnyCloud Internet Service.")
    out = capsys.readouterr().out
    assert out.startswith("You: Write an email about the AnyCloud Internet Service.\n")
    assert "Assistant: " in out and "AnyCloud" in out.split("Assistant:", 1)[1]
    assert "TTFT" in out and "Context: " in out
    assert len(view.results) == 1 and not view.results[0].stopped


def test_headless_without_a_question_says_what_to_pass(open_stream):
    with pytest.raises(ValueError, match="question="):
        common.show_chat(chat(), open_stream, mode="print")
