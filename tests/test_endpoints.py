"""Endpoints: payload checks, retries before the first byte only, error mapping, the wait loop,
idempotent clean-up and the execution role -- with fake clients, and against the local
stand-in's moto control plane where real AWS behaviour matters."""

from __future__ import annotations

import io
import itertools
import json
import re
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st
from recipe_resources import deploy_endpoint

from common.endpoints import (
    DEFAULT_READ_TIMEOUT_S,
    MAX_BODY_BYTES,
    approx_token_count,
    build_payload,
    delete_endpoint_resources,
    invoke,
    invoke_stream,
    resolve_execution_role,
    runtime_client,
    validate_payload,
    wait_for_endpoint,
)
from common.errors import (
    DeploymentError,
    EndpointFailedError,
    EndpointNotFoundError,
    EndpointWaitTimeout,
    InvocationError,
    ModelInvocationError,
    ModelStreamError,
    PayloadError,
    StreamError,
    ThrottledError,
)
from common.presets import get_preset

TGI = get_preset("7b", "tgi")
LMI = get_preset("7b", "lmi")
LOG_STREAM = ("arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep:"
              "log-stream:AllTraffic/i-0abc")


def _payload(**parameters):
    return {"inputs": "[INST] Hello [/INST]",
            "parameters": {"max_new_tokens": 64, **parameters}, "stream": True}


def client_error(code, status, message="boom", operation="InvokeEndpointWithResponseStream",
                 **extra):
    """A botocore ``ClientError`` as an AWS API answers it (``extra`` joins the response)."""
    response = {"Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status}, **extra}
    return ClientError(response, operation)


def _sse(text, token_id, special=False, final=None):
    event = {"index": token_id, "token": {"id": token_id, "text": text, "logprob": -0.1,
                                          "special": special},
             "generated_text": final, "details": None}
    return {"PayloadPart": {"Bytes": b"data: " + json.dumps(event).encode() + b"\n\n"}}


def _tgi_body():
    return [_sse("Hello", 1), _sse(" world", 2), _sse("</s>", 3, True, "Hello world")]


class FakeRuntime:
    """A sagemaker-runtime client whose calls play a script of answers and exceptions."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def _next(self, **kwargs):
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    invoke_endpoint_with_response_stream = _next
    invoke_endpoint = _next


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


# --------------------------------------------------------------------------- client


def test_the_runtime_client_has_a_read_timeout_and_no_botocore_retries():
    client = runtime_client("us-east-1", session=boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing"))
    config = client.meta.config
    assert (config.read_timeout, config.connect_timeout) == (DEFAULT_READ_TIMEOUT_S, 10.0)
    assert config.retries["total_max_attempts"] == 1
    assert client.meta.service_model.service_name == "sagemaker-runtime"


# --------------------------------------------------------------------------- payloads


def test_a_good_payload_comes_back_as_its_json_bytes():
    payload = _payload(temperature=0.6, top_p=0.9, stop=["</s>"])
    assert json.loads(validate_payload(payload, TGI, streaming=True)) == payload


def test_a_body_over_six_mib_is_refused():
    payload = {"inputs": "x" * MAX_BODY_BYTES, "parameters": {"max_new_tokens": 1}}
    with pytest.raises(PayloadError, match=r"6,291,456 \(6 MiB\)"):
        validate_payload(payload, container="tgi")


@pytest.mark.parametrize(("attributes", "fragment"), [
    ("a" * 1025, "1025 characters"), ("trace=ß", "must be ASCII")])
def test_bad_custom_attributes_are_refused(attributes, fragment):
    with pytest.raises(PayloadError, match=fragment):
        validate_payload(_payload(), TGI, custom_attributes=attributes)


def test_custom_attributes_of_exactly_1024_ascii_characters_pass():
    validate_payload(_payload(), TGI, custom_attributes="a" * 1024)


def test_streaming_without_stream_true_is_refused_and_the_reverse_too():
    payload = {**_payload(), "stream": False}
    with pytest.raises(PayloadError, match='Add "stream": true'):
        validate_payload(payload, TGI, streaming=True)
    with pytest.raises(PayloadError, match="use invoke_stream"):
        validate_payload(_payload(), TGI, streaming=False)
    with pytest.raises(PayloadError, match="true or false"):
        validate_payload({**_payload(), "stream": "yes"}, TGI)


@pytest.mark.parametrize("preset", [TGI, LMI], ids=["tgi", "lmi"])
def test_a_missing_max_new_tokens_is_refused_saying_lmi_stops_at_30(preset):
    payload = {"inputs": "Hi", "parameters": {"temperature": 0.5}, "stream": True}
    with pytest.raises(PayloadError, match="LMI generates only 30 tokens"):
        validate_payload(payload, preset)


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "64"])
def test_max_new_tokens_must_be_a_positive_whole_number(value):
    with pytest.raises(PayloadError, match="positive whole number"):
        validate_payload(_payload(max_new_tokens=value), TGI)


def test_new_tokens_that_do_not_fit_the_total_are_refused_with_the_room_left():
    prompt = "word " * 600  # 3,000 characters: about 1,000 tokens by the high estimate
    payload = {"inputs": prompt, "parameters": {"max_new_tokens": 3500}, "stream": True}
    with pytest.raises(PayloadError) as caught:
        validate_payload(payload, LMI)
    room = 4096 - approx_token_count(prompt)
    assert f"lower max_new_tokens to at most {room}" in str(caught.value)
    assert "estimated" in str(caught.value)
    validate_payload({**payload, "parameters": {"max_new_tokens": room}}, LMI)


def test_a_prompt_over_tgis_input_limit_is_refused():
    payload = {"inputs": "x" * 12_000, "parameters": {"max_new_tokens": 10}, "stream": True}
    with pytest.raises(PayloadError, match=r"MAX_INPUT_TOKENS \(3072\)"):
        validate_payload(payload, TGI)


def test_a_real_token_count_can_replace_the_estimate():
    payload = {"inputs": "x" * 12_000, "parameters": {"max_new_tokens": 10}, "stream": True}
    validate_payload(payload, TGI, count_tokens=lambda text: len(text) // 6)


@pytest.mark.parametrize(("preset", "parameter", "fragment"), [
    (TGI, "stop_sequences", "use 'stop'"),
    (LMI, "stop_sequences", "use 'stop'"),
    (LMI, "watermark", "Unknown parameters for LMI: ['watermark']"),
    (LMI, "ignore_eos", "LMI calls it 'ignore_eos_token'"),
    (TGI, "min_p", "Unknown parameters for TGI: ['min_p']"),
], ids=["tgi-stop_sequences", "lmi-stop_sequences", "lmi-watermark", "lmi-ignore_eos",
        "tgi-min_p"])
def test_unknown_parameters_for_the_container_are_refused(preset, parameter, fragment):
    with pytest.raises(PayloadError) as caught:
        validate_payload(_payload(**{parameter: ["x"]}), preset)
    assert fragment in str(caught.value) and "ignore them silently" in str(caught.value)


def test_auto_accepts_what_either_container_reads():
    validate_payload(_payload(min_p=0.1, typical_p=0.9), container="auto")


@pytest.mark.parametrize(("payload", "fragment"), [
    ({"inputs": "Hi", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
     "both 'inputs' and 'messages'"),
    ({"prompt": "Hi", "stream": True}, "needs 'inputs'"),
    ({"inputs": "Hi", "max_new_tokens": 5, "parameters": {"max_new_tokens": 5}},
     "inside 'parameters'"),
    ({"inputs": "  ", "parameters": {"max_new_tokens": 5}}, "non-empty string"),
    ({"inputs": "Hi", "parameters": [1]}, "JSON object"),
    ({"messages": [], "max_tokens": 5}, "non-empty list"),
    ({"messages": [{"content": "Hi"}], "max_tokens": 5}, "'role' string"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "Set max_tokens"),
    ({"messages": [{"role": "user", "content": "Hi"}], "parameters": {"max_tokens": 5}},
     "top level"),
    ({"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 5},
     "calls it 'max_tokens'"),
    ({"inputs": "Hi", "parameters": {"max_new_tokens": 5, "seed": {1, 2}}}, "as JSON"),
], ids=["both", "neither", "top-level-parameter", "empty-prompt", "parameters-not-dict",
        "no-messages", "message-without-role", "messages-without-max_tokens",
        "messages-with-parameters", "messages-max_new_tokens", "not-json"])
def test_malformed_bodies_are_refused_with_the_fix(payload, fragment):
    with pytest.raises(PayloadError, match=fragment):
        validate_payload(payload, container="tgi")


def test_a_payload_must_be_a_dict_and_the_container_must_match_the_preset():
    with pytest.raises(PayloadError, match="must be a dict"):
        validate_payload('{"inputs": "Hi"}', TGI)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="the preset is for 'tgi'"):
        validate_payload(_payload(), TGI, container="lmi")


def test_a_messages_conversation_counts_against_the_budget():
    messages = [{"role": "user", "content": "y" * 9600}]
    with pytest.raises(PayloadError, match="MAX_INPUT_TOKENS"):
        validate_payload({"messages": messages, "max_tokens": 10, "stream": True}, TGI)


@given(st.text(max_size=300))
def test_for_every_text_the_estimate_is_at_least_a_token_per_four_bytes(text):
    estimate = approx_token_count(text)
    assert estimate >= len(text.encode("utf-8", errors="replace")) / 4
    assert estimate <= len(text.encode("utf-8", errors="replace")) + 1


def test_the_estimate_is_high_for_english():
    assert approx_token_count("Hello, my name is Alice.") == 8  # Llama 2 gives 7 or so


def test_build_payload_makes_each_container_s_body():
    tgi = build_payload("[INST] Hi [/INST]", container="tgi", max_new_tokens=100, top_p=0.9)
    assert tgi == {"inputs": "[INST] Hi [/INST]", "stream": True, "parameters": {
        "max_new_tokens": 100, "return_full_text": False, "top_p": 0.9}}
    lmi = build_payload("[INST] Hi [/INST]", container="lmi", max_new_tokens=100, stream=False)
    assert lmi["parameters"] == {"max_new_tokens": 100} and lmi["stream"] is False
    chat = build_payload([{"role": "user", "content": "Hi"}], container="lmi",
                         max_new_tokens=50, temperature=0.2)
    assert chat == {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50,
                    "temperature": 0.2, "stream": True}
    with pytest.raises(PayloadError, match="typical_p"):
        build_payload("Hi", container="lmi", max_new_tokens=10, typical_p=0.5)


# --------------------------------------------------------------------------- invoking


def test_throttling_twice_then_success_retries_with_growing_backoff():
    client = FakeRuntime(client_error("ThrottlingException", 400),
                         client_error("ServiceUnavailable", 503), {"Body": _tgi_body()})
    sleeps = Sleeps()
    stream = invoke_stream(client, "ep", _payload(), container="tgi", sleep=sleeps,
                           jitter=lambda: 0.0, custom_attributes="trace=1")
    assert "".join(token.text for token in stream if not token.special) == "Hello world"
    assert sleeps == [0.5, 1.0]
    assert len(client.calls) == 3
    call = client.calls[0]
    assert (call["EndpointName"], call["ContentType"], call["CustomAttributes"]) == (
        "ep", "application/json", "trace=1")
    assert json.loads(call["Body"]) == _payload()


def test_invoke_stream_keeps_the_models_own_stop_tokens_out_of_the_text():
    body = [_sse("Hello", 1), _sse(" world", 2), _sse("<step>", 3)]  # not flagged special
    plain = invoke_stream(FakeRuntime({"Body": list(body)}), "ep", _payload(), container="tgi")
    list(plain)
    assert plain.text == "Hello world<step>"  # not in END_TOKENS: only a model's own list knows
    stream = invoke_stream(FakeRuntime({"Body": list(body)}), "ep", _payload(),
                           container="tgi", stop_tokens=["<step>"])
    tokens = list(stream)
    assert [token.special for token in tokens] == [False, False, True]
    assert stream.text == "Hello world"


def test_a_429_status_is_retried_even_under_another_code():
    client = FakeRuntime(client_error("SomethingNew", 429), {"Body": _tgi_body()})
    sleeps = Sleeps()
    list(invoke_stream(client, "ep", _payload(), sleep=sleeps, jitter=lambda: 0.5))
    assert sleeps == [0.75]


def test_throttling_every_time_gives_up_after_max_attempts():
    client = FakeRuntime(*[client_error("ThrottlingException", 400)] * 4)
    sleeps = Sleeps()
    with pytest.raises(ThrottledError, match="gave up after 3 attempts"):
        invoke_stream(client, "ep", _payload(), max_attempts=3, sleep=sleeps, jitter=lambda: 0)
    assert len(client.calls) == 3 and sleeps == [0.5, 1.0]


def test_a_failure_after_the_first_byte_is_never_retried():
    def broken_body():
        yield _sse("Hello", 1)
        raise EventStreamError({"Error": {"Code": "ModelStreamError",
                                          "Message": "stream broke"}},
                               "InvokeEndpointWithResponseStream")

    client = FakeRuntime({"Body": broken_body()}, {"Body": _tgi_body()})
    sleeps = Sleeps()
    stream = invoke_stream(client, "ep", _payload(), container="tgi", sleep=sleeps)
    with pytest.raises(StreamError) as caught:
        list(stream)
    assert isinstance(caught.value, ModelStreamError)
    assert caught.value.partial_text == "Hello"
    assert len(client.calls) == 1 and sleeps == []


def test_a_model_error_names_the_container_status_and_log_stream_without_retrying():
    error = client_error("ModelError", 424, "Received server error (500) from primary",
                         OriginalStatusCode=500, LogStreamArn=LOG_STREAM)
    client = FakeRuntime(error, {"Body": _tgi_body()})
    with pytest.raises(ModelInvocationError) as caught:
        invoke_stream(client, "ep", _payload(), sleep=Sleeps())
    assert caught.value.original_status_code == 500
    assert "answered 500" in str(caught.value) and LOG_STREAM in str(caught.value)
    assert len(client.calls) == 1


def test_a_missing_endpoint_is_not_retried():
    client = FakeRuntime(
        client_error("ValidationError", 400, "Endpoint ep of account 1 not found."))
    with pytest.raises(EndpointNotFoundError, match="Check the endpoint name 'ep'"):
        invoke_stream(client, "ep", _payload(), sleep=Sleeps())
    assert len(client.calls) == 1


def test_a_read_timeout_before_the_stream_starts_says_what_to_raise():
    client = FakeRuntime(ReadTimeoutError(endpoint_url="https://runtime.sagemaker"))
    with pytest.raises(InvocationError, match=r"read_timeout=\.\.\."):
        invoke_stream(client, "ep", _payload(), sleep=Sleeps())


def test_a_bad_payload_is_refused_before_any_call():
    client = FakeRuntime()
    with pytest.raises(PayloadError, match='"stream": true'):
        invoke_stream(client, "ep", {**_payload(), "stream": False})
    with pytest.raises(PayloadError, match="max_new_tokens"):
        invoke_stream(client, "ep", _payload(max_new_tokens=4095), preset=TGI)
    assert client.calls == []


def test_invoke_returns_the_parsed_answer_and_retries_the_same_way():
    answer = {"Body": io.BytesIO(b'[{"generated_text": "Hi there"}]'),
              "ContentType": "application/json"}
    client = FakeRuntime(client_error("ThrottlingException", 400, operation="InvokeEndpoint"),
                         answer)
    result = invoke(client, "ep", {**_payload(), "stream": False}, preset=TGI, sleep=Sleeps())
    assert result == [{"generated_text": "Hi there"}]
    assert client.calls[1]["Accept"] == "application/json"


def test_invoke_explains_an_answer_that_is_not_json():
    client = FakeRuntime({"Body": io.BytesIO(b"data: {}\n\n"), "ContentType": "text/event-stream"})
    with pytest.raises(InvocationError, match="not JSON"):
        invoke(client, "ep", {**_payload(), "stream": False})


# --------------------------------------------------------------------------- waiting


class FakeSageMaker:
    """DescribeEndpoint walks ``statuses`` (the last repeats), or finds nothing (``missing``)."""

    def __init__(self, *statuses, reason=None, missing=False):
        self.statuses = list(statuses)
        self.reason = reason
        self.missing = missing
        self.calls = 0

    def describe_endpoint(self, EndpointName):
        self.calls += 1
        if self.missing:
            raise client_error("ValidationException", 400,
                               f"Could not find endpoint \"{EndpointName}\".", "DescribeEndpoint")
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        answer = {"EndpointName": EndpointName, "EndpointStatus": status}
        if self.reason and status == "Failed":
            answer["FailureReason"] = self.reason
        return answer


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _wait(client, **kwargs):
    clock = FakeClock()
    out = io.StringIO()
    options = {"poll_s": 15, "clock": clock, "sleep": clock.sleep, "out": out, **kwargs}
    try:
        return wait_for_endpoint("ep", sagemaker_client=client, **options), out.getvalue()
    except Exception as exc:
        exc.shown = out.getvalue()
        raise


def test_waiting_shows_the_status_and_elapsed_time_until_in_service():
    client = FakeSageMaker("Creating", "Creating", "Creating", "InService")
    described, shown = _wait(client)
    assert described["EndpointStatus"] == "InService"
    # Outside Jupyter: a line per change of status (never \r, which runs lines together in
    # a log or a saved output), then the final line.
    assert shown == "ep: Creating (elapsed 00:00)\nep: InService after 00:04\n"
    assert client.calls == 4  # pauses of 1 s, then 1.5 times longer


def test_a_long_wait_repeats_an_unchanged_status_every_five_minutes():
    client = FakeSageMaker(*["Creating"] * 40, "Updating", "InService")
    _, shown = _wait(client, poll_s=60)
    lines = shown.splitlines()
    assert lines[0] == "ep: Creating (elapsed 00:00)"
    creating = lines[:-2]
    assert len(creating) >= 6 and all(line.startswith("ep: Creating (elapsed ")
                                       for line in creating)
    seconds = [int(m) * 60 + int(s) for m, s in
               (re.search(r"(\d+):(\d+)\)$", line).groups() for line in creating)]
    gaps = [b - a for a, b in itertools.pairwise(seconds)]
    assert all(300 <= gap <= 360 for gap in gaps), gaps  # every 5 minutes, at a 60 s poll
    assert lines[-2].startswith("ep: Updating (elapsed ") and lines[-1].startswith(
        "ep: InService after ")


def test_in_jupyter_the_wait_is_one_line_updated_in_place(monkeypatch):
    import common.progress

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    def display_handle(text):
        shown.append(text)
        return Handle()

    monkeypatch.setenv("COMMON_DISPLAY", "widget")
    monkeypatch.setattr(common.progress, "_display_handle", display_handle)
    clock = FakeClock()
    wait_for_endpoint("ep", sagemaker_client=FakeSageMaker("Creating", "Creating", "InService"),
                      clock=clock, sleep=clock.sleep)
    assert shown == ["ep: Creating (elapsed 00:00)", "ep: Creating (elapsed 00:01)",
                     "ep: InService after 00:02"]


def test_waiting_without_progress_prints_nothing():
    _, shown = _wait(FakeSageMaker("Creating", "InService"), progress=False)
    assert shown == ""


def test_a_failed_endpoint_raises_with_sagemakers_reason():
    reason = "The primary container for production variant AllTraffic did not pass the ping."
    with pytest.raises(EndpointFailedError) as caught:
        _wait(FakeSageMaker("Creating", "Failed", reason=reason))
    assert caught.value.failure_reason == reason and reason in str(caught.value)
    assert "Failed after 00:01" in caught.value.shown


def test_a_wait_that_runs_out_says_what_to_check():
    client = FakeSageMaker("Creating")
    with pytest.raises(EndpointWaitTimeout) as caught:
        _wait(client, timeout_s=100, poll_s=30)
    message = str(caught.value)
    assert "still 'Creating' after 100 s" in message and "CloudWatch" in message
    assert "quota" in message
    assert client.calls == 11  # at 0, 1, 2.5, 4.75, 8.1, 13.2, 20.8, 32.2, 49.3, 74.9, 100 s


def test_waiting_for_an_endpoint_that_does_not_exist_says_so():
    with pytest.raises(DeploymentError, match="does not exist"):
        _wait(FakeSageMaker(missing=True))


# --------------------------------------------------------------------------- clean-up


class FailingSageMaker:
    def describe_endpoint(self, EndpointName):
        raise client_error("AccessDeniedException", 400, "not allowed", "DescribeEndpoint")


def test_clean_up_errors_other_than_missing_resources_propagate():
    with pytest.raises(ClientError, match="AccessDenied"):
        delete_endpoint_resources("ep", sagemaker_client=FailingSageMaker())


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/", "bucket/prefix"])
def test_clean_up_refuses_to_empty_a_whole_bucket(uri):
    class Gone:
        def describe_endpoint(self, EndpointName):
            raise client_error("ValidationException", 400, "Could not find endpoint", "Describe")

    with pytest.raises(DeploymentError, match="s3://bucket"):
        delete_endpoint_resources("ep", endpoint_config_name="c", model_name="m", s3_uri=uri,
                                  sagemaker_client=Gone(), s3_client=object())


def test_recipe_resources_stream_then_delete_twice_against_the_stand_in(local_stack):
    sm, name = deploy_endpoint("cleanup")
    tokens = invoke_stream(runtime_client(), name,
                           build_payload("[INST] Hi [/INST]", container="tgi",
                                         max_new_tokens=8), preset=TGI)
    assert "".join(t.text for t in tokens if not t.special)

    s3 = boto3.client("s3")
    bucket = f"recipes-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for key in (f"llama-2-recipes/{name}/model/config.json",
                f"llama-2-recipes/{name}/code/model.tar.gz", f"llama-2-recipes/{name}x/keep.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

    first = delete_endpoint_resources(
        name, endpoint_config_name=name, model_name=name,
        s3_uri=f"s3://{bucket}/llama-2-recipes/{name}", sagemaker_client=sm, s3_client=s3)
    assert first == [f"endpoint {name}: deleted", f"endpoint config {name}: deleted",
                     f"model {name}: deleted",
                     f"S3 prefix s3://{bucket}/llama-2-recipes/{name}/: deleted 2 objects"]
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert remaining == [f"llama-2-recipes/{name}x/keep.txt"]

    second = delete_endpoint_resources(
        name, endpoint_config_name=name, model_name=name,
        s3_uri=f"s3://{bucket}/llama-2-recipes/{name}/", sagemaker_client=sm, s3_client=s3)
    assert second[0] in (f"endpoint {name}: already gone",
                         f"endpoint {name}: already being deleted")
    assert second[1:] == [f"endpoint config {name}: already gone", f"model {name}: already gone",
                          f"S3 prefix s3://{bucket}/llama-2-recipes/{name}/: already gone"]


def test_clean_up_finds_the_config_and_model_from_the_endpoint(local_stack):
    sm, name = deploy_endpoint("discover")
    done = delete_endpoint_resources(name, sagemaker_client=sm)
    assert done == [f"endpoint {name}: deleted", f"endpoint config {name}: deleted",
                    f"model {name}: deleted"]
    with pytest.raises(ClientError, match="Could not find"):
        sm.describe_model(ModelName=name)


# --------------------------------------------------------------------------- the role


class FakeIam:
    def __init__(self, outcome):
        self.outcome = outcome
        self.asked = []

    def get_role(self, RoleName):
        self.asked.append(RoleName)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return {"Role": {"Arn": self.outcome}}


class FakeBotoSession:
    def __init__(self, iam):
        self.iam = iam

    def client(self, service):
        assert service == "iam"
        return self.iam


class FakeSageMakerSession:
    """Stands for sagemaker.core.helper.session_helper.Session."""

    def __init__(self, iam):
        self.boto_session = FakeBotoSession(iam)


STUDIO_ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-1"
ENV_ROLE = "arn:aws:iam::123456789012:role/from-env"
NAMED_ROLE = "arn:aws:iam::123456789012:role/sagemaker_execution_role"
NO_SUCH_ROLE = client_error("NoSuchEntity", 404, "The role cannot be found.", "GetRole")


@pytest.fixture
def in_studio(tmp_path, monkeypatch):
    """A metadata file as Studio has, and the SDK's role lookup replaced by a recorder."""
    from sagemaker.core.helper import session_helper

    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text("{}")
    seen = []

    def get_execution_role(session=None, use_default=False):
        seen.append(session)
        if isinstance(session.boto_session.iam.outcome, ValueError):
            raise session.boto_session.iam.outcome
        return STUDIO_ROLE

    monkeypatch.setattr(session_helper, "get_execution_role", get_execution_role)
    return str(metadata), seen


def test_inside_studio_the_sdks_role_comes_first(in_studio):
    metadata, seen = in_studio
    session = FakeSageMakerSession(FakeIam(NAMED_ROLE))
    role = resolve_execution_role(session, environ={"SAGEMAKER_EXECUTION_ROLE_ARN": ENV_ROLE},
                                  metadata_file=metadata)
    assert role == STUDIO_ROLE and seen == [session]


def test_inside_studio_a_user_identity_falls_back_to_the_environment(in_studio):
    metadata, _ = in_studio
    session = FakeSageMakerSession(FakeIam(ValueError("The current AWS identity is not a role")))
    assert resolve_execution_role(session, environ={"SAGEMAKER_EXECUTION_ROLE_ARN": ENV_ROLE},
                                  metadata_file=metadata) == ENV_ROLE


def test_outside_studio_the_environment_variable_comes_before_iam(tmp_path):
    iam = FakeIam(NAMED_ROLE)
    role = resolve_execution_role(FakeBotoSession(iam),
                                  environ={"SAGEMAKER_EXECUTION_ROLE_ARN": ENV_ROLE},
                                  metadata_file=str(tmp_path / "absent"))
    assert role == ENV_ROLE and iam.asked == []


def test_without_the_variable_the_role_named_sagemaker_execution_role_is_used(tmp_path):
    iam = FakeIam(NAMED_ROLE)
    assert resolve_execution_role(FakeSageMakerSession(iam), environ={},
                                  metadata_file=str(tmp_path / "absent")) == NAMED_ROLE
    assert iam.asked == ["sagemaker_execution_role"]


def test_with_no_role_anywhere_the_error_says_how_to_create_one(tmp_path):
    with pytest.raises(DeploymentError) as caught:
        resolve_execution_role(FakeBotoSession(FakeIam(NO_SUCH_ROLE)), environ={},
                               metadata_file=str(tmp_path / "absent"))
    message = str(caught.value)
    for fragment in ("sagemaker.amazonaws.com", "AmazonSageMakerFullAccess", "IAM console",
                     "export SAGEMAKER_EXECUTION_ROLE_ARN=", "no IAM role named"):
        assert fragment in message


def test_an_iam_lookup_that_is_denied_is_reported_not_hidden(tmp_path):
    denied = client_error("AccessDenied", 403, "not authorized to perform iam:GetRole", "GetRole")
    with pytest.raises(DeploymentError, match="AccessDenied") as caught:
        resolve_execution_role(FakeBotoSession(FakeIam(denied)), environ={},
                               metadata_file=str(tmp_path / "absent"))
    assert caught.value.__cause__ is denied


def test_a_variable_that_is_not_a_role_arn_is_refused(tmp_path):
    with pytest.raises(DeploymentError, match="not an IAM role ARN"):
        resolve_execution_role(FakeBotoSession(FakeIam(NAMED_ROLE)),
                               environ={"SAGEMAKER_EXECUTION_ROLE_ARN": "my-role"},
                               metadata_file=str(tmp_path / "absent"))


def test_the_named_role_is_found_through_real_iam_in_the_stand_in(local_stack, tmp_path: Path):
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName="sagemaker_execution_role",
                          AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}))[
        "Role"]["Arn"]
    try:
        assert resolve_execution_role(boto3.Session(), environ={},
                                      metadata_file=str(tmp_path / "absent")) == arn
    finally:
        iam.delete_role(RoleName="sagemaker_execution_role")
    with pytest.raises(DeploymentError, match="no IAM role named"):
        resolve_execution_role(boto3.Session(), environ={}, metadata_file=str(tmp_path / "x"))
