"""Inference components and scaling helpers: invoking a component, waiting for capacity,
waiting for a component, the live scaling view, the background load and the ordered, idempotent
clean-up -- with fake clients and botocore's Stubber (the real API shapes)."""

from __future__ import annotations

import datetime
import io
import threading

import boto3
import pytest
from botocore.stub import ANY, Stubber
from test_endpoints import FakeClock, FakeRuntime, _sse
from test_endpoints import client_error as endpoint_error

from common.endpoints import invoke, invoke_stream
from common.errors import (
    DeploymentError,
    InferenceComponentFailedError,
    InvocationError,
    NoCapacityError,
    invocation_error_from_client_error,
)
from common.scaling import (
    COPY_COUNT_DIMENSION,
    BackgroundLoad,
    ScalingState,
    delete_scaling_resources,
    wait_for_inference_component,
    watch_scaling,
)

NO_CAPACITY = ("Inference Component has no capacity to process this request. "
               "ApplicationAutoScaling may be in-progress (if configured) or try to increase "
               "the capacity by invoking UpdateInferenceComponentRuntimeConfig API.")
HEADER_REQUIRED = ("Inference Component Name header is required for endpoints to which you "
                   "plan to deploy inference components. Please include Inference Component "
                   "Name header or consider using SageMaker models.")
HEADER_REFUSED = ("Inference Component Name header is not allowed for endpoints to which you "
                  "dont plan to deploy inference components. Please remove the Inference "
                  "Component Name header and try again.")
IC = "llama-ic"
EP = "llama-ep"
START = FakeClock().now


def _error(code, message):
    return endpoint_error(code, 400, message)


def _answer():
    return {"Body": [_sse("Hello", 1), _sse(" again", 2), _sse("</s>", 3, True, "Hello again")]}


PAYLOAD = {"inputs": "[INST] Hi [/INST]", "parameters": {"max_new_tokens": 8}, "stream": True}


def _client(service):
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1").client(service)


# --------------------------------------------------------------------------- invoking


def test_the_component_name_goes_into_the_request():
    runtime = FakeRuntime(_answer(), {"Body": io.BytesIO(b'{"generated_text": "x"}')})
    text = "".join(t.text for t in invoke_stream(runtime, EP, PAYLOAD, inference_component=IC)
                   if not t.special)
    assert text == "Hello again"
    invoke(runtime, EP, {**PAYLOAD, "stream": False}, inference_component=IC)
    assert [call["InferenceComponentName"] for call in runtime.calls] == [IC, IC]
    plain = FakeRuntime(_answer())
    list(invoke_stream(plain, EP, PAYLOAD))
    assert "InferenceComponentName" not in plain.calls[0]


def test_the_component_name_is_accepted_by_botocores_request_shape():
    runtime = _client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_response("invoke_endpoint",
                          {"Body": io.BytesIO(b"{}"), "ContentType": "application/json"},
                          {"EndpointName": EP, "InferenceComponentName": IC, "Body": ANY,
                           "ContentType": "application/json", "Accept": "application/json"})
        assert invoke(runtime, EP, {**PAYLOAD, "stream": False}, inference_component=IC) == {}


@pytest.mark.parametrize("bad", ["", "  ", 5])
def test_an_empty_component_name_is_refused(bad):
    with pytest.raises(ValueError, match="inference_component"):
        invoke_stream(FakeRuntime(), EP, PAYLOAD, inference_component=bad)


def test_no_capacity_without_waiting_raises_with_the_fix():
    runtime = FakeRuntime(_error("ValidationError", NO_CAPACITY))
    with pytest.raises(NoCapacityError) as caught:
        invoke_stream(runtime, EP, PAYLOAD, inference_component=IC)
    message = str(caught.value)
    assert caught.value.inference_component == IC
    assert "wait_for_capacity" in message and "UpdateInferenceComponentRuntimeConfig" in message
    assert "update_inference_component_runtime_config" in message
    assert len(runtime.calls) == 1


def test_waiting_for_capacity_says_so_retries_and_streams():
    clock = FakeClock()
    out = io.StringIO()
    runtime = FakeRuntime(*[_error("ValidationError", NO_CAPACITY)] * 3, _answer())
    tokens = invoke_stream(runtime, EP, PAYLOAD, inference_component=IC, wait_for_capacity=600,
                           sleep=clock.sleep, clock=clock, out=out)
    assert "".join(t.text for t in tokens if not t.special) == "Hello again"
    shown = out.getvalue()
    assert "No capacity" in shown and IC in shown and "600 s" in shown
    assert "waiting for a copy" in shown and "a copy is serving" in shown and "4 tries" in shown
    assert clock.now - START == pytest.approx(1.0 + 1.5 + 2.25)  # the pauses grow 1.5x


def test_waiting_for_capacity_gives_up_after_its_time():
    clock = FakeClock()
    runtime = FakeRuntime(*[_error("ValidationError", NO_CAPACITY)] * 50)
    with pytest.raises(NoCapacityError, match="Still no capacity after waiting 00:30"):
        invoke_stream(runtime, EP, PAYLOAD, inference_component=IC, wait_for_capacity=30,
                      sleep=clock.sleep, clock=clock, out=io.StringIO())
    assert clock.now - START == pytest.approx(30.0)


def test_a_negative_wait_is_refused():
    with pytest.raises(ValueError, match="wait_for_capacity"):
        invoke_stream(FakeRuntime(_answer()), EP, PAYLOAD, inference_component=IC,
                      wait_for_capacity=-1)


def test_other_errors_are_not_waited_for():
    runtime = FakeRuntime(_error("ValidationError", HEADER_REQUIRED))
    with pytest.raises(InvocationError, match="inference_component=NAME") as caught:
        invoke_stream(runtime, EP, PAYLOAD, wait_for_capacity=60)
    assert not isinstance(caught.value, NoCapacityError)
    assert len(runtime.calls) == 1


def test_the_error_mapper_knows_the_component_errors():
    assert isinstance(invocation_error_from_client_error(_error("ValidationError", NO_CAPACITY)),
                      NoCapacityError)
    header = invocation_error_from_client_error(_error("ValidationError", HEADER_REQUIRED))
    assert type(header) is InvocationError and "InferenceComponentName" in str(header)
    refused = invocation_error_from_client_error(_error("ValidationError", HEADER_REFUSED), EP)
    assert type(refused) is InvocationError and "leave inference_component" in str(refused)


# --------------------------------------------------------------------------- waiting


def _described(status, current=0, desired=1, reason=None):
    answer = {
        "InferenceComponentName": IC, "EndpointName": EP, "VariantName": "AllTraffic",
        "InferenceComponentArn": f"arn:aws:sagemaker:us-east-1:1:inference-component/{IC}",
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}",
        "CreationTime": datetime.datetime(2026, 1, 1), "LastModifiedTime":
            datetime.datetime(2026, 1, 1),
        "InferenceComponentStatus": status,
        "RuntimeConfig": {"DesiredCopyCount": desired, "CurrentCopyCount": current},
    }
    if reason:
        answer["FailureReason"] = reason
    return answer


def _wait(stub_answers, **kwargs):
    sm = _client("sagemaker")
    clock = FakeClock()
    out = io.StringIO()
    with Stubber(sm) as stub:
        for answer in stub_answers:
            if isinstance(answer, tuple):
                stub.add_client_error("describe_inference_component", *answer)
            else:
                stub.add_response("describe_inference_component", answer,
                                  {"InferenceComponentName": IC})
        try:
            result = wait_for_inference_component(IC, sagemaker_client=sm, poll_s=10,
                                                  clock=clock, sleep=clock.sleep, out=out,
                                                  **kwargs)
        except Exception as exc:
            exc.shown = out.getvalue()
            raise
        stub.assert_no_pending_responses()
    return result, out.getvalue()


def test_waiting_for_a_component_shows_status_and_copies():
    result, shown = _wait([_described("Creating"), _described("Creating"),
                           _described("InService", 1, 1)])
    assert result["InferenceComponentStatus"] == "InService"
    # A line per change (pauses 1 s, then 1.5 s), never \r-rewritten.
    assert shown == (f"{IC}: Creating, copies 0/1 (elapsed 00:00)\n"
                     f"{IC}: InService, copies 1/1 after 00:02\n")


def test_a_failed_component_raises_with_its_reason():
    with pytest.raises(InferenceComponentFailedError, match="not enough GPUs") as caught:
        _wait([_described("Creating"), _described("Failed", reason="not enough GPUs")])
    assert caught.value.failure_reason == "not enough GPUs"
    assert "/aws/sagemaker/InferenceComponents/" in str(caught.value)


def test_a_missing_component_says_so():
    with pytest.raises(DeploymentError, match="does not exist"):
        _wait([("ValidationException", "Could not find inference component")])


def test_waiting_for_a_component_times_out_with_advice():
    with pytest.raises(DeploymentError, match="still Creating after 30 s"):
        _wait([_described("Creating")] * 8, timeout_s=30)  # pauses 1, 1.5, 2.25, ... then 10


# --------------------------------------------------------------------------- load and watch


def test_the_background_load_keeps_its_streams_open_and_counts():
    opened = threading.Semaphore(0)
    release = threading.Event()

    def one():
        opened.release()
        release.wait(5)
        yield "token"

    load = BackgroundLoad(one, 3).start()
    for _ in range(3):
        assert opened.acquire(timeout=5)
    assert load.in_flight == 3
    release.set()
    load.stop()
    assert load.in_flight == 0 and load.completed >= 3 and not load.errors
    assert load.ttft_p50_s is not None and "error(s)" in load.summary()


def test_the_background_load_counts_errors():
    def failing():
        raise RuntimeError("no capacity")

    with BackgroundLoad(failing, 1) as load:
        threading.Event().wait(0.1)
    assert load.errors and "RuntimeError: no capacity" in load.summary()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_the_load_wants_a_positive_concurrency(bad):
    with pytest.raises(ValueError, match="concurrency"):
        BackgroundLoad(lambda: [], bad)


class ScriptedSageMaker:
    """Answers describe calls from a script of (status, current, desired, instances)."""

    def __init__(self, script):
        self.script = list(script)
        self.step = 0

    def describe_inference_component(self, InferenceComponentName):
        status, current, desired, _ = self.script[min(self.step, len(self.script) - 1)]
        return _described(status, current, desired, reason="boom" if status == "Failed" else None)

    def describe_endpoint(self, EndpointName):
        *_, instances = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        return {"EndpointName": EP, "EndpointStatus": "InService", "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentInstanceCount": instances}]}


def test_watching_prints_a_line_per_change_until_the_condition():
    sm = ScriptedSageMaker([("InService", 1, 1, 1), ("InService", 1, 1, 1),
                            ("Updating", 1, 2, 1), ("Updating", 1, 2, 2),
                            ("InService", 2, 2, 2), ("InService", 2, 3, 2)])
    clock = FakeClock()
    out = io.StringIO()
    timeline = watch_scaling(IC, EP, until=lambda s: s.current_copies >= 2, sagemaker_client=sm,
                             poll_s=5, mode="print", clock=clock, sleep=clock.sleep, out=out,
                             title="scale out")
    assert timeline.reached and timeline.max_copies == 2
    assert [(s.current_copies, s.desired_copies, s.instances) for s in timeline.states] == [
        (1, 1, 1), (1, 2, 1), (1, 2, 2), (2, 2, 2)]
    lines = out.getvalue().splitlines()
    assert lines[0] == "scale out"
    assert lines[1].startswith("t+00:00  copies 1 (desired 1)  instances 1  in flight 0")
    assert lines[2].startswith("t+00:10  copies 1 (desired 2)")
    assert lines[-1].startswith("done after 00:20")


def test_watching_stops_at_its_timeout_and_says_so():
    sm = ScriptedSageMaker([("InService", 1, 1, 1)])
    clock = FakeClock()
    out = io.StringIO()
    timeline = watch_scaling(IC, EP, until=lambda s: s.current_copies == 0, sagemaker_client=sm,
                             poll_s=5, timeout_s=12, mode="print", clock=clock,
                             sleep=clock.sleep, out=out)
    assert not timeline.reached
    assert "without reaching the condition" in out.getvalue()


def test_watching_a_failed_component_raises():
    sm = ScriptedSageMaker([("Failed", 0, 1, 1)])
    with pytest.raises(InferenceComponentFailedError, match="boom"):
        watch_scaling(IC, EP, until=lambda s: False, sagemaker_client=sm, mode="print",
                      out=io.StringIO())


def test_a_state_line_shows_ttft_and_unknown_instances():
    state = ScalingState(75, "InService", 2, 3, None, 17, 0.2104)
    assert state.line() == ("t+01:15  copies 2 (desired 3)  instances ?  in flight 17  "
                            "TTFT p50 210 ms  [InService]")


# --------------------------------------------------------------------------- clean-up

RESOURCE = f"inference-component/{IC}"
POLICIES = [f"{IC}-target-tracking", f"{IC}-scale-out-from-zero"]
ALARM = f"{IC}-no-capacity"


def _policy(name):
    return {"PolicyARN": f"arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x:{name}",
            "PolicyName": name, "ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
            "ScalableDimension": COPY_COUNT_DIMENSION, "PolicyType": "StepScaling",
            "CreationTime": datetime.datetime(2026, 1, 1)}


def _stub_cleanup(sm, aas, cw, *, present):
    """Queue the calls of one clean-up run, in the order they must happen."""
    order = []
    names = {"AlarmNames": [ALARM]}
    alarms = [{"AlarmName": ALARM}] if present else []
    cw.add_response("describe_alarms", {"MetricAlarms": alarms}, names)
    if present:
        cw.add_response("delete_alarms", {}, names)
        order.append("alarm")
    where = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
             "ScalableDimension": COPY_COUNT_DIMENSION}
    aas.add_response("describe_scaling_policies",
                     {"ScalingPolicies": [_policy(n) for n in POLICIES] if present else []},
                     where)
    if present:
        for name in POLICIES:
            aas.add_response("delete_scaling_policy", {}, {"PolicyName": name, **where})
    targets = [{"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
                "ScalableDimension": COPY_COUNT_DIMENSION, "MinCapacity": 0, "MaxCapacity": 4,
                "RoleARN": "arn:aws:iam::123456789012:role/x",
                "CreationTime": datetime.datetime(2026, 1, 1)}] if present else []
    aas.add_response("describe_scalable_targets", {"ScalableTargets": targets},
                     {"ServiceNamespace": "sagemaker", "ResourceIds": [RESOURCE],
                      "ScalableDimension": COPY_COUNT_DIMENSION})
    if present:
        aas.add_response("deregister_scalable_target", {}, where)
    ic = {"InferenceComponentName": IC}
    if present:
        sm.add_response("describe_inference_component", _described("Creating"), ic)
        sm.add_response("describe_inference_component", _described("InService", 1, 1), ic)
        sm.add_response("delete_inference_component", {}, ic)
        sm.add_response("describe_inference_component", _described("Deleting"), ic)
    sm.add_client_error("describe_inference_component", "ValidationException",
                        f"Could not find inference component {IC}", expected_params=ic)
    if present:
        sm.add_response("describe_endpoint", {
            "EndpointName": EP, "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x",
            "EndpointConfigName": EP, "EndpointStatus": "InService",
            "CreationTime": datetime.datetime(2026, 1, 1),
            "LastModifiedTime": datetime.datetime(2026, 1, 1)}, {"EndpointName": EP})
        sm.add_response("delete_endpoint", {}, {"EndpointName": EP})
        sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": EP})
        sm.add_response("delete_model", {}, {"ModelName": EP})
    else:
        sm.add_client_error("describe_endpoint", "ValidationException",
                            f'Could not find endpoint "{EP}".',
                            expected_params={"EndpointName": EP})
        sm.add_client_error("delete_endpoint_config", "ValidationException",
                            "Could not find endpoint configuration", expected_params={
                                "EndpointConfigName": EP})
        sm.add_client_error("delete_model", "ValidationException", "Could not find model",
                            expected_params={"ModelName": EP})


def _cleanup(present):
    sm, aas, cw = _client("sagemaker"), _client("application-autoscaling"), _client("cloudwatch")
    clock = FakeClock()
    with Stubber(sm) as s1, Stubber(aas) as s2, Stubber(cw) as s3:
        _stub_cleanup(s1, s2, s3, present=present)
        done = delete_scaling_resources(
            inference_component=IC, endpoint_name=EP, endpoint_config_name=EP, model_name=EP,
            alarm_names=[ALARM], policy_names=POLICIES, sagemaker_client=sm,
            autoscaling_client=aas, cloudwatch_client=cw, poll_s=10, clock=clock,
            sleep=clock.sleep)
        for stub in (s1, s2, s3):
            stub.assert_no_pending_responses()
    return done


def test_clean_up_deletes_in_order_waiting_for_the_component():
    assert _cleanup(present=True) == [
        f"alarm {ALARM}: deleted",
        f"scaling policy {POLICIES[0]}: deleted",
        f"scaling policy {POLICIES[1]}: deleted",
        f"scalable target {RESOURCE}: deregistered",
        f"inference component {IC}: deleted",
        f"endpoint {EP}: deleted",
        f"endpoint config {EP}: deleted",
        f"model {EP}: deleted",
    ]


def test_clean_up_twice_reports_everything_already_gone():
    assert _cleanup(present=False) == [
        f"alarm {ALARM}: already gone",
        f"scaling policy {POLICIES[0]}: already gone",
        f"scaling policy {POLICIES[1]}: already gone",
        f"scalable target {RESOURCE}: already gone",
        f"inference component {IC}: already gone",
        f"endpoint {EP}: already gone",
        f"endpoint config {EP}: already gone",
        f"model {EP}: already gone",
    ]


def test_a_component_that_stays_creating_is_reported_as_still_billing():
    sm = ScriptedSageMaker([("Creating", 0, 1, 1)])

    class NoScaling:
        def describe_alarms(self, **_):
            return {"MetricAlarms": []}

        def describe_scaling_policies(self, **_):
            return {"ScalingPolicies": []}

        def describe_scalable_targets(self, **_):
            return {"ScalableTargets": []}

    clock = FakeClock()
    with pytest.raises(DeploymentError, match=r"cannot be deleted.*keeps billing"):
        delete_scaling_resources(inference_component=IC, endpoint_name=EP,
                                 sagemaker_client=sm, autoscaling_client=NoScaling(),
                                 cloudwatch_client=NoScaling(), timeout_s=60, poll_s=10,
                                 clock=clock, sleep=clock.sleep)


def test_the_widget_view_draws_a_table_of_changes(monkeypatch):
    shown = []
    monkeypatch.setattr("common.display.show_widget", shown.append)
    sm = ScriptedSageMaker([("InService", 1, 1, 1), ("Updating", 1, 2, 1),
                            ("InService", 2, 2, 2)])
    clock = FakeClock()
    watch_scaling(IC, EP, until=lambda s: s.current_copies == 2, sagemaker_client=sm,
                  mode="widget", clock=clock, sleep=clock.sleep, title="scale <out>")
    (box,) = shown
    title, live, table = box.children
    assert "scale &lt;out&gt;" in title.value and "llama2-scaling" in box._dom_classes
    assert table.value.count("<tr>") == 4  # the header and three changes
    assert live.value.startswith("<code>done after 00:04")
