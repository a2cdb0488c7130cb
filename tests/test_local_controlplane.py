"""The stand-in's control plane: moto behind its proxy, with our endpoint lifecycle and fixes.

Every call here goes the way a notebook's calls go: boto3 or the SageMaker SDK v3, through
``HTTPS_PROXY`` to moto, verified against ``AWS_CA_BUNDLE`` (the session's ``local_stack``
has applied its environment). Endpoint names are unique per test, so the tests share the one
stand-in of the session.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from polling import WAIT_S, unique_name, wait_until

from common.gpu_drivers import inference_ami_version
from common.local.controlplane import EXECUTION_ROLE_NAME, _drop_empty_objects

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.36.0-lmi27.0.0-cu130"


@pytest.fixture
def sagemaker(local_stack):
    return boto3.client("sagemaker")


def _create_model_and_config(sagemaker, local_stack, name: str, *, image: str = TGI_IMAGE,
                             instance_type: str = "ml.g5.2xlarge") -> None:
    sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=local_stack.role_arn,
        PrimaryContainer={"Image": image, "Environment": {"HF_MODEL_ID": "meta-llama/x"}})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                             "InstanceType": instance_type, "InitialInstanceCount": 1,
                             **_host_ami(image, instance_type)}])


def _host_ami(image: str, instance_type: str) -> dict[str, str]:
    """The variant's InferenceAmiVersion for ``image``, as the recipes set it (none for an
    image whose tag names no CUDA version)."""
    ami = inference_ami_version(image, instance_type)
    return {"InferenceAmiVersion": ami} if ami else {}


def _status(sagemaker, name: str) -> str:
    return sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]


def _gone(sagemaker, name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        assert "Could not find endpoint" in exc.response["Error"]["Message"]
        return True
    return False


# --------------------------------------------------------------------------- lifecycle


def test_an_endpoint_walks_creating_inservice_deleting_gone(local_stack, sagemaker):
    name = unique_name("cp-life")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)

    assert _status(sagemaker, name) == "Creating"
    info = local_stack.lookup(name)
    assert (info.name, info.status, info.image) == (name, "Creating", TGI_IMAGE)
    assert info.environment == {"HF_MODEL_ID": "meta-llama/x"}

    wait_until(lambda: _status(sagemaker, name) == "InService", "InService")
    assert local_stack.lookup(name).status == "InService"
    listed = sagemaker.list_endpoints(NameContains=name)["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [(name, "InService")]

    sagemaker.delete_endpoint(EndpointName=name)
    # Read in-process: Deleting lasts a tenth of a second at the session's time scale, which a
    # second HTTP call can miss on a busy machine (parallel workers).
    assert local_stack.lookup(name).status == "Deleting"
    wait_until(lambda: _gone(sagemaker, name), "the endpoint to disappear")
    assert local_stack.lookup(name) is None


def test_the_boto3_waiter_sees_inservice(local_stack, sagemaker):
    name = unique_name("cp-waiter")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert _status(sagemaker, name) == "InService"


def test_a_failing_endpoint_goes_failed_with_its_reason(local_stack, sagemaker):
    name = unique_name("cp-fail")
    reason = "CUDA out of memory while loading the weights (injected by the test)"
    local_stack.fail_endpoint(name, reason)
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)

    assert _status(sagemaker, name) == "Creating"
    wait_until(lambda: _status(sagemaker, name) == "Failed", "Failed")
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["FailureReason"] == reason
    assert local_stack.lookup(name).status == "Failed"


def test_a_pattern_fails_inservice_endpoints_at_once_with_the_default_reason(local_stack,
                                                                             sagemaker):
    name = unique_name("cp-later")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_until(lambda: _status(sagemaker, name) == "InService", "InService")

    local_stack.fail_endpoint("cp-later-*")
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Failed"
    assert "AllTraffic did not pass the ping health check" in described["FailureReason"]


def test_creating_an_existing_endpoint_is_refused(local_stack, sagemaker):
    name = unique_name("cp-twice")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    with pytest.raises(ClientError, match="Cannot create already existing endpoint"):
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def test_update_endpoint_goes_updating_then_serves_the_new_model(local_stack, sagemaker):
    name, new = unique_name("cp-upd"), unique_name("cp-upd-lmi")
    _create_model_and_config(sagemaker, local_stack, name)
    _create_model_and_config(sagemaker, local_stack, new, image=LMI_IMAGE)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=new)
    wait_until(lambda: _status(sagemaker, name) == "InService", "InService")

    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=new)
    assert _status(sagemaker, name) == "Updating"
    assert local_stack.lookup(name).image == TGI_IMAGE  # the old model serves until it is done
    wait_until(lambda: _status(sagemaker, name) == "InService", "InService after the update")
    assert local_stack.lookup(name).image == LMI_IMAGE
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"] == new


def test_a_running_endpoint_keeps_its_model_when_model_and_config_are_deleted(local_stack,
                                                                              sagemaker):
    name = unique_name("cp-keep")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.delete_endpoint_config(EndpointConfigName=name)
    sagemaker.delete_model(ModelName=name)
    assert local_stack.lookup(name).image == TGI_IMAGE


def test_lookup_of_an_unknown_endpoint_is_none(local_stack):
    assert local_stack.lookup(unique_name("cp-nobody")) is None


# --------------------------------------------------------------------------- fixes to moto


@pytest.mark.parametrize("instance_type", ["ml.g5.2xlarge", "ml.g5.12xlarge",
                                           "ml.g5.48xlarge", "ml.p4d.24xlarge"])
def test_the_recipes_instance_types_are_accepted(local_stack, sagemaker, instance_type):
    name = unique_name("cp-type")
    _create_model_and_config(sagemaker, local_stack, name, instance_type=instance_type)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["InstanceType"] == instance_type


def test_an_unknown_instance_type_is_still_rejected(local_stack, sagemaker):
    with pytest.raises(ClientError, match=r"ml\.bogus\.xlarge"):
        _create_model_and_config(sagemaker, local_stack, unique_name("cp-bogus"),
                                 instance_type="ml.bogus.xlarge")


def test_empty_structures_are_left_out_of_responses(local_stack, sagemaker):
    name = unique_name("cp-shape")
    _create_model_and_config(sagemaker, local_stack, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert "VpcConfig" not in sagemaker.describe_model(ModelName=name)
    assert "DataCaptureConfig" not in sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert "DataCaptureConfig" not in sagemaker.describe_endpoint(EndpointName=name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


def _has_empty_member(value: object) -> bool:
    if isinstance(value, dict):
        return any(v == {} or _has_empty_member(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_empty_member(v) for v in value)
    return False


@given(json_values)
def test_for_every_document_pruning_leaves_no_empty_member_and_is_idempotent(document):
    pruned = _drop_empty_objects(document)
    assert not _has_empty_member(pruned)
    assert _drop_empty_objects(pruned) == pruned
    if not _has_empty_member(document):
        assert pruned == document


# --------------------------------------------------------------------------- the SDK v3


def test_the_v3_sdk_deploys_waits_and_deletes(local_stack):
    from sagemaker.core import image_uris
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import (
        ContainerDefinition,
        ProductionVariant,
        ProductionVariantRoutingConfig,
    )

    session = boto3.Session()
    name = unique_name("cp-sdk")
    image = image_uris.retrieve("huggingface-llm", region=session.region_name, version="3.3.6")
    model = Model.create(model_name=name, execution_role_arn=local_stack.role_arn,
                         primary_container=ContainerDefinition(image=image,
                                                               environment={"A": "1"}),
                         session=session)
    config = EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[ProductionVariant(
            variant_name="AllTraffic", model_name=name, instance_type="ml.g5.12xlarge",
            inference_ami_version=inference_ami_version(image, "ml.g5.12xlarge"),
            initial_instance_count=1, container_startup_health_check_timeout_in_seconds=900,
            model_data_download_timeout_in_seconds=1200,
            routing_config=ProductionVariantRoutingConfig(
                routing_strategy="LEAST_OUTSTANDING_REQUESTS"))],
        session=session)
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name, session=session)
    assert endpoint.endpoint_status == "Creating"

    endpoint.wait_for_status(target_status="InService", poll=1, timeout=int(WAIT_S))
    assert local_stack.lookup(name).image == image

    endpoint.delete()
    endpoint.wait_for_delete(poll=1, timeout=int(WAIT_S))
    config.delete()
    model.delete()
    assert local_stack.lookup(name) is None


def test_the_v3_sdk_wait_raises_with_the_failure_reason(local_stack, sagemaker):
    from sagemaker.core.resources import Endpoint
    from sagemaker.core.utils.exceptions import FailedStatusError

    name = unique_name("cp-sdk-fail")
    local_stack.fail_endpoint(name, "the container exited with code 137 (test)")
    _create_model_and_config(sagemaker, local_stack, name)
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name,
                               session=boto3.Session())
    with pytest.raises(FailedStatusError, match="exited with code 137"):
        endpoint.wait_for_status(target_status="InService", poll=1, timeout=int(WAIT_S))


def test_default_bucket_and_an_s3_upload_work(local_stack, tmp_path):
    from sagemaker.core.helper.session_helper import Session

    bucket = Session().default_bucket()
    assert bucket == "sagemaker-us-east-1-123456789012"
    source = tmp_path / "weights.safetensors"
    source.write_bytes(bytes(range(256)) * 40)
    s3 = boto3.client("s3")
    s3.upload_file(str(source), bucket, "cp-test/weights.safetensors")
    body = s3.get_object(Bucket=bucket, Key="cp-test/weights.safetensors")["Body"].read()
    assert body == source.read_bytes()


def test_the_execution_role_trusts_sagemaker(local_stack):
    import os

    assert os.environ["SAGEMAKER_EXECUTION_ROLE_ARN"] == local_stack.role_arn
    role = boto3.client("iam").get_role(RoleName=EXECUTION_ROLE_NAME)["Role"]
    assert role["Arn"] == local_stack.role_arn
    policy = role["AssumeRolePolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


def test_sts_answers_through_the_proxy_with_the_dummy_account(local_stack):
    identity = boto3.client("sts").get_caller_identity()
    assert identity["Account"] == "123456789012"
