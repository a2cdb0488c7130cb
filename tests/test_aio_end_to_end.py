"""The async helpers end to end: real aiobotocore (aiohttp) against the local stand-in.

An endpoint is deployed through the stand-in's control plane; ``common.async_runtime_client``
reaches its runtime server through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, exactly as
``common.runtime_client`` does, and faults are injected per request with
``CustomAttributes="local-fault=..."`` (or server-wide, counted).
"""

from __future__ import annotations

import asyncio

import pytest

import common

PROMPT = common.build_llama2_prompt([{"role": "user", "content": "Announce AnyCloud."}])
PAYLOAD = common.build_payload(PROMPT, container="tgi", max_new_tokens=48)


def sync_text(endpoint: str, fault: str | None = None) -> str:
    tokens = common.invoke_stream(common.runtime_client(read_timeout=2.0), endpoint, PAYLOAD,
                                  container="tgi",
                                  custom_attributes=f"local-fault={fault}" if fault else None)
    return "".join(t.text for t in tokens if not t.special)


async def read(endpoint: str, fault: str | None = None, **kwargs):
    """Stream once with aiobotocore; return (tokens, error, stream)."""
    async with common.async_runtime_client(read_timeout=2.0) as client:
        stream = await common.ainvoke_stream(
            client, endpoint, PAYLOAD, container="tgi", backoff_s=0.01,
            custom_attributes=f"local-fault={fault}" if fault else None, **kwargs)
        tokens, error = [], None
        async with stream:
            try:
                async for token in stream:
                    tokens.append(token)
            except common.StreamError as exc:
                error = exc
        return tokens, error, stream


def test_a_clean_stream_gives_what_boto3_gives(endpoint, request_log):
    tokens, error, stream = asyncio.run(read(endpoint))
    assert error is None
    text = "".join(t.text for t in tokens if not t.special)
    assert "AnyCloud" in text and "</s>" not in text
    assert text == stream.text == sync_text(endpoint)
    assert stream.format == "sse" and stream.generated_text == text
    assert request_log()[0]["endpoint"] == endpoint


def test_the_async_text_face_and_measure(endpoint):
    async def run():
        async with common.async_runtime_client() as client:
            stream = await common.ainvoke_stream(client, endpoint, PAYLOAD)
            measured = common.measure(stream)
            pieces = [token.text async for token in measured if not token.special]
            return "".join(pieces), measured.metrics

    text, metrics = asyncio.run(run())
    assert text == sync_text(endpoint)
    assert metrics.finished and metrics.token_count > 1 and metrics.ttft_s is not None


def test_throttling_before_the_first_byte_is_retried(endpoint, local_stack, request_log):
    local_stack.set_fault("throttle:2")
    try:
        tokens, error, _ = asyncio.run(read(endpoint))
    finally:
        local_stack.set_fault(None)
    assert error is None and tokens
    assert len(request_log()) == 3, "two throttled attempts, then the stream"


def test_throttling_that_does_not_stop_gives_up_with_the_sync_error(endpoint, request_log):
    with pytest.raises(common.ThrottledError, match="after 2 attempts"):
        asyncio.run(read(endpoint, "throttle", max_attempts=2))
    assert len(request_log()) == 2


@pytest.mark.parametrize(("fault", "error_type"), [
    ("model-stream-error@5:StreamBroken", common.ModelStreamError),
    ("drop@5", common.IncompleteStreamError),
    ("stall@5", common.StreamTimeoutError),
])
def test_a_mid_stream_fault_is_the_same_error_as_with_boto3(endpoint, request_log, fault,
                                                            error_type):
    tokens, error, stream = asyncio.run(read(endpoint, fault))
    assert type(error) is error_type
    clean = sync_text(endpoint)
    assert error.partial_text and clean.startswith(error.partial_text)
    assert error.partial_text == stream.text == "".join(t.text for t in tokens
                                                        if not t.special)
    with pytest.raises(error_type) as sync_raised:
        sync_text(endpoint, fault)
    assert sync_raised.value.partial_text == error.partial_text
    assert len([r for r in request_log() if fault in str(r)]) == 2, "never replayed"


def test_errors_before_the_stream_and_the_component_header(endpoint, request_log):
    with pytest.raises(common.EndpointNotFoundError, match="region"):
        asyncio.run(read("no-such-endpoint"))
    with pytest.raises(common.ModelInvocationError) as raised:
        asyncio.run(read(endpoint, "model-error:503"))
    assert raised.value.original_status_code == 503
    with pytest.raises(common.PayloadError, match="inference_component"):
        asyncio.run(read(endpoint, inference_component=""))
    # The header reaches the runtime; a plain endpoint refuses it, as SageMaker does.
    with pytest.raises(common.InvocationError, match="leave inference_component"):
        asyncio.run(read(endpoint, inference_component="my-component"))
    headers = request_log()[-1].get("headers", {})
    sent = {key.lower(): value for key, value in headers.items()}
    assert sent.get("x-amzn-sagemaker-inference-component") == "my-component"


def test_ainvoke_answers_without_streaming(endpoint):
    payload = common.build_payload(PROMPT, container="tgi", max_new_tokens=16, stream=False)

    async def run():
        async with common.async_runtime_client() as client:
            return await common.ainvoke(client, endpoint, payload, container="tgi")

    answer = asyncio.run(run())
    assert isinstance(answer, list) and answer[0]["generated_text"]
