"""The rules real SageMaker applies that its service model does not state (issue 18).

For each rule: plain boto3 against the session's stand-in shows the refusal with SageMaker's
text (where AWS documents one), and the helper the recipes use meets the rule. The rules table
in DESIGN.md ("As strict as AWS (issue 18)") names these tests.
"""

from __future__ import annotations

import contextlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from polling import WAIT_S, unique_name, wait_until

from common.endpoints import build_payload, validate_payload
from common.errors import PayloadError, PresetError
from common.gpu_drivers import (
    AMI_VERSIONS,
    FAMILY_DEFAULTS,
    host_stack,
    image_cuda_version,
    inference_ami_version,
)
from common.local.components_api import (
    MANAGED_SCALING_NEEDS_COMPONENTS,
    ROLE_REQUIRED_MESSAGE,
)
from common.local.quotas import APPLIED_VALUE, endpoint_quota_name, quota_code
from common.local.runtime import INVOKE_TIMEOUT_MESSAGE
from common.presets import PRESETS, get_preset, image_uri

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.36.0-lmi27.0.0-cu130"
GPU_4_1 = "al2023-ami-sagemaker-inference-gpu-4-1"
HEALTH_CHECK_S = 300  # simulated: 2.5 real seconds on the session stand-in (time scale 120)


@pytest.fixture
def sagemaker(local_stack):
    return boto3.client("sagemaker")


def _error(call) -> tuple[str, str, dict]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], error["Message"], caught.value.response


def _model(sagemaker, local_stack, name: str, image: str, environment=None) -> None:
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": image, "Environment": environment or {}})


def _plain_endpoint(sagemaker, local_stack, name: str, image: str, *, ami: bool = True) -> None:
    """A model, a one-instance ml.g5.2xlarge configuration (with the host AMI the recipes set,
    unless ``ami`` is false) and an endpoint, created -- not waited for."""
    _model(sagemaker, local_stack, name, image, {"HF_MODEL_ID": "meta-llama/Llama-2-7b-chat-hf"})
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g5.2xlarge",
               "InitialInstanceCount": 1,
               "ContainerStartupHealthCheckTimeoutInSeconds": HEALTH_CHECK_S}
    if ami:
        variant["InferenceAmiVersion"] = inference_ami_version(image, "ml.g5.2xlarge")
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def _status(sagemaker, name: str) -> dict:
    return sagemaker.describe_endpoint(EndpointName=name)


def _wait_status(sagemaker, name: str, *wanted: str) -> dict:
    return wait_until(lambda: (d := _status(sagemaker, name))["EndpointStatus"] in wanted and d,
                      f"{name} to be {' or '.join(wanted)}", timeout_s=WAIT_S)


def _delete(sagemaker, name: str) -> None:
    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint(EndpointName=name)


# --------------------------------------------------------------------------- drivers


def test_an_image_names_its_cuda_version_in_its_tag():
    assert image_cuda_version(TGI_IMAGE) == (12, 4)
    assert image_cuda_version(LMI_IMAGE) == (13, 0)
    assert image_cuda_version("123.dkr.ecr.us-east-1.amazonaws.com/my-model:latest") is None


def test_the_driver_tables_are_the_documented_ones():
    # botocore's ProductionVariantInferenceAmiVersion documentation.
    assert {name: (s.driver, s.cuda) for name, s in AMI_VERSIONS.items()} == {
        "al2-ami-sagemaker-inference-gpu-2": (535, (12, 2)),
        "al2-ami-sagemaker-inference-gpu-2-1": (535, (12, 2)),
        "al2-ami-sagemaker-inference-gpu-3-1": (550, (12, 4)),
        GPU_4_1: (580, (13, 0)),
    }
    # AWS's inference-gpu-drivers page, real-time inference.
    assert (FAMILY_DEFAULTS["g5"].driver, FAMILY_DEFAULTS["g5"].cuda) == (470, (11, 4))
    assert (FAMILY_DEFAULTS["g6"].driver, FAMILY_DEFAULTS["p5"].cuda) == (535, (12, 2))
    assert FAMILY_DEFAULTS["p5e"].cuda == (12, 4)
    # The botocore enum lists exactly these GPU AMIs (and the Neuron one).
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    enum = set(model.shape_for("ProductionVariantInferenceAmiVersion").enum)
    assert enum == {*AMI_VERSIONS, "al2-ami-sagemaker-inference-neuron-2"}


def test_inference_ami_version_picks_a_driver_that_runs_the_image_natively():
    assert inference_ami_version(LMI_IMAGE, "ml.g5.2xlarge") == GPU_4_1
    gpu_3_1 = "al2-ami-sagemaker-inference-gpu-3-1"
    assert inference_ami_version(TGI_IMAGE, "ml.g5.2xlarge") == gpu_3_1
    # Pinned even where the default would do, so an AWS driver upgrade changes nothing.
    assert inference_ami_version(TGI_IMAGE, "ml.p5e.48xlarge") == gpu_3_1
    assert inference_ami_version(LMI_IMAGE, "ml.inf2.xlarge") is None  # no NVIDIA GPU
    assert inference_ami_version("my-model:latest", "ml.g5.2xlarge") is None  # no CUDA tag
    with pytest.raises(PresetError, match=r"CUDA 13\.1, newer than any"):
        inference_ami_version("x/y:1.0-cu131", "ml.g5.2xlarge")
    # A GPU AMI on Inferentia is refused before anything is created.
    with pytest.raises(PresetError, match="GPU host image"):
        host_stack("ml.inf2.xlarge", GPU_4_1)


def test_every_preset_gets_an_ami_that_runs_its_image():
    for preset in PRESETS.values():
        image = image_uri(preset, "us-east-1")
        ami = preset.inference_ami_version()
        host = host_stack(preset.instance_type, ami)
        assert ami is not None and host.runs(image_cuda_version(image)), preset
        assert not host.cuda_compat_mounted  # no forward compatibility anywhere


def test_lmi_on_g5_without_an_ami_goes_failed_naming_the_driver(sagemaker, local_stack):
    name = unique_name("drv-lmi")
    _plain_endpoint(sagemaker, local_stack, name, LMI_IMAGE, ami=False)
    try:
        failed = _wait_status(sagemaker, name, "Failed", "InService")
        assert failed["EndpointStatus"] == "Failed"
        reason = failed["FailureReason"]
        assert reason.startswith("CannotStartContainerError. Please ensure the model container "
                                 "for variant AllTraffic starts correctly")
        assert "NVIDIA driver 470" in reason and "CUDA 13.0" in reason
        assert f"InferenceAmiVersion to '{GPU_4_1}'" in reason
    finally:
        _delete(sagemaker, name)


def test_lmi_on_g5_with_the_chosen_ami_serves(sagemaker, local_stack):
    name = unique_name("drv-ok")
    _plain_endpoint(sagemaker, local_stack, name, LMI_IMAGE)
    try:
        assert _wait_status(sagemaker, name, "Failed", "InService")["EndpointStatus"] == (
            "InService")
    finally:
        _delete(sagemaker, name)


@pytest.mark.parametrize(("ami", "instance_type", "expected"), [
    ("al2-ami-sagemaker-inference-gpu-9", "ml.g5.2xlarge",
     "1 validation error detected: Value 'al2-ami-sagemaker-inference-gpu-9' at "
     "'productionVariants.1.member.inferenceAmiVersion' failed to satisfy constraint: Member "
     "must satisfy enum value set"),
    (GPU_4_1, "ml.inf2.xlarge", f"InferenceAmiVersion {GPU_4_1} is not supported for instance "
                                "type ml.inf2.xlarge"),
])
def test_an_ami_the_host_cannot_run_is_refused(sagemaker, local_stack, ami, instance_type,
                                               expected):
    name = unique_name("drv-bad")
    code, message, _ = _error(lambda: sagemaker.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type,
            "InitialInstanceCount": 1, "InferenceAmiVersion": ami}]))
    assert code == "ValidationException" and message.startswith(expected)


# --------------------------------------------------------------------------- control plane


def _component_config(sagemaker, local_stack, name: str, instance_type: str = "ml.g5.2xlarge",
                      *, image: str = TGI_IMAGE, role: bool = True, maximum: int = 2,
                      ami: bool = True) -> dict:
    variant = {"VariantName": "AllTraffic", "InstanceType": instance_type,
               "InitialInstanceCount": 1,
               "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0,
                                          "MaxInstanceCount": maximum}}
    if ami:
        variant["InferenceAmiVersion"] = inference_ami_version(image, instance_type)
    extra = {"ExecutionRoleArn": local_stack.role_arn} if role else {}
    return dict(EndpointConfigName=name, ProductionVariants=[variant], **extra)


def _component_endpoint(sagemaker, local_stack, name: str, instance_type: str = "ml.g5.2xlarge",
                        *, image: str = TGI_IMAGE, maximum: int = 2, ami: bool = True) -> None:
    _model(sagemaker, local_stack, name, image, {"HF_MODEL_ID": "meta-llama/Llama-2-7b-chat-hf"})
    sagemaker.create_endpoint_config(**_component_config(
        sagemaker, local_stack, name, instance_type, image=image, maximum=maximum, ami=ami))
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    _wait_status(sagemaker, name, "InService")


def _component(sagemaker, name: str, *, memory_mb: int = 1024, copies: int = 1) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName=name, EndpointName=name, VariantName="AllTraffic",
        Specification={"ModelName": name,
                       "StartupParameters": {
                           "ContainerStartupHealthCheckTimeoutInSeconds": HEALTH_CHECK_S},
                       "ComputeResourceRequirements": {"NumberOfAcceleratorDevicesRequired": 1,
                                                       "MinMemoryRequiredInMb": memory_mb}},
        RuntimeConfig={"CopyCount": copies})


def _component_status(sagemaker, name: str, *wanted: str) -> dict:
    return wait_until(
        lambda: (d := sagemaker.describe_inference_component(InferenceComponentName=name))[
            "InferenceComponentStatus"] in wanted and d, f"{name} to be {wanted}")


def _delete_component_endpoint(sagemaker, name: str) -> None:
    with contextlib.suppress(ClientError):
        sagemaker.delete_inference_component(InferenceComponentName=name)
    wait_until(lambda: name not in [c["InferenceComponentName"] for c in
                                    sagemaker.list_inference_components(
                                        EndpointNameEquals=name)["InferenceComponents"]],
               f"{name} to be gone")
    _delete(sagemaker, name)


def test_managed_instance_scaling_on_a_variant_with_a_model_is_refused(sagemaker, local_stack):
    name = unique_name("cp-mis")
    code, message, _ = _error(lambda: sagemaker.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g5.2xlarge",
            "InitialInstanceCount": 1,
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1,
                                       "MaxInstanceCount": 2}}]))
    assert (code, message) == ("ValidationException", MANAGED_SCALING_NEEDS_COMPONENTS)
    assert message == "ManagedInstanceScaling is only supported for inference component endpoints."


def test_an_endpoint_config_for_components_needs_the_execution_role(sagemaker, local_stack):
    name = unique_name("cp-role")
    code, message, _ = _error(lambda: sagemaker.create_endpoint_config(
        **_component_config(sagemaker, local_stack, name, role=False)))
    assert (code, message) == ("ValidationException", ROLE_REQUIRED_MESSAGE)


def test_delete_endpoint_is_refused_while_components_exist(sagemaker, local_stack):
    name = unique_name("cp-del")
    _component_endpoint(sagemaker, local_stack, name)
    _component(sagemaker, name)
    try:
        code, message, _ = _error(lambda: sagemaker.delete_endpoint(EndpointName=name))
        assert code == "ValidationException"
        assert "while it hosts inference components" in message and name in message
        assert _status(sagemaker, name)["EndpointStatus"] == "InService"
    finally:
        _component_status(sagemaker, name, "InService", "Failed")
        _delete_component_endpoint(sagemaker, name)
    wait_until(lambda: name not in [e["EndpointName"] for e in
                                    sagemaker.list_endpoints()["Endpoints"]], "endpoint gone")


def test_a_component_whose_image_the_host_driver_cannot_run_goes_failed(sagemaker, local_stack):
    name = unique_name("ic-drv")
    _component_endpoint(sagemaker, local_stack, name, image=LMI_IMAGE, ami=False)
    _component(sagemaker, name)
    try:
        failed = _component_status(sagemaker, name, "Failed", "InService")
        assert failed["InferenceComponentStatus"] == "Failed"
        assert failed["FailureReason"].startswith(
            f"CannotStartContainerError. Please ensure the model container for inference "
            f"component {name} starts correctly")
        assert "NVIDIA driver 470" in failed["FailureReason"]
    finally:
        _delete_component_endpoint(sagemaker, name)


# --------------------------------------------------------------------------- capacity


def test_a_copy_larger_than_the_schedulable_memory_is_refused(sagemaker, local_stack):
    name = unique_name("ic-mem")
    _component_endpoint(sagemaker, local_stack, name)
    # ml.g5.2xlarge: 32 GiB of host memory, of which copies may reserve 4,096 MB.
    _component(sagemaker, name, memory_mb=16 * 1024)
    try:
        failed = _component_status(sagemaker, name, "Failed", "InService")
        assert failed["InferenceComponentStatus"] == "Failed"
        assert failed["FailureReason"].startswith(
            "There is not enough hardware resources on the instances for this endpoint to "
            "create a copy of the inference component.")
        assert "16,384 MB" in failed["FailureReason"]
    finally:
        _delete_component_endpoint(sagemaker, name)


def test_copies_are_placed_by_memory_as_well_as_accelerators(local_stack):
    manager = local_stack.scaling.manager
    from common.local.components import memory_pool_mb

    assert memory_pool_mb("ml.g5.xlarge") == 2048  # 1,024 MB accepted, 4,096 refused there
    assert memory_pool_mb("ml.g5.48xlarge") < 768 * 1024
    assert manager is not None


@contextlib.contextmanager
def _quota(local_stack, instance_type: str, value):
    local_stack.quotas.set(instance_type, value)
    try:
        yield
    finally:
        local_stack.quotas.set(instance_type, APPLIED_VALUE)


def test_managed_scaling_stops_at_the_quota_and_says_so(sagemaker, local_stack):
    name = unique_name("ic-quota")
    instance_type = "ml.g5.4xlarge"  # no other test runs this type
    autoscaling = boto3.client("application-autoscaling")
    with _quota(local_stack, instance_type, 1):
        _component_endpoint(sagemaker, local_stack, name, instance_type, maximum=3)
        _component(sagemaker, name)
        resource = f"inference-component/{name}"
        dimension = "sagemaker:inference-component:DesiredCopyCount"
        try:
            _component_status(sagemaker, name, "InService")
            # MinCapacity 2 makes Application Auto Scaling ask for a second copy, which needs a
            # second instance, which the quota of 1 refuses.
            autoscaling.register_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension,
                MinCapacity=2, MaxCapacity=2)
            activities = wait_until(lambda: [
                a for page in autoscaling.get_paginator("describe_scaling_activities").paginate(
                    ServiceNamespace="sagemaker", ResourceId=resource)
                for a in page["ScalingActivities"] if a["StatusCode"] == "Failed"],
                "a failed scaling activity")
            message = activities[0]["StatusMessage"]
            assert message.startswith("Failed to set desired copy count to 2")
            assert (f"The account-level service limit '{endpoint_quota_name(instance_type)}' "
                    "is 1 Instances, with current utilization of 1 Instances and a request "
                    "delta of 1 Instances.") in message
            variant = _status(sagemaker, name)["ProductionVariants"][0]
            assert variant["CurrentInstanceCount"] == 1
            assert "account-level service limit" in variant["VariantStatus"][0]["StatusMessage"]
            # The watch the scale notebook runs shows it.
            from common.scaling import read_scaling_state

            state = read_scaling_state(name, name, sagemaker_client=sagemaker)
            assert state.blocked and "account-level service limit" in state.line()
        finally:
            autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension)
            _delete_component_endpoint(sagemaker, name)


# --------------------------------------------------------------------------- runtime


def test_invoke_endpoint_ends_at_the_time_limit_with_sagemakers_error(sagemaker, local_stack):
    name = unique_name("rt-60s")
    _plain_endpoint(sagemaker, local_stack, name, TGI_IMAGE)
    _wait_status(sagemaker, name, "InService")
    runtime = local_stack.runtime
    saved, runtime.invoke_timeout_s = runtime.invoke_timeout_s, 0.5  # 60 s on SageMaker
    try:
        assert saved == 60.0
        body = json.dumps(build_payload("[INST] Hi [/INST]", container="tgi", stream=False,
                                        max_new_tokens=4))
        code, message, response = _error(lambda: boto3.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=name, Body=body, ContentType="application/json",
            CustomAttributes="local-fault=slow-first-token:3"))
        assert code == "ModelError" and response["OriginalStatusCode"] == 0
        assert message.startswith(f'Received server error (0) from primary with message '
                                  f'"{INVOKE_TIMEOUT_MESSAGE}"')
        assert INVOKE_TIMEOUT_MESSAGE.startswith(
            "Your invocation timed out while waiting for a response from container primary.")
    finally:
        runtime.invoke_timeout_s = saved
        _delete(sagemaker, name)


def test_top_n_tokens_is_refused_for_lmi(sagemaker, local_stack):
    payload = build_payload("[INST] Hi [/INST]", container="lmi", max_new_tokens=8)
    payload["parameters"]["top_n_tokens"] = 2
    with pytest.raises(PayloadError, match="passes it to vLLM as n"):
        validate_payload(payload, get_preset("7b", "lmi"), streaming=True)
    validate_payload({**payload, "parameters": {**payload["parameters"]}},
                     get_preset("7b", "tgi"), streaming=True)  # TGI's own setting: fine
    # The stand-in's LMI container refuses it too (a recipe that sends it fails in tests).
    name = unique_name("rt-topn")
    _plain_endpoint(sagemaker, local_stack, name, LMI_IMAGE)
    try:
        _wait_status(sagemaker, name, "InService")
        code, message, response = _error(
            lambda: boto3.client("sagemaker-runtime").invoke_endpoint_with_response_stream(
                EndpointName=name, Body=json.dumps(payload), ContentType="application/json"))
        assert code == "ModelError" and response["OriginalStatusCode"] == 400
        assert "top_n_tokens becomes vLLM's n" in message
    finally:
        _delete(sagemaker, name)


# --------------------------------------------------------------------------- quotas and IAM


def test_list_service_quotas_leaves_out_a_quota_without_an_applied_value(local_stack):
    client = local_stack.client("service-quotas")
    name = endpoint_quota_name("ml.g6e.xlarge")
    with _quota(local_stack, "ml.g6e.xlarge", None):
        listed = [q["QuotaName"] for page in client.get_paginator("list_service_quotas")
                  .paginate(ServiceCode="sagemaker") for q in page["Quotas"]]
        assert name not in listed
        with pytest.raises(client.exceptions.NoSuchResourceException):
            client.get_service_quota(ServiceCode="sagemaker", QuotaCode=quota_code(name))
        defaults = {q["QuotaName"]: q["Value"] for q in client.list_aws_default_service_quotas(
            ServiceCode="sagemaker")["Quotas"]}
        assert defaults[name] == 0
    assert name in [q["QuotaName"] for q in client.list_service_quotas(
        ServiceCode="sagemaker")["Quotas"]]


def _role(local_stack, statements: list[dict], *, boundary: list[dict] | None = None) -> str:
    iam = local_stack.client("iam")
    name = unique_name("sim")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    extra = {}
    if boundary is not None:
        policy = iam.create_policy(PolicyName=f"{name}-boundary", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": boundary}))
        extra["PermissionsBoundary"] = policy["Policy"]["Arn"]
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                          **extra)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    return arn


def _decisions(local_stack, arn: str, actions: list[str], resource: str, **extra) -> list[str]:
    answer = local_stack.client("iam").simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=actions, ResourceArns=[resource], **extra)
    return [r["EvalDecision"] for r in answer["EvaluationResults"]]


def test_simulate_principal_policy_evaluates_not_action_not_resource_and_denies(local_stack):
    arn = _role(local_stack, [
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::mine/*"},
    ])
    assert _decisions(local_stack, arn, ["s3:GetObject", "s3:PutObject", "iam:GetRole"],
                      "arn:aws:s3:::other/k") == ["allowed", "explicitDeny", "implicitDeny"]
    assert _decisions(local_stack, arn, ["S3:PutObject"], "arn:aws:s3:::mine/k") == ["allowed"]


def test_simulate_principal_policy_evaluates_conditions_and_the_boundary(local_stack):
    arn = _role(local_stack, [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                               "Condition": {"StringEquals": {"aws:RequestedRegion":
                                                              "us-east-1"}}}],
                boundary=[{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    answer = local_stack.client("iam").simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["s3:GetObject"], ResourceArns=["arn:aws:s3:::b/k"])
    (result,) = answer["EvaluationResults"]
    assert result["EvalDecision"] == "implicitDeny"
    assert result["MissingContextValues"] == ["aws:RequestedRegion"]
    context = [{"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": ["us-east-1"],
                "ContextKeyType": "string"}]
    assert _decisions(local_stack, arn, ["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::b/k",
                      ContextEntries=context) == ["allowed", "implicitDeny"]
    answer = local_stack.client("iam").simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["s3:PutObject"], ResourceArns=["arn:aws:s3:::b/k"],
        ContextEntries=context)
    assert answer["EvaluationResults"][0]["PermissionsBoundaryDecisionDetail"] == {
        "AllowedByPermissionsBoundary": False}
