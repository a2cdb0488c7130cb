"""A scaling timeline on a manual clock, run in a child process by test_local_autoscaling.py.

moto's backends are global, so a stand-in with a clock of its own runs in a process of its
own; this script prints one JSON document with what happened, at which simulated second.
"""

from __future__ import annotations

import json
import sys

import boto3
from botocore.exceptions import ClientError

from common.gpu_drivers import inference_ami_version
from common.local.clock import ManualClock
from common.local.components import InvocationRejected
from common.local.stack import LocalStack

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
IC = "ic-scale"
RESOURCE = f"inference-component/{IC}"
DIMENSION = "sagemaker:inference-component:DesiredCopyCount"


def refusal(call) -> str:
    """The error code and message a call is refused with."""
    try:
        call()
    except ClientError as exc:
        return f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}"
    return "accepted"


def main() -> dict:
    clock = ManualClock()
    out: dict = {"samples": {}, "errors": []}
    with LocalStack(clock=clock, endpoint_delay_s=120, ttft_s=0, tokens_per_s=0,
                    copy_concurrency=4) as stack:
        stack.apply_env()
        sm = boto3.client("sagemaker")
        aas = boto3.client("application-autoscaling")
        cw = boto3.client("cloudwatch")

        def desired() -> tuple[int, int]:
            config = sm.describe_inference_component(InferenceComponentName=IC)["RuntimeConfig"]
            return config["DesiredCopyCount"], config["CurrentCopyCount"]

        def instances() -> int:
            return sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0][
                "CurrentInstanceCount"]

        def sample(label: str) -> None:
            alarms = {("high" if "AlarmHigh" in a["AlarmName"] else "low" if "AlarmLow" in
                       a["AlarmName"] else "nocap"): a["StateValue"]
                      for a in cw.describe_alarms()["MetricAlarms"]}
            out["samples"][label] = {"t": clock.now(), "copies": desired(),
                                     "instances": instances(), "alarms": alarms}

        sm.create_model(ModelName="m", ExecutionRoleArn=stack.role_arn,
                        PrimaryContainer={"Image": TGI_IMAGE})
        sm.create_endpoint_config(
            EndpointConfigName="cfg", ExecutionRoleArn=stack.role_arn,
            ProductionVariants=[{
                "VariantName": "AllTraffic", "InstanceType": "ml.g5.12xlarge",
                "InitialInstanceCount": 1,
                "InferenceAmiVersion": inference_ami_version(TGI_IMAGE, "ml.g5.12xlarge"),
                "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0,
                                           "MaxInstanceCount": 2},
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}])
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="cfg")
        stack.advance(120)
        sm.create_inference_component(
            InferenceComponentName=IC, EndpointName="ep", VariantName="AllTraffic",
            Specification={"ModelName": "m", "ComputeResourceRequirements": {
                "NumberOfAcceleratorDevicesRequired": 1, "MinMemoryRequiredInMb": 1024}},
            RuntimeConfig={"CopyCount": 1})
        stack.advance(60)  # t=180: the copy serves
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                     ScalableDimension=DIMENSION, MinCapacity=0, MaxCapacity=8)
        aas.put_scaling_policy(
            PolicyName="track", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
            ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 2.0, "PredefinedMetricSpecification": {
                    "PredefinedMetricType":
                        "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"}})
        step = aas.put_scaling_policy(
            PolicyName="from-zero", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
            ScalableDimension=DIMENSION, PolicyType="StepScaling",
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Maximum",
                "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
        cw.put_metric_alarm(
            AlarmName="ic-scale-from-zero", Namespace="AWS/SageMaker",
            MetricName="NoCapacityInvocationFailures",
            Dimensions=[{"Name": "InferenceComponentName", "Value": IC}], Statistic="Maximum",
            Period=30, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            AlarmActions=[step["PolicyARN"]])
        # 12 streams held open from t=180 on one copy of 4: 12 requests per copy.
        held = []
        for _ in range(12):
            admission = stack.scaling.route("ep", IC)
            held.append(admission)
        for admission in held[:4]:
            admission.acquire()
        stack.scaling.manager.lock.acquire()
        try:
            for admission in held[4:]:  # queued: they count, as SageMaker counts them
                admission.component.waiting.append(admission.ticket)
        finally:
            stack.scaling.manager.lock.release()
        sample("start")
        stack.advance(20)
        sample("t200")
        stack.advance(10)
        sample("t210")
        stack.advance(190)
        sample("t400")
        stack.advance(200)
        sample("t600")
        for admission in held:
            admission.release()
        with stack.scaling.manager.lock:
            held[0].component.waiting.clear()
        stack.advance(890)
        sample("t1490")
        stack.advance(10)
        sample("t1500")
        stack.advance(590)
        sample("t2090")
        stack.advance(10)
        sample("t2100")
        stack.advance(100)  # t=2200: a request meets no capacity
        try:
            stack.scaling.route("ep", IC)
        except InvocationRejected as rejected:
            out["errors"].append(rejected.message)
        stack.advance(10)
        sample("t2210")
        stack.advance(10)
        sample("t2220")
        stack.advance(290)
        sample("t2510")
        stack.advance(10)
        sample("t2520")
        activities = aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingActivities"]
        start = clock.wall(0).timestamp()
        out["activities"] = [
            {"t": round(a["StartTime"].timestamp() - start), "description": a["Description"],
             "cause": a["Cause"]} for a in reversed(activities)]
        points = stack.scaling.datapoints("ConcurrentRequestsPerCopy", IC)
        out["concurrency"] = [[t, round(v, 3)] for t, v in points if t <= 300]
        invocations = stack.scaling.datapoints("InvocationsPerCopy", IC)
        out["invocations"] = [[t, round(v, 3)] for t, v in invocations if v > 0 and t <= 300]
        out["events"] = stack.scaling_events()
        out["errors"].append(refusal(lambda: sm.delete_inference_component(
            InferenceComponentName="missing")))
        out["errors"].append(refusal(lambda: aas.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId="inference-component/missing",
            ScalableDimension=DIMENSION, MinCapacity=0, MaxCapacity=1)))
        out["errors"].append(refusal(lambda: aas.put_scaling_policy(
            PolicyName="orphan", ServiceNamespace="sagemaker",
            ResourceId="inference-component/missing", ScalableDimension=DIMENSION,
            PolicyType="StepScaling", StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})))
        out["registered"] = {
            "targets": [t["ResourceId"] for t in aas.describe_scalable_targets(
                ServiceNamespace="sagemaker", ScalableDimension=DIMENSION)["ScalableTargets"]],
            "policies": sorted(p["PolicyName"] for p in aas.describe_scaling_policies(
                ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingPolicies"]),
            "alarms": len(cw.describe_alarms()["MetricAlarms"]),
        }
        # Clean-up in the order that works: alarm, policies, target, component, endpoint...
        cw.delete_alarms(AlarmNames=["ic-scale-from-zero"])
        for policy in ("track", "from-zero"):
            aas.delete_scaling_policy(PolicyName=policy, ServiceNamespace="sagemaker",
                                      ResourceId=RESOURCE, ScalableDimension=DIMENSION)
        aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                       ScalableDimension=DIMENSION)
        sm.delete_inference_component(InferenceComponentName=IC)
        stack.advance(10)
        sm.delete_endpoint(EndpointName="ep")
        stack.advance(20)
        sm.delete_endpoint_config(EndpointConfigName="cfg")
        sm.delete_model(ModelName="m")
        out["left"] = {
            "targets": aas.describe_scalable_targets(ServiceNamespace="sagemaker")[
                "ScalableTargets"],
            "policies": aas.describe_scaling_policies(ServiceNamespace="sagemaker")[
                "ScalingPolicies"],
            "alarms": cw.describe_alarms()["MetricAlarms"],
            "components": sm.list_inference_components()["InferenceComponents"],
            "endpoints": sm.list_endpoints()["Endpoints"],
            "configs": sm.list_endpoint_configs()["EndpointConfigs"],
            "models": sm.list_models()["Models"],
        }
    return out


if __name__ == "__main__":
    json.dump(main(), sys.stdout, default=str)
