"""The stand-in's sagemaker-runtime server, driven by a real boto3 client."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import boto3
import botocore.exceptions
import pytest
import urllib3.exceptions
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

from common.errors import EndpointNotFoundError, invocation_error_from_client_error
from common.local.backends import GeneratedToken, GenerationRequest, ReplayBackend
from common.local.runtime import FAULT_GRAMMAR, EndpointInfo, RuntimeServer, cut_first_part
from common.prompts import build_llama2_prompt

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"
ENDPOINTS = {
    "tgi-ep": EndpointInfo("tgi-ep", "InService", TGI_IMAGE, {"HF_MODEL_ID": "meta-llama/x"}),
    "lmi-ep": EndpointInfo("lmi-ep", "InService", LMI_IMAGE, {}),
    "creating-ep": EndpointInfo("creating-ep", "Creating", TGI_IMAGE, {}),
    "other-ep": EndpointInfo("other-ep", "InService", "123.dkr.ecr/mine:1", {}),
}
PROMPT = build_llama2_prompt([{"role": "user", "content":
                               "Write an email for AnyCloud Internet Service, code EARLYB1RD."}])
REPLAY = ReplayBackend(ttft_s=0, tokens_per_s=0)
ANSWER = REPLAY.tokens_for(GenerationRequest(prompt=PROMPT))
STREAM_ERRORS = (botocore.exceptions.ResponseStreamingError, urllib3.exceptions.ProtocolError,
                 botocore.exceptions.ConnectionClosedError, ConnectionError)


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    with RuntimeServer(ENDPOINTS.get, backend=REPLAY) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(server: RuntimeServer) -> Iterator[None]:
    server.set_fault(None)
    yield
    server.set_fault(None)


def _client(url: str, read_timeout: float = 20):
    return boto3.client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(read_timeout=read_timeout, connect_timeout=5,
                      retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def client(server: RuntimeServer):
    return _client(server.url)


def _stream(client, endpoint="tgi-ep", **body):
    kwargs = {}
    if "attributes" in body:
        kwargs["CustomAttributes"] = body.pop("attributes")
    return client.invoke_endpoint_with_response_stream(
        EndpointName=endpoint, Body=json.dumps(body), ContentType="application/json", **kwargs)


def _parts(response) -> list[bytes]:
    return [event["PayloadPart"]["Bytes"] for event in response["Body"]]


def _event_bytes(events) -> bytes:
    return b"".join(event["PayloadPart"]["Bytes"] for event in events)


def _sse_events(data: bytes) -> list[dict]:
    events = [e for e in data.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [json.loads(e.removeprefix("data: ")) for e in events]


# --------------------------------------------------------------------------- streaming


def test_tgi_stream_is_one_payload_part_per_token_in_tgi_sse(client):
    response = _stream(client, inputs=PROMPT, stream=True,
                       parameters={"max_new_tokens": 400, "return_full_text": False})
    assert response["ContentType"] == "text/event-stream"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    parts = _parts(response)
    # The first event comes in two parts cut inside its line; then one part per token.
    head, tail, *rest = parts
    assert b"\n" not in head and head.startswith(b'data: {"index":1,')
    assert tail.endswith(b"\n\n") and tail.count(b"\n\n") == 1
    parts = [head + tail, *rest]
    assert len(parts) == len(ANSWER)
    events = [e for part in parts for e in _sse_events(part)]
    assert [e["index"] for e in events] == list(range(1, len(ANSWER) + 1))
    text = "".join(e["token"]["text"] for e in events if not e["token"]["special"])
    assert events[-1]["generated_text"] == text
    assert text == "".join(t.text for t in ANSWER if not t.special)
    assert b"[DONE]" not in b"".join(parts)


class GatedBackend:
    """Yields the first token at once and the rest only after ``release`` is set."""

    name = "gated"
    label = "test backend"

    def __init__(self) -> None:
        self.release = threading.Event()

    def generate(self, request: GenerationRequest) -> Iterator[GeneratedToken]:
        yield GeneratedToken(1000, " first", -0.1)
        assert self.release.wait(20), "the test never released the rest"
        yield GeneratedToken(1001, " second", -0.2)
        yield GeneratedToken(2, "</s>", -0.01, special=True)


def test_payload_parts_arrive_as_tokens_are_produced():
    backend = GatedBackend()
    with RuntimeServer(ENDPOINTS.get, backend=backend) as gated:
        response = _stream(_client(gated.url), inputs="Hi", stream=True)
        events = iter(response["Body"])
        # The first event, in its two parts, arrives while the backend holds the other tokens.
        first = next(events)["PayloadPart"]["Bytes"] + next(events)["PayloadPart"]["Bytes"]
        assert not backend.release.is_set()
        assert _sse_events(first)[0]["token"]["text"] == " first"
        backend.release.set()
        rest = [e["PayloadPart"]["Bytes"] for e in events]
        assert [_sse_events(p)[0]["token"]["text"] for p in rest] == [" second", "</s>"]


def test_lmi_stream_defaults_to_30_tokens_in_json_lines(client):
    response = _stream(client, "lmi-ep", inputs=PROMPT, stream=True)
    assert response["ContentType"] == "application/jsonlines"
    data = b"".join(_parts(response)).decode()
    lines = data.split("\n")
    documents = [json.loads(line) for line in lines if line]
    assert len(documents) == 30
    assert data.endswith("\n\n\n")  # the last line, then vLLM's usage chunk and [DONE]
    assert documents[-1]["generated_text"] == "".join(d["token"]["text"] for d in documents)


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("tgi-ep", lambda doc, text: doc == [{"generated_text": text}]),
    ("lmi-ep", lambda doc, text: doc == {"generated_text": text}),
])
def test_without_stream_true_the_stream_carries_one_json_document(client, endpoint, expected):
    response = _stream(client, endpoint, inputs=PROMPT,
                       parameters={"max_new_tokens": 8, "return_full_text": False})
    assert response["ContentType"] == "application/json"
    parts = _parts(response)
    assert len(parts) == 2, "one document, cut in two like every stream's first write"
    text = "".join(t.text for t in ANSWER[:8])
    assert expected(json.loads(b"".join(parts)), text)


@pytest.mark.parametrize(("endpoint", "frame"), [("tgi-ep", "sse"), ("lmi-ep", "lines")])
def test_messages_api_streams_chat_chunks(client, endpoint, frame):
    response = _stream(client, endpoint, stream=True, max_tokens=500,
                       messages=[{"role": "user", "content": "Write an email for AnyCloud "
                                                             "Internet Service."}])
    data = b"".join(_parts(response)).decode()
    if frame == "sse":
        items = [e.removeprefix("data: ") for e in data.split("\n\n") if e]
        assert items[-1] == "[DONE]"
        items = items[:-1]
    else:
        assert data.endswith("\n\n")
        items = [line for line in data.split("\n") if line]
    chunks = [json.loads(item) for item in items]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "AnyCloud Internet Service" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@given(st.binary(max_size=300))
def test_the_first_write_is_cut_inside_its_first_line_and_keeps_its_bytes(data):
    parts = cut_first_part(data)
    assert b"".join(parts) == data and (all(parts) or parts == [b""])
    first_line = data.split(b"\n", 1)[0]
    if len(first_line) >= 2:
        head, _tail = parts
        assert b"\n" not in head and len(head) < len(first_line)
    else:
        assert parts == [data]


@pytest.mark.parametrize(("endpoint", "body"), [
    ("tgi-ep", {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}),
    ("lmi-ep", {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}),
    ("tgi-ep", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}),
    ("lmi-ep", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}),
], ids=["tgi", "lmi", "tgi-messages", "lmi-messages"])
def test_every_stream_splits_its_first_line_across_two_parts(client, endpoint, body):
    plain = _parts(_stream(client, endpoint, stream=True, **body))
    chunked = _parts(_stream(client, endpoint, stream=True, **body,
                             attributes="local-fault=chunking:3"))
    assert b"\n" not in plain[0], "the first part ends inside a line"
    assert plain[1].count(b"\n") >= 1, "the second part ends that line"
    assert all(part.endswith(b"\n") for part in plain[1:]), "later parts hold whole lines"
    if endpoint == "tgi-ep" and "inputs" in body:
        # Same bytes as any other cut; only the boundaries differ (the replay is deterministic;
        # a chat chunk's "created" second may differ between two requests).
        assert b"".join(plain) == b"".join(chunked)


def test_invoke_endpoint_returns_the_whole_answer(client):
    response = client.invoke_endpoint(EndpointName="tgi-ep", ContentType="application/json",
                                      Body=json.dumps({"inputs": PROMPT}))
    assert response["ContentType"] == "application/json"
    (answer,) = json.loads(response["Body"].read())
    assert answer["generated_text"].startswith(PROMPT)  # TGI's default on this route
    streamed = client.invoke_endpoint(EndpointName="tgi-ep", ContentType="application/json",
                                      Body=json.dumps({"inputs": PROMPT, "stream": True}))
    assert streamed["ContentType"] == "text/event-stream"
    assert len(_sse_events(streamed["Body"].read())) == len(ANSWER)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("endpoint", ["missing-ep", "creating-ep"])
def test_an_unknown_or_not_in_service_endpoint_is_a_validation_error(client, endpoint):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _stream(client, endpoint, inputs="Hi", stream=True)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == f"Endpoint {endpoint} of account 123456789012 not found."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert isinstance(invocation_error_from_client_error(caught.value, endpoint),
                      EndpointNotFoundError)


def test_a_container_validation_error_is_a_model_error_with_its_status(client):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.invoke_endpoint(EndpointName="tgi-ep", ContentType="application/json",
                               Body=json.dumps({"inputs": PROMPT,
                                                "parameters": {"temperature": 0}}))
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 422
    assert "`temperature` must be strictly positive" in response["OriginalMessage"]
    assert response["LogStreamArn"].endswith("/aws/sagemaker/Endpoints/tgi-ep")
    # Streaming, TGI has already answered 200: the error is an SSE event.
    streamed = _stream(client, inputs=PROMPT, stream=True, parameters={"temperature": 0})
    (event,) = _sse_events(b"".join(_parts(streamed)))
    assert event["error_type"] == "validation"


def test_an_image_the_stand_in_cannot_emulate_is_a_model_error(client):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _stream(client, "other-ep", inputs="Hi", stream=True)
    assert caught.value.response["Error"]["Code"] == "ModelError"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("code", ["ModelInvocationTimeExceeded", "StreamBroken"])
def test_model_stream_error_after_n_tokens(client, code):
    response = _stream(client, inputs=PROMPT, stream=True,
                       attributes=f"trace=1;local-fault=model-stream-error@3:{code}")
    seen = []
    with pytest.raises(botocore.exceptions.EventStreamError) as caught:
        for event in response["Body"]:
            seen.append(event)
    assert [e["index"] for e in _sse_events(_event_bytes(seen))] == [1, 2, 3]
    assert caught.value.response["Error"]["Code"] == "ModelStreamError"
    assert caught.value.response["Error"]["Message"]


def test_internal_stream_failure_set_on_the_server(client, server):
    server.set_fault("internal-stream-failure@2")
    for _ in range(2):  # a server fault stays until cleared
        response = _stream(client, "lmi-ep", inputs=PROMPT, stream=True)
        with pytest.raises(botocore.exceptions.EventStreamError) as caught:
            _parts(response)
        assert caught.value.response["Error"]["Code"] == "InternalStreamFailure"


@pytest.mark.parametrize("endpoint", ["tgi-ep", "lmi-ep"])
def test_container_error_event_after_n_tokens(client, endpoint):
    response = _stream(client, endpoint, inputs=PROMPT, stream=True,
                       attributes="local-fault=container-error@4")
    data = b"".join(_parts(response))
    if endpoint == "tgi-ep":
        events = _sse_events(data)
        assert len(events) == 5 and events[-1]["error_type"] == "generation"
    else:
        lines = [json.loads(line) for line in data.decode().split("\n") if line]
        assert len(lines) == 5 and "message" in lines[-1]["error"]


def test_a_dropped_connection_breaks_the_stream(client):
    response = _stream(client, inputs=PROMPT, stream=True, attributes="local-fault=drop@3")
    seen = []
    with pytest.raises(STREAM_ERRORS):
        for event in response["Body"]:
            seen.append(event)
    assert [e["index"] for e in _sse_events(_event_bytes(seen))] == [1, 2, 3]


def test_a_stalled_stream_ends_in_a_read_timeout(server):
    response = _stream(_client(server.url, read_timeout=0.5), inputs=PROMPT, stream=True,
                       attributes="local-fault=stall@2")
    events = iter(response["Body"])
    received = [next(events) for _ in range(3)]  # the first event in two parts, the second
    assert [e["index"] for e in _sse_events(_event_bytes(received))] == [1, 2]
    with pytest.raises((botocore.exceptions.ReadTimeoutError,
                        urllib3.exceptions.ReadTimeoutError)):
        next(events)
    response["Body"].close()


def test_throttling_for_a_count_of_requests(client, server):
    server.set_fault("throttle:2")
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            _stream(client, inputs="Hi", stream=True)
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert _parts(_stream(client, inputs="Hi", stream=True))  # the third goes through
    assert server.fault is None


def test_service_unavailable_and_model_error(client):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _stream(client, inputs="Hi", stream=True, attributes="local-fault=unavailable")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _stream(client, inputs="Hi", stream=True, attributes="local-fault=model-error:503")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["OriginalStatusCode"] == 503


def test_chunking_cuts_payloads_anywhere_without_changing_the_bytes(client):
    plain = b"".join(_parts(_stream(client, inputs=PROMPT, stream=True)))
    response = _stream(client, inputs=PROMPT, stream=True, attributes="local-fault=chunking:7")
    parts = _parts(response)
    assert len(parts) > len(ANSWER)
    assert b"".join(parts) == plain


def test_slow_first_token_and_combined_faults_are_logged(client, server):
    server.clear_requests()
    response = _stream(client, inputs=PROMPT, stream=True,
                       attributes="local-fault=slow-first-token:0.05+model-stream-error@1")
    with pytest.raises(botocore.exceptions.EventStreamError):
        _parts(response)
    (record,) = server.requests()
    assert record["faults"] == ["slow-first-token:0.05", "model-stream-error@1:StreamBroken"]


@pytest.mark.parametrize("spec", ["explode", "drop@", "model-stream-error@2:Other",
                                  "throttle:0"])
def test_an_invalid_fault_spec_is_a_validation_error_naming_the_grammar(client, server, spec):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _stream(client, inputs="Hi", stream=True, attributes=f"local-fault={spec}")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert FAULT_GRAMMAR in caught.value.response["Error"]["Message"]
    status, body = _http(server, "POST", "/_local/fault", json.dumps({"spec": spec}))
    assert status == 400 and FAULT_GRAMMAR in json.loads(body)["Message"]


# --------------------------------------------------------------------------- local routes


def _http(server: RuntimeServer, method: str, path: str, body: str | None = None,
          host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:80", "10.0.0.1",
                                  "169.254.169.254", ""])
def test_a_request_for_a_host_that_is_not_loopback_is_refused(server, host):
    status, body = _http(server, "GET", "/_local/ping", host=host or " ")
    assert status == 403
    assert "loopback" in json.loads(body)["Message"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2:8080", "[::1]:9"])
def test_loopback_hosts_are_served(server, host):
    assert _http(server, "GET", "/_local/ping", host=host)[0] == 200


def test_the_request_log_in_process_and_over_http(client, server):
    server.clear_requests()
    _parts(_stream(client, inputs=PROMPT, stream=True, parameters={"stop_sequences": ["x"]},
                   attributes="user=42;local-fault=chunking, accept_eula=true"))
    (record,) = server.requests()
    assert record["operation"] == "InvokeEndpointWithResponseStream"
    assert record["endpoint"] == "tgi-ep" and record["container"] == "tgi"
    assert record["body"] == {"inputs": PROMPT, "stream": True,
                              "parameters": {"stop_sequences": ["x"]}}
    assert record["custom_attributes"] == "user=42;accept_eula=true"
    assert record["ignored_parameters"] == ["stop_sequences"]
    assert record["headers"]["Authorization"] == "AWS4-HMAC-SHA256 (redacted)"
    assert record["status"] == 200 and record["tokens"] == len(ANSWER)
    status, body = _http(server, "GET", "/_local/requests")
    assert status == 200 and json.loads(body) == [record]
    assert _http(server, "DELETE", "/_local/requests")[0] == 204
    assert server.requests() == []


def test_frame_timings_per_request(client, server):
    response = _stream(client, inputs=PROMPT, stream=True, parameters={"max_new_tokens": 6})
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-local-request-id"]
    _parts(response)
    timings = server.timings(request_id)
    assert [index for index, _ in timings["frames"]] == [1, 2, 3, 4, 5, 6]
    sent = [ns for _, ns in timings["frames"]]
    assert timings["received_ns"] <= timings["headers_ns"] <= sent[0]
    assert sent == sorted(sent) and sent[-1] <= timings["done_ns"]
    status, body = _http(server, "GET", f"/_local/timings/{request_id}")
    assert status == 200 and json.loads(body) == timings
    assert _http(server, "GET", "/_local/timings/unknown")[0] == 404


def test_faults_over_http(server):
    status, _ = _http(server, "POST", "/_local/fault", json.dumps({"spec": "drop@5"}))
    assert status == 200 and server.fault == "drop@5"
    assert json.loads(_http(server, "GET", "/_local/fault")[1]) == {"spec": "drop@5"}
    _http(server, "POST", "/_local/fault", json.dumps({"spec": None}))
    assert server.fault is None


# --------------------------------------------------------------------------- lifecycle


def test_the_server_binds_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        RuntimeServer(ENDPOINTS.get, backend=REPLAY, host="0.0.0.0")
    with RuntimeServer(ENDPOINTS.get, backend=REPLAY, host="localhost") as local:
        assert local.url == f"http://127.0.0.1:{local.port}"
        probe = socket.create_connection(("127.0.0.1", local.port), timeout=5)
        probe.close()


def test_stop_ends_open_streams_and_leaves_no_thread():
    before = set(threading.enumerate())
    running = RuntimeServer(ENDPOINTS.get, backend=REPLAY).start()
    client = _client(running.url, read_timeout=30)
    response = _stream(client, inputs=PROMPT, stream=True, attributes="local-fault=stall@1")
    next(iter(response["Body"]))
    idle = _client(running.url)  # a kept-alive connection that sits idle
    _parts(_stream(idle, inputs="Hi", stream=True))
    running.stop()
    running.stop()  # idempotent
    assert not running.running
    assert set(threading.enumerate()) <= before
    response["Body"].close()
