"""Inference components on the session's stand-in (time scale 120): API, routing, errors.

Everything goes the way a scale notebook's calls go: boto3 and sagemaker-core through
``HTTPS_PROXY`` to moto, ``invoke_endpoint[_with_response_stream]`` with
``InferenceComponentName`` to the runtime server. Names are unique per test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from polling import unique_name, wait_until

from common.gpu_drivers import inference_ami_version
from common.local.components import NO_CAPACITY_MESSAGE, copy_concurrency_from

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.36.0-lmi27.0.0-cu130"
BODY = json.dumps({"inputs": "[INST] Hello [/INST]", "parameters": {"max_new_tokens": 8}})


@pytest.fixture
def sagemaker(local_stack):
    return boto3.client("sagemaker")


@pytest.fixture
def runtime(local_stack):
    return boto3.client("sagemaker-runtime")


def _component_endpoint(sagemaker, local_stack, name: str, *, max_instances: int = 2) -> None:
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": TGI_IMAGE, "Environment": {
                               "HF_MODEL_ID": "meta-llama/Llama-2-7b-chat-hf"}})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name, ExecutionRoleArn=local_stack.role_arn,
        ProductionVariants=[{
            "VariantName": "AllTraffic", "InstanceType": "ml.g5.2xlarge",
            "InitialInstanceCount": 1,
            "InferenceAmiVersion": inference_ami_version(TGI_IMAGE, "ml.g5.2xlarge"),
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0,
                                       "MaxInstanceCount": max_instances},
            "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def _create_component(sagemaker, name: str, *, copies: int = 1, accelerators: float = 1) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName=name, EndpointName=name, VariantName="AllTraffic",
        Specification={"ModelName": name,
                       "StartupParameters": {"ModelDataDownloadTimeoutInSeconds": 600,
                                             "ContainerStartupHealthCheckTimeoutInSeconds": 600},
                       "ComputeResourceRequirements": {
                           "NumberOfAcceleratorDevicesRequired": accelerators,
                           "MinMemoryRequiredInMb": 1024}},
        RuntimeConfig={"CopyCount": copies})


def _describe(sagemaker, name: str) -> dict:
    return sagemaker.describe_inference_component(InferenceComponentName=name)


def _wait_for_status(sagemaker, name: str, status: str) -> None:
    wait_until(lambda: _describe(sagemaker, name)["InferenceComponentStatus"] == status,
               f"{name} to be {status}")


def _serving_component(sagemaker, local_stack, name: str) -> None:
    """An endpoint for components and a component of one copy, serving."""
    _component_endpoint(sagemaker, local_stack, name)
    _create_component(sagemaker, name)
    _wait_for_status(sagemaker, name, "InService")


def _error(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_the_endpoint_config_keeps_the_role_and_a_variant_without_a_model(local_stack,
                                                                           sagemaker):
    name = unique_name("ic-config")
    _component_endpoint(sagemaker, local_stack, name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert config["ExecutionRoleArn"] == local_stack.role_arn
    assert "ModelName" not in config["ProductionVariants"][0]
    variant = sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["ManagedInstanceScaling"] == {"Status": "ENABLED", "MinInstanceCount": 0,
                                                 "MaxInstanceCount": 2}
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    assert variant["CurrentInstanceCount"] == 1


def test_a_component_walks_creating_inservice_updating_deleting_gone(local_stack, sagemaker):
    name = unique_name("ic-life")
    _component_endpoint(sagemaker, local_stack, name)
    _create_component(sagemaker, name)
    first = _describe(sagemaker, name)
    assert first["InferenceComponentStatus"] == "Creating"
    assert first["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 0}
    assert first["Specification"]["ModelName"] == name
    _wait_for_status(sagemaker, name, "InService")
    assert _describe(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] == 1
    listed = sagemaker.list_inference_components(EndpointNameEquals=name)
    assert [c["InferenceComponentName"] for c in listed["InferenceComponents"]] == [name]

    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 2})
    assert _describe(sagemaker, name)["InferenceComponentStatus"] == "Updating"
    wait_until(lambda: _describe(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] == 2,
           "two copies (the second on a new instance)")
    assert sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0][
        "CurrentInstanceCount"] == 2

    sagemaker.delete_inference_component(InferenceComponentName=name)
    assert _describe(sagemaker, name)["InferenceComponentStatus"] == "Deleting"
    code, message = wait_until(lambda: _gone(sagemaker, name), "the component to go")
    assert code == "ValidationException"
    assert "Could not find inference component" in message


def _gone(sagemaker, name: str) -> tuple[str, str] | None:
    try:
        sagemaker.describe_inference_component(InferenceComponentName=name)
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["Error"]["Message"]
    return None


def test_copies_that_do_not_fit_stay_pending(local_stack, sagemaker):
    name = unique_name("ic-pending")
    _component_endpoint(sagemaker, local_stack, name, max_instances=1)
    _create_component(sagemaker, name, copies=3)  # one GPU per g5.2xlarge, one instance
    _wait_for_status(sagemaker, name, "InService")
    assert _describe(sagemaker, name)["RuntimeConfig"] == {"DesiredCopyCount": 3,
                                                           "CurrentCopyCount": 1}


def test_a_copy_larger_than_an_instance_fails_with_a_reason(local_stack, sagemaker):
    name = unique_name("ic-toobig")
    _component_endpoint(sagemaker, local_stack, name)
    _create_component(sagemaker, name, accelerators=4)
    described = _describe(sagemaker, name)
    assert described["InferenceComponentStatus"] == "Failed"
    assert "needs 4 accelerator devices" in described["FailureReason"]


def test_a_component_needs_an_endpoint_without_a_model(local_stack, sagemaker):
    name = unique_name("ic-plain")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": TGI_IMAGE})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g5.2xlarge",
            "InitialInstanceCount": 1,
            "InferenceAmiVersion": inference_ami_version(TGI_IMAGE, "ml.g5.2xlarge")}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    code, message = _error(lambda: _create_component(sagemaker, name))
    assert (code, message) == ("ValidationException",
                               "Inference Components are not supported in this Endpoint.")
    code, message = _error(lambda: boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, InferenceComponentName="anything", Body=BODY,
        ContentType="application/json"))
    assert code == "ValidationError"
    assert message.startswith("Inference Component Name header is not allowed")


def test_routing_errors_and_no_capacity(local_stack, sagemaker, runtime, request_log):
    name = unique_name("ic-route")
    _component_endpoint(sagemaker, local_stack, name)
    _create_component(sagemaker, name)
    code, message = _error(lambda: runtime.invoke_endpoint(
        EndpointName=name, InferenceComponentName=name, Body=BODY,
        ContentType="application/json"))
    assert (code, message) == ("ValidationError", NO_CAPACITY_MESSAGE)  # still starting
    _wait_for_status(sagemaker, name, "InService")
    code, message = _error(lambda: runtime.invoke_endpoint(
        EndpointName=name, Body=BODY, ContentType="application/json"))
    assert code == "ValidationError"
    assert message.startswith("Inference Component Name header is required")
    code, message = _error(lambda: runtime.invoke_endpoint(
        EndpointName=name, InferenceComponentName="nope", Body=BODY,
        ContentType="application/json"))
    assert message == f"Inference Component nope not found for endpoint {name}."

    stream = runtime.invoke_endpoint_with_response_stream(
        EndpointName=name, InferenceComponentName=name, Body=json.dumps(
            {"inputs": "[INST] Hello [/INST]", "parameters": {"max_new_tokens": 8},
             "stream": True}), ContentType="application/json")
    text = b"".join(e["PayloadPart"]["Bytes"] for e in stream["Body"] if "PayloadPart" in e)
    assert text.count(b"data:") == 8
    log = request_log()
    assert log[-1]["inference_component"] == name and log[-1]["status"] == 200
    assert log[-1]["container"] == "tgi"

    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 0})
    code, message = _error(lambda: runtime.invoke_endpoint(
        EndpointName=name, InferenceComponentName=name, Body=BODY,
        ContentType="application/json"))
    assert (code, message) == ("ValidationError", NO_CAPACITY_MESSAGE)
    cloudwatch = boto3.client("cloudwatch")
    clock = local_stack.clock

    def failures() -> float:
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[{"Id": "f", "MetricStat": {"Metric": {
                "Namespace": "AWS/SageMaker", "MetricName": "NoCapacityInvocationFailures",
                "Dimensions": [{"Name": "InferenceComponentName", "Value": name}]},
                "Period": 60, "Stat": "Sum"}}],
            StartTime=clock.wall(0), EndTime=clock.wall() + timedelta(hours=1))
        return sum(result["MetricDataResults"][0]["Values"])

    assert wait_until(lambda: failures() >= 2, "two NoCapacityInvocationFailures datapoints")


def test_a_copy_serves_a_bounded_number_of_streams_and_queues_the_rest(local_stack, sagemaker,
                                                                       runtime, request_log):
    name = unique_name("ic-queue")
    _serving_component(sagemaker, local_stack, name)
    manager = local_stack.scaling.manager
    component = manager.component(local_stack.control_plane.account_id, local_stack.region,
                                  name)
    peak = {"active": 0, "queued": 0}
    stop = False

    def watch() -> None:
        while not stop:
            with manager.lock:
                peak["active"] = max(peak["active"], sum(c.active for c in component.copies))
                peak["queued"] = max(peak["queued"], len(component.waiting))
            time.sleep(0.002)

    def one(_: int) -> bytes:
        answer = runtime.invoke_endpoint(EndpointName=name, InferenceComponentName=name,
                                         Body=BODY, ContentType="application/json")
        return answer["Body"].read()

    with ThreadPoolExecutor(9) as pool:
        watcher = pool.submit(watch)
        answers = list(pool.map(one, range(8)))
        stop = True
        watcher.result()
    assert all(json.loads(a)[0]["generated_text"] for a in answers)
    assert peak["active"] == local_stack.copy_concurrency == 4
    assert peak["queued"] >= 1


@pytest.mark.parametrize(("environment", "image", "properties", "expected"), [
    ({"MAX_BATCH_TOTAL_TOKENS": "16384", "MAX_TOTAL_TOKENS": "4096"}, TGI_IMAGE, None, 4),
    ({"MAX_TOTAL_TOKENS": "4096"}, TGI_IMAGE, None, 8),
    ({"OPTION_MAX_ROLLING_BATCH_SIZE": "16"}, LMI_IMAGE, None, 16),
    ({}, LMI_IMAGE, {"option.max_rolling_batch_size": "32"}, 32),
    ({}, LMI_IMAGE, None, 256),
])
def test_copy_concurrency_follows_the_container_settings(environment, image, properties,
                                                         expected):
    assert copy_concurrency_from(environment, image, properties) == expected


def test_sagemaker_core_creates_waits_for_and_deletes_a_component(local_stack, sagemaker):
    from sagemaker.core.resources import InferenceComponent
    from sagemaker.core.shapes import (
        InferenceComponentComputeResourceRequirements,
        InferenceComponentRuntimeConfig,
        InferenceComponentSpecification,
    )

    name = unique_name("ic-core")
    _component_endpoint(sagemaker, local_stack, name)
    component = InferenceComponent.create(
        inference_component_name=name, endpoint_name=name, variant_name="AllTraffic",
        specification=InferenceComponentSpecification(
            model_name=name,
            compute_resource_requirements=InferenceComponentComputeResourceRequirements(
                number_of_accelerator_devices_required=1, min_memory_required_in_mb=1024)),
        runtime_config=InferenceComponentRuntimeConfig(copy_count=1))
    component.wait_for_status(target_status="InService", poll=1, timeout=30)
    component.refresh()
    assert component.runtime_config.current_copy_count == 1
    assert InferenceComponent.get(name).inference_component_status == "InService"
    component.delete()
    component.wait_for_delete(poll=1, timeout=30)


def test_a_component_can_be_made_to_fail_and_cannot_be_deleted_while_creating(
        local_stack, sagemaker):
    name = unique_name("ic-fail")
    _component_endpoint(sagemaker, local_stack, name)
    local_stack.fail_component(name)
    try:
        _create_component(sagemaker, name)
        code, message = _error(lambda: sagemaker.delete_inference_component(
            InferenceComponentName=name))
        assert code == "ValidationException" and "while it is Creating" in message
        _wait_for_status(sagemaker, name, "Failed")
    finally:
        local_stack.clear_faults()
    assert "did not pass the ping health check" in _describe(sagemaker, name)["FailureReason"]
    sagemaker.delete_inference_component(InferenceComponentName=name)  # Failed: deletable


def test_a_new_specification_takes_effect_after_a_copy_start_up(local_stack, sagemaker,
                                                                 runtime, request_log):
    name = unique_name("ic-spec")
    _serving_component(sagemaker, local_stack, name)
    sagemaker.update_inference_component(
        InferenceComponentName=name,
        Specification={"Container": {"Image": LMI_IMAGE, "Environment": {
                           "OPTION_MAX_ROLLING_BATCH_SIZE": "2"}},
                       "ComputeResourceRequirements": {
                           "NumberOfAcceleratorDevicesRequired": 1,
                           "MinMemoryRequiredInMb": 1024}})
    assert _describe(sagemaker, name)["InferenceComponentStatus"] == "Updating"
    _wait_for_status(sagemaker, name, "InService")
    spec = _describe(sagemaker, name)["Specification"]
    assert spec["Container"]["DeployedImage"]["SpecifiedImage"] == LMI_IMAGE
    runtime.invoke_endpoint(EndpointName=name, InferenceComponentName=name,
                            Body=json.dumps({"inputs": "Hello", "parameters": {
                                "max_new_tokens": 4}}), ContentType="application/json")
    assert request_log()[-1]["container"] == "lmi"


def test_the_cli_takes_the_scaling_flags():
    from common.local.__main__ import build_parser

    args = build_parser().parse_args(["--time-scale", "120", "--copy-concurrency", "4",
                                      "--copy-ttft", "0.05", "--copy-tokens-per-second", "1000"])
    assert (args.time_scale, args.copy_concurrency, args.copy_ttft_s,
            args.copy_tokens_per_s) == (120.0, 4, 0.05, 1000.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--time-scale", "0"])
