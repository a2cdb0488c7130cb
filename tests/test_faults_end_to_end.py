"""Every fault a real endpoint can produce, through the whole client stack.

Each test sends a real request with boto3 (reached, like the notebooks, through
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) to the stand-in's runtime server, which injects the
fault named in ``CustomAttributes``; ``common.invoke_stream`` / ``common.iter_tokens`` /
``common.show_stream`` must turn it into the documented exception with the partial text.
"""

from __future__ import annotations

import pytest

import common
from common.local.backends import ReplayBackend
from common.local.runtime import EndpointInfo, RuntimeServer

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.36.0-lmi27.0.0-cu130"
ENDPOINTS = {
    "tgi": EndpointInfo("faults-tgi", "InService", TGI_IMAGE, {}),
    "lmi": EndpointInfo("faults-lmi", "InService", LMI_IMAGE, {}),
}
PROMPT = common.build_llama2_prompt([{"role": "user", "content": "Announce AnyCloud."}])


@pytest.fixture(scope="module")
def server():
    by_name = {info.name: info for info in ENDPOINTS.values()}
    with RuntimeServer(by_name.get, backend=ReplayBackend(ttft_s=0, tokens_per_s=0)) as running:
        yield running


@pytest.fixture
def runtime(server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server.clear_requests()
    return common.runtime_client("us-east-1", read_timeout=2.0)


def stream(runtime, container, fault=None, *, max_attempts=4):
    payload = common.build_payload(PROMPT, container=container, max_new_tokens=64)
    return common.invoke_stream(
        runtime, ENDPOINTS[container].name, payload, container=container,
        custom_attributes=f"local-fault={fault}" if fault else None,
        max_attempts=max_attempts, backoff_s=0.01,
    )


def consume(tokens):
    pieces = []
    for token in tokens:
        if not token.special:
            pieces.append(token.text)
    return "".join(pieces)


@pytest.mark.parametrize("container", ["tgi", "lmi"])
def test_a_clean_stream_gives_the_whole_answer(runtime, container):
    text = consume(stream(runtime, container))
    assert "AnyCloud" in text and "</s>" not in text


@pytest.mark.parametrize("container", ["tgi", "lmi"])
@pytest.mark.parametrize(
    ("fault", "error_type", "fragment"),
    [
        ("model-stream-error@5:ModelInvocationTimeExceeded", common.ModelStreamError,
         "ModelStreamError"),
        ("model-stream-error@5:StreamBroken", common.ModelStreamError, "ModelStreamError"),
        ("internal-stream-failure@5", common.InternalStreamFailure, "InternalStreamFailure"),
        ("container-error@5", common.ContainerStreamError, "mid-stream"),
        ("drop@5", common.IncompleteStreamError, "connection"),
        ("stall@5", common.StreamTimeoutError, "timed out"),
    ],
)
def test_a_mid_stream_fault_raises_its_stream_error_with_the_partial_text(
        runtime, container, fault, error_type, fragment):
    clean = consume(stream(runtime, container))
    tokens = stream(runtime, container, fault)
    with pytest.raises(error_type) as raised:
        consume(tokens)
    error = raised.value
    assert isinstance(error, common.StreamError)
    assert fragment.lower() in str(error).lower()
    assert error.partial_text, "the text before the failure is kept"
    assert clean.startswith(error.partial_text)
    assert len(error.partial_text) < len(clean)
    assert error.partial_text == tokens.text


def test_the_live_view_shows_the_partial_text_and_the_error_then_raises(runtime, capsys):
    tokens = stream(runtime, "tgi", "model-stream-error@6")
    with pytest.raises(common.ModelStreamError) as raised:
        common.show_stream(tokens, mode="print")
    shown = capsys.readouterr().out
    assert raised.value.partial_text and raised.value.partial_text in shown
    assert "ModelStreamError" in shown


@pytest.fixture
def server_fault(server):
    """Set a server-wide fault (counted faults are used up across requests); clear it after."""
    yield server.set_fault
    server.set_fault(None)


def test_throttling_before_the_stream_is_retried_then_succeeds(runtime, server, server_fault):
    server_fault("throttle:2")
    text = consume(stream(runtime, "tgi"))
    assert "AnyCloud" in text
    assert len(server.requests()) == 3, "two throttled attempts, then the stream"


def test_throttling_that_does_not_stop_gives_up_with_a_clear_error(runtime, server):
    # Named in the request, the fault throttles every attempt of that request.
    with pytest.raises(common.ThrottledError, match="after 2 attempts"):
        stream(runtime, "tgi", "throttle", max_attempts=2)
    assert len(server.requests()) == 2


def test_service_unavailable_before_the_stream_is_retried(runtime, server, server_fault):
    server_fault("unavailable:1")
    assert consume(stream(runtime, "lmi"))
    assert len(server.requests()) == 2


def test_a_stream_that_broke_after_the_first_byte_is_never_replayed(runtime, server):
    with pytest.raises(common.IncompleteStreamError):
        consume(stream(runtime, "tgi", "drop@3"))
    assert len(server.requests()) == 1


def test_a_model_error_names_the_container_status_and_its_log_stream(runtime, server):
    with pytest.raises(common.ModelInvocationError) as raised:
        stream(runtime, "tgi", "model-error:503")
    assert raised.value.original_status_code == 503
    assert raised.value.log_stream_arn and raised.value.log_stream_arn in str(raised.value)
    assert len(server.requests()) == 1, "a model error is not retried"


def test_an_unknown_endpoint_says_to_check_the_name_and_region(runtime):
    payload = common.build_payload(PROMPT, container="tgi", max_new_tokens=8)
    with pytest.raises(common.EndpointNotFoundError, match="region"):
        common.invoke_stream(runtime, "no-such-endpoint", payload, container="tgi")
