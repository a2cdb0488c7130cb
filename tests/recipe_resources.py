"""Create what a recipe run creates, tagged as the notebooks tag it, straight with boto3.

For the tests of ``common.recipe_state`` and ``common.cleanup`` against the stand-in: each
helper makes one kind of run (a deploy, a scale run, S3 uploads) in a few calls, with the
recipe's tags (:mod:`common.tags`), without running a notebook. :func:`deploy_endpoint` makes
a plain, untagged 7B TGI endpoint for the tests that stream from one.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from polling import WAIT_S, wait_until

from common.gpu_drivers import inference_ami_version
from common.scaling import COPY_COUNT_DIMENSION, inference_component_resource_id
from common.tags import RecipeTags, recipe_tags
from common.weights import run_prefix, weights_prefix

__all__ = ["HOST_AMI", "MODEL_ID", "TGI_IMAGE", "DeployRun", "ScaleRun", "deploy_endpoint",
           "deploy_run", "new_tags", "scale_run", "slow_endpoints", "upload_run_files",
           "upload_weights", "wait_status"]

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
MODEL_ID = "meta-llama/Llama-2-7b-chat-hf"
HOST_AMI = inference_ami_version(TGI_IMAGE, "ml.g5.2xlarge")
"""The host image the recipes pin for this image on ml.g5 (the stand-in fails an endpoint on
the family's default driver, as SageMaker does)."""


def new_tags(recipe: str, *, run: str | None = None, container: str = "tgi") -> RecipeTags:
    """Tags of a new run of ``recipe`` with a unique run id."""
    if run is None:
        run = time.strftime("%Y%m%d-") + f"{uuid.uuid4().int % 1_000_000:06d}"
    return recipe_tags(recipe, run, model_id=MODEL_ID, container=container)


def wait_status(sm: Any, name: str, wanted: set[str], timeout_s: float = WAIT_S) -> str:
    """Poll DescribeEndpoint until the endpoint's status is one of ``wanted``; return it.

    Raises:
        AssertionError: naming the endpoint and ``wanted``, when ``timeout_s`` passes first.
    """
    def status() -> str | None:
        found = sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
        return found if found in wanted else None

    return wait_until(status, f"endpoint {name} to be {' or '.join(sorted(wanted))}",
                      timeout_s)


@contextmanager
def slow_endpoints(stack: Any, real_s: float) -> Iterator[None]:
    """In the block, endpoints created in ``stack`` (a running ``LocalStack``) take ``real_s``
    real seconds to come up (an endpoint keeps the delay it was created with); the stack's
    own delay is put back after."""
    plane = stack.control_plane
    delay, plane.endpoint_delay_s = plane.endpoint_delay_s, real_s * stack.time_scale
    try:
        yield
    finally:
        plane.endpoint_delay_s = delay


@dataclass
class DeployRun:
    tags: RecipeTags
    name: str


def deploy_run(sm: Any, role: str, tags: RecipeTags, *, stop_after: str = "endpoint",
               wait: bool = True) -> DeployRun:
    """Model, endpoint config and endpoint named ``<recipe>-<run>``, tagged.

    ``stop_after``: ``"model"`` or ``"config"`` for a run that stopped halfway.
    """
    name = f"{tags.recipe}-{tags.run}"
    sm.create_model(ModelName=name, ExecutionRoleArn=role,
                    PrimaryContainer={"Image": TGI_IMAGE,
                                      "Environment": {"HF_MODEL_ID": MODEL_ID}},
                    Tags=tags.aws())
    if stop_after == "model":
        return DeployRun(tags, name)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.g5.2xlarge", "InferenceAmiVersion": HOST_AMI}], Tags=tags.aws())
    if stop_after == "config":
        return DeployRun(tags, name)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags.aws())
    if wait:
        wait_status(sm, name, {"InService", "Failed"})
    return DeployRun(tags, name)


def deploy_endpoint(prefix: str) -> tuple[Any, str]:
    """Create a model, config and endpoint named ``<prefix>-<8 hex digits>`` in the stand-in
    whose variables are in ``os.environ`` (the 7B TGI preset's container environment and
    instance; no tags); wait until InService.

    Returns:
        The boto3 SageMaker client used, and the endpoint's name (also its config's and
        model's).

    Raises:
        common.errors.DeploymentError: the endpoint failed or did not come up within 60 s.
    """
    import boto3

    from common.endpoints import wait_for_endpoint
    from common.presets import get_preset

    preset = get_preset("7b", "tgi")
    sm = boto3.client("sagemaker")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sm.create_model(ModelName=name, ExecutionRoleArn=os.environ["SAGEMAKER_EXECUTION_ROLE_ARN"],
                    PrimaryContainer={"Image": TGI_IMAGE,
                                      "Environment": preset.tgi_environment()})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": preset.instance_type,
        "InferenceAmiVersion": inference_ami_version(TGI_IMAGE, preset.instance_type)}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_for_endpoint(name, sagemaker_client=sm, poll_s=0.1, timeout_s=60, progress=False)
    return sm, name


@dataclass
class ScaleRun:
    tags: RecipeTags
    endpoint: str
    component: str
    resource_id: str
    alarm: str
    policies: tuple[str, str]


def scale_run(clients: dict[str, Any], role: str, tags: RecipeTags) -> ScaleRun:
    """An inference-component endpoint with a component, a scalable target, two policies and
    the scale-from-zero alarm, named and tagged as the scale notebooks do."""
    sm, aas, cw = clients["sagemaker"], clients["application-autoscaling"], clients["cloudwatch"]
    name = f"{tags.recipe}-{tags.run}"
    component = f"{name}-ic"
    sm.create_model(ModelName=name, ExecutionRoleArn=role,
                    PrimaryContainer={"Image": TGI_IMAGE}, Tags=tags.aws())
    sm.create_endpoint_config(
        EndpointConfigName=name, ExecutionRoleArn=role, Tags=tags.aws(),
        ProductionVariants=[{
            "VariantName": "AllTraffic", "InstanceType": "ml.g5.2xlarge",
            "InitialInstanceCount": 1, "InferenceAmiVersion": HOST_AMI,
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0,
                                       "MaxInstanceCount": 2},
            "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags.aws())
    wait_status(sm, name, {"InService"})
    sm.create_inference_component(
        InferenceComponentName=component, EndpointName=name, VariantName="AllTraffic",
        Specification={"ModelName": name, "ComputeResourceRequirements": {
            "NumberOfAcceleratorDevicesRequired": 1, "MinMemoryRequiredInMb": 1024}},
        RuntimeConfig={"CopyCount": 1}, Tags=tags.aws())
    resource_id = inference_component_resource_id(component)
    aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                 ScalableDimension=COPY_COUNT_DIMENSION, MinCapacity=0,
                                 MaxCapacity=2)
    policies = (f"{component}-target-tracking", f"{component}-scale-out-from-zero")
    aas.put_scaling_policy(
        PolicyName=policies[0], ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=COPY_COUNT_DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 4.0, "PredefinedMetricSpecification": {
                "PredefinedMetricType":
                    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"}})
    step = aas.put_scaling_policy(
        PolicyName=policies[1], ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=COPY_COUNT_DIMENSION, PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Maximum",
            "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
    alarm = f"{component}-no-capacity"
    cw.put_metric_alarm(
        AlarmName=alarm, AlarmDescription=f"Scale {component} out from zero {tags.marker}",
        Namespace="AWS/SageMaker", MetricName="NoCapacityInvocationFailures",
        Dimensions=[{"Name": "InferenceComponentName", "Value": component}],
        Statistic="Maximum", Period=30, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[step["PolicyARN"]])
    return ScaleRun(tags, name, component, resource_id, alarm, policies)


def upload_run_files(s3: Any, bucket: str, tags: RecipeTags) -> str:
    """A run's own model.tar.gz with the run's metadata; returns its ``s3://`` prefix."""
    prefix = run_prefix(f"{tags.recipe}-{tags.run}")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/code/model.tar.gz", Body=b"x" * 100,
                  Metadata=tags.s3_metadata())
    return f"s3://{bucket}/{prefix}/"


def upload_weights(s3: Any, bucket: str, model_id: str = MODEL_ID) -> str:
    """Two weight files and the manifest of a complete copy; returns the ``s3://`` prefix."""
    prefix = weights_prefix(model_id)
    for name in ("config.json", "model.safetensors"):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=b"{}" * 500)
    s3.put_object(Bucket=bucket, Key=f"{prefix}.manifest.json", Body=b"{}")
    return f"s3://{bucket}/{prefix}/"
