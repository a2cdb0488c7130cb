"""common.preflight against the stand-in: every failure with its message and its fix.

The session's stand-in (conftest) is changed for one test at a time -- a quota, a gated
model, a role -- and put back afterwards. Where a fix is something to run (the quota
request, the trust policy, the role policy), the test runs it and checks that it fixes.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from contextlib import contextmanager

import pytest

import common
from common.endpoints import delete_endpoint_resources
from common.local.quotas import APPLIED_VALUE
from common.preflight import FAILED, NOT_CHECKED, PASSED, check_model_access

TGI = common.get_preset("7b", "tgi")  # ml.g5.2xlarge
LMI = common.get_preset("7b", "lmi")
PLENTY = 10**12  # bytes of free disk


@contextmanager
def _quota(stack, instance_type: str, value: float):
    stack.quotas.set(instance_type, value)
    try:
        yield
    finally:
        stack.quotas.set(instance_type, APPLIED_VALUE)


@contextmanager
def _denied(stack, model_id: str):
    stack.hub_api.deny(model_id)
    try:
        yield
    finally:
        stack.hub_api.allow(model_id)


def _run(stack, preset, **options) -> common.PreflightReport:
    options.setdefault("disk_free", lambda path: PLENTY)
    return common.preflight(preset, hub_endpoint=stack.env["HF_ENDPOINT"], show=False,
                            **options)


def _failure(stack, preset, **options) -> common.PreflightError:
    with pytest.raises(common.PreflightError) as caught:
        _run(stack, preset, **options)
    return caught.value


def _by_check(report) -> dict[str, common.CheckResult]:
    return {result.check: result for result in report.results}


def _json_in(text: str) -> dict:
    return json.loads(re.search(r"'(\{.*?\})'", text).group(1))


# --------------------------------------------------------------------------- all good


def test_everything_passes_on_a_ready_account(local_stack):
    report = _run(local_stack, LMI)
    assert report.ok and not report.not_checked
    assert [r.status for r in report.results] == [PASSED] * 5
    assert list(_by_check(report)) == ["Instance quota", "Model access", "Notebook disk",
                                       "Execution role", "S3 access"]
    assert "'ml.g5.2xlarge for endpoint usage' is 100" in _by_check(report)["Instance quota"].detail


def test_tgi_needs_no_local_disk_and_no_s3(local_stack):
    report = _run(local_stack, TGI, disk_free=lambda path: 0)
    checks = _by_check(report)
    assert "S3 access" not in checks
    assert checks["Notebook disk"].status == PASSED
    assert "TGI downloads the weights inside the endpoint" in checks["Notebook disk"].detail


# --------------------------------------------------------------------------- quota


def test_a_zero_quota_names_the_quota_and_how_to_raise_it(local_stack):
    with _quota(local_stack, "ml.g5.2xlarge", 0):
        error = _failure(local_stack, TGI)
    (failure,) = error.failures
    assert failure.check == "Instance quota" and failure.status == FAILED
    quotas = local_stack.client("service-quotas").list_service_quotas(ServiceCode="sagemaker")
    (quota,) = [q for q in quotas["Quotas"]
                if q["QuotaName"] == "ml.g5.2xlarge for endpoint usage"]
    code = quota["QuotaCode"]
    message = str(error)
    assert "'ml.g5.2xlarge for endpoint usage' is 0 in us-east-1" in message
    assert (f"https://us-east-1.console.aws.amazon.com/servicequotas/home/services/sagemaker/"
            f"quotas/{code}") in message
    # Other tests of the session may keep ml.g5.2xlarge endpoints: they count too.
    in_use = int(re.search(r"endpoints already hold (\d+), this one needs up to 1",
                           failure.detail).group(1))
    call = (f"request_service_quota_increase(ServiceCode='sagemaker', QuotaCode='{code}', "
            f"DesiredValue={in_use + 1})")
    assert call in failure.fix
    # The call in the fix is accepted as written (a request, pending until AWS approves it).
    answer = local_stack.client("service-quotas").request_service_quota_increase(
        ServiceCode="sagemaker", QuotaCode=code, DesiredValue=in_use + 1)
    assert answer["RequestedQuota"]["Status"] == "PENDING"
    assert answer["RequestedQuota"]["QuotaName"] == "ml.g5.2xlarge for endpoint usage"


def test_instances_already_in_use_count_against_the_quota(local_stack):
    sagemaker = local_stack.client("sagemaker")
    name = f"pf-quota-{uuid.uuid4().hex[:8]}"
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": "tgi:3.3.6"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g6.2xlarge",
        "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        with _quota(local_stack, "ml.g6.2xlarge", 1):
            import dataclasses

            preset = dataclasses.replace(TGI, instance_type="ml.g6.2xlarge")
            error = _failure(local_stack, preset)
            assert "endpoints already hold 1, this one needs up to 1" in error.failures[0].detail
            assert "DesiredValue=2" in error.failures[0].fix
            # What SageMaker itself answers (aws-samples/aws-genai-llm-chatbot#244).
            with pytest.raises(sagemaker.exceptions.ResourceLimitExceeded) as refused:
                sagemaker.create_endpoint(EndpointName=name + "-2", EndpointConfigName=name)
            assert str(refused.value).endswith(
                "The account-level service limit 'ml.g6.2xlarge for endpoint usage' is 1 "
                "Instances, with current utilization of 1 Instances and a request delta of 1 "
                "Instances. Please use AWS Service Quotas to request an increase for this "
                "quota. If AWS Service Quotas is not available, contact AWS support to "
                "request an increase for this quota.")
    finally:  # waits while the endpoint is Creating: SageMaker refuses to delete it then
        delete_endpoint_resources(name, sagemaker_client=sagemaker, out=io.StringIO())


def test_a_quota_without_an_applied_value_is_read_from_the_defaults(local_stack):
    # ListServiceQuotas leaves such a quota out; its code and AWS's default (0) come from
    # ListAWSDefaultServiceQuotas, and GetServiceQuota by code finds no applied value.
    import dataclasses

    preset = dataclasses.replace(TGI, instance_type="ml.g6.12xlarge", num_gpus=4)
    with _quota(local_stack, "ml.g6.12xlarge", None):
        error = _failure(local_stack, preset)
    (failure,) = error.failures
    assert ("'ml.g6.12xlarge for endpoint usage' is 0 (AWS default (no applied value)) in "
            "us-east-1") in failure.detail
    assert "QuotaCode='L-" in failure.fix


def test_instances_in_use_are_read_from_current_instance_count(local_stack):
    # An endpoint for inference components runs the instances its copies need, whatever its
    # InitialInstanceCount said; one scaled to zero holds none.
    sagemaker = local_stack.client("sagemaker")
    name = f"pf-ic-{uuid.uuid4().hex[:8]}"
    image = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": image})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name, ExecutionRoleArn=local_stack.role_arn, ProductionVariants=[{
            "VariantName": "AllTraffic", "InstanceType": "ml.g6.xlarge",
            "InitialInstanceCount": 1,
            "InferenceAmiVersion": common.inference_ami_version(image, "ml.g6.xlarge"),
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0,
                                       "MaxInstanceCount": 3}}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    sagemaker.create_inference_component(
        InferenceComponentName=name, EndpointName=name, VariantName="AllTraffic",
        Specification={"ModelName": name, "ComputeResourceRequirements": {
            "NumberOfAcceleratorDevicesRequired": 1, "MinMemoryRequiredInMb": 1024}},
        RuntimeConfig={"CopyCount": 3})
    try:
        import dataclasses

        preset = dataclasses.replace(TGI, instance_type="ml.g6.xlarge")
        with _quota(local_stack, "ml.g6.xlarge", 3):
            error = _failure(local_stack, preset)
        assert "endpoints already hold 3, this one needs up to 1" in error.failures[0].detail
    finally:
        from polling import wait_until

        wait_until(lambda: sagemaker.describe_inference_component(InferenceComponentName=name)[
            "InferenceComponentStatus"] in ("InService", "Failed"), "the component to start")
        sagemaker.delete_inference_component(InferenceComponentName=name)
        wait_until(lambda: not sagemaker.list_inference_components(
            EndpointNameEquals=name)["InferenceComponents"], "the component to be gone")
        sagemaker.delete_endpoint(EndpointName=name)


def test_unreadable_quotas_are_not_checked_never_passed(local_stack):
    local_stack.quotas.readable = False
    try:
        report = _run(local_stack, TGI)
    finally:
        local_stack.quotas.readable = True
    quota = _by_check(report)["Instance quota"]
    assert quota.status == NOT_CHECKED
    assert "AccessDeniedException" in quota.detail
    assert "servicequotas:ListServiceQuotas" in quota.detail
    assert "'ml.g5.2xlarge for endpoint usage'" in quota.detail
    assert report.ok and report.not_checked == [quota]


# --------------------------------------------------------------------------- the gated model


def test_a_token_without_the_licence_is_refused_with_the_model_page(local_stack):
    with _denied(local_stack, TGI.model_id):
        error = _failure(local_stack, TGI)
    (failure,) = error.failures
    assert failure.check == "Model access"
    assert "you are not in the authorized list" in failure.detail
    assert "Open https://huggingface.co/meta-llama/Llama-2-7b-chat-hf" in failure.fix
    assert "accept the model's licence" in failure.fix
    # Once access is granted (the fix), the same check passes.
    assert check_model_access(TGI.model_id, None,
                              endpoint=local_stack.env["HF_ENDPOINT"]).status == PASSED


def test_no_token_says_how_to_make_one(local_stack, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    error = _failure(local_stack, TGI, hf_token="")
    (failure,) = error.failures
    assert failure.check == "Model access"
    assert failure.detail.startswith("no Hugging Face token")
    assert "https://huggingface.co/settings/tokens" in failure.fix
    assert "export HF_TOKEN" in failure.fix


def test_without_a_token_the_local_hub_answers_as_the_hub_does(local_stack):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    with pytest.raises(GatedRepoError, match="Please log in"):
        HfApi(endpoint=local_stack.env["HF_ENDPOINT"]).auth_check(TGI.model_id, token=False)


# --------------------------------------------------------------------------- the disk


def test_a_small_disk_fails_with_the_folder_and_the_no_disk_option(local_stack, tmp_path):
    staging = tmp_path / "not-yet" / "staging"  # measured where it will be: its parent
    measured: list[str] = []

    def free(path: str) -> int:
        measured.append(path)
        return 1000

    error = _failure(local_stack, LMI, weights="s3", staging_dir=staging, disk_free=free)
    (failure,) = error.failures
    assert measured == [str(tmp_path)]
    assert failure.check == "Notebook disk"
    assert "1.0 kB free in " + str(staging) in failure.detail
    assert "for the largest file" in failure.detail
    assert f"free space on the disk that holds {staging}" in failure.fix  # not Studio here
    assert "HF_MODEL_ID = 'meta-llama/Llama-2-7b-chat-hf'" in failure.fix
    assert "WEIGHTS = 'hub'" in failure.fix and "weights='hub'" in failure.fix


def _studio_disk(local_stack, staging, home):
    from common.preflight import check_disk

    return check_disk(LMI, "copy", staging_dir=str(staging), disk_free=lambda path: 1000,
                      endpoint=local_stack.env["HF_ENDPOINT"], home=str(home), in_studio=True)


def test_in_studio_a_small_home_volume_says_to_resize_the_space(local_stack, tmp_path):
    result = _studio_disk(local_stack, tmp_path / "staging", home=tmp_path)
    assert result.status == FAILED and "(the home folder's volume)" in result.detail
    assert "is on the space's own volume (your home folder)" in result.fix
    assert "give the space at least 5 GB of storage" in result.fix
    assert "Edit space -> Storage (GB)" in result.fix


def test_in_studio_a_small_temporary_folder_says_to_stage_on_the_home_volume(local_stack,
                                                                           tmp_path):
    result = _studio_disk(local_stack, tmp_path / "staging", home="/proc")  # another volume
    assert result.status == FAILED and "(not the home folder's volume)" in result.detail
    assert "on the space's container storage, which Studio cannot resize" in result.fix
    assert "STAGING_DIR = Path.home() / 'llama-2-recipes-staging'" in result.fix
    assert "give the space at least 5 GB of storage" in result.fix


def test_the_copy_needs_only_the_largest_file_and_the_snapshot_the_whole_model(local_stack):
    files = common.list_weight_files(LMI.model_id, endpoint=local_stack.env["HF_ENDPOINT"])
    largest = max(f.size for f in files)
    total = sum(f.size for f in files)
    free = int(largest * 1.1)
    assert free < total
    assert _by_check(_run(local_stack, LMI, disk_free=lambda path: free))[
        "Notebook disk"].status == PASSED
    error = _failure(local_stack, LMI, weights="snapshot", disk_free=lambda path: free)
    assert "the whole model (snapshot download)" in error.failures[0].detail
    assert "common.copy_weights_to_s3" in error.failures[0].fix
    assert _by_check(_run(local_stack, LMI, weights="hub", disk_free=lambda path: 0))[
        "Notebook disk"].status == PASSED


# --------------------------------------------------------------------------- the role


def _role(stack, *, service: str, policy: dict | None = None) -> str:
    iam = stack.client("iam")
    name = f"pf-role-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return arn


def test_a_role_sagemaker_cannot_assume_gets_the_trust_policy_to_set(local_stack):
    arn = _role(local_stack, service="ec2.amazonaws.com")
    error = _failure(local_stack, TGI, role=arn)
    (failure,) = error.failures
    assert failure.check == "Execution role"
    assert "does not let sagemaker.amazonaws.com assume it" in failure.detail
    name = arn.rsplit("/", 1)[-1]
    assert f"aws iam update-assume-role-policy --role-name {name}" in failure.fix
    # Applying the policy the fix gives makes the role pass.
    local_stack.client("iam").update_assume_role_policy(
        RoleName=name, PolicyDocument=json.dumps(_json_in(failure.fix)))
    assert _run(local_stack, TGI, role=arn).ok


def test_a_role_without_s3_access_gets_the_policy_to_add(local_stack):
    arn = _role(local_stack, service="sagemaker.amazonaws.com", policy={
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}]})
    error = _failure(local_stack, LMI, role=arn, bucket="my-artifacts")
    (failure,) = error.failures
    assert failure.check == "S3 access"
    assert "s3:GetObject, s3:PutObject, s3:ListBucket" in failure.detail
    assert "s3://my-artifacts/" in failure.detail
    name = arn.rsplit("/", 1)[-1]
    assert f"aws iam put-role-policy --role-name {name}" in failure.fix
    local_stack.client("iam").put_role_policy(
        RoleName=name, PolicyName="artifacts", PolicyDocument=json.dumps(_json_in(failure.fix)))
    assert _run(local_stack, LMI, role=arn, bucket="my-artifacts").ok


def test_an_explicit_deny_wins(local_stack):
    arn = _role(local_stack, service="sagemaker.amazonaws.com", policy={
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::locked/*"}]})
    error = _failure(local_stack, LMI, role=arn, bucket="locked")
    assert "do not allow s3:PutObject on" in error.failures[0].detail


def test_a_permissions_boundary_that_denies_is_seen(local_stack):
    # The role's own policy allows everything; its boundary allows only reading.
    iam = local_stack.client("iam")
    arn = _role(local_stack, service="sagemaker.amazonaws.com", policy={
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    boundary = iam.create_policy(PolicyName=f"pf-boundary-{uuid.uuid4().hex[:8]}",
                                 PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                            "Statement": [{
                                                                "Effect": "Allow",
                                                                "Action": "s3:Get*",
                                                                "Resource": "*"}]}))
    iam.put_role_permissions_boundary(RoleName=arn.rsplit("/", 1)[-1],
                                      PermissionsBoundary=boundary["Policy"]["Arn"])
    error = _failure(local_stack, LMI, role=arn, bucket="bounded")
    assert "do not allow s3:PutObject, s3:ListBucket on s3://bounded/" in error.failures[0].detail


def test_a_condition_the_simulation_cannot_know_is_not_checked(local_stack):
    arn = _role(local_stack, service="sagemaker.amazonaws.com", policy={
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1234"}}}]})
    report = _run(local_stack, LMI, role=arn, bucket="conditional")
    access = _by_check(report)["S3 access"]
    assert access.status == NOT_CHECKED and "aws:SourceVpce" in access.detail


def test_a_refused_simulation_is_not_checked_never_passed(local_stack):
    from botocore.exceptions import ClientError

    from common.preflight import check_role

    class RefusingIam:
        def __init__(self, iam):
            self.iam = iam

        def __getattr__(self, name):
            return getattr(self.iam, name)

        def get_paginator(self, name):
            if name == "simulate_principal_policy":
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized "
                                             "to perform: iam:SimulatePrincipalPolicy"}},
                                  "SimulatePrincipalPolicy")
            return self.iam.get_paginator(name)

    class Session:
        def client(self, service, **_):
            client = local_stack.client(service)
            return RefusingIam(client) if service == "iam" else client

    results = check_role(Session(), local_stack.role_arn, bucket="b")
    access = results[-1]
    assert access.check == "S3 access" and access.status == NOT_CHECKED
    assert "AccessDenied" in access.detail and "iam:SimulatePrincipalPolicy" in access.detail


def test_a_missing_role_says_how_to_create_one(local_stack):
    error = _failure(local_stack, TGI, role="arn:aws:iam::123456789012:role/no-such-role")
    assert "does not exist" in error.failures[0].detail
    assert "sagemaker.amazonaws.com" in error.failures[0].fix


# --------------------------------------------------------------------------- all at once


def test_every_failure_is_reported_at_once_in_one_error(local_stack):
    arn = _role(local_stack, service="ec2.amazonaws.com")
    with _quota(local_stack, "ml.g5.2xlarge", 0), _denied(local_stack, LMI.model_id):
        error = _failure(local_stack, LMI, role=arn, bucket="my-artifacts",
                         disk_free=lambda path: 0)
    checks = [f.check for f in error.failures]
    assert checks == ["Instance quota", "Model access", "Notebook disk", "Execution role",
                      "S3 access"]
    message = str(error)
    assert message.startswith("Pre-flight found 5 problems; nothing was created.")
    for number, check in enumerate(checks, start=1):
        assert f"\n{number}. {check}: " in message
    assert message.count("\n   Fix: ") == 5
    # Without access to the gated repository the disk check still runs, on an estimate.
    assert "estimated from the preset's 6.74 B parameters" in error.failures[2].detail


def test_the_table_shows_every_check_as_text_and_html(local_stack, capsys):
    with _quota(local_stack, "ml.g5.2xlarge", 0), pytest.raises(common.PreflightError):
        common.preflight(TGI, hub_endpoint=local_stack.env["HF_ENDPOINT"])
    printed = capsys.readouterr().out
    assert re.search(r"Instance quota\s+FAILED\s+'ml.g5.2xlarge for endpoint usage' is 0",
                     printed)
    assert re.search(r"Model access\s+PASSED", printed)
    assert re.search(r"\n\s+Fix: Request an increase of 'ml.g5.2xlarge for endpoint usage'",
                     printed)
    report = common.PreflightReport((common.CheckResult("Instance quota", FAILED, "0 < 1",
                                                        "raise <it>"),))
    html = report._repr_html_()
    assert "<table class='preflight'>" in html and "raise &lt;it&gt;" in html


def test_an_unknown_weights_mode_is_refused():
    with pytest.raises(ValueError, match="copy, snapshot, hub"):
        common.preflight(LMI, weights="torrent", show=False)


def test_notebooks_for_other_variants_get_the_preflight_cell_too(local_stack, monkeypatch):
    import huggingface_hub.constants as constants

    from common.notebooks.generator import new_recipe, render_recipe

    # `new` reads the model's facts with hf_hub_download; this process imported
    # huggingface_hub before the stand-in's HF_ENDPOINT was set, so read its cache offline.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(local_stack.hf_cache))
    recipe = new_recipe("codellama/CodeLlama-13b-Instruct-hf", "lmi", "ml.g5.12xlarge")
    deploy = render_recipe(recipe)[recipe.deploy_path]
    assert "common.preflight(" in deploy
    assert deploy.index("common.preflight(") < deploy.index("common.copy_weights_to_s3(")
    assert deploy.index("common.preflight(") < deploy.index("Model.create(")
    assert "`ml.g5.12xlarge` endpoints" in deploy


def test_the_preflight_macro_takes_more_arguments_for_other_templates():
    from common.notebooks.generator import _environment

    source = ('{% import "_preflight.ipynb.j2" as preflight %}'
              '{{ preflight.preflight_cells("tgi", "ml.g5.12xlarge", "instance_count=2") }}')
    text = _environment().from_string(source).render()
    code = text.split("%%% code\n", 1)[1]
    assert code == ("preflight_report = common.preflight(\n"
                    "    preset, region=region, session=boto_session, role=role, "
                    "hf_token=hf_token,\n    instance_count=2\n)")
    assert "`ml.g5.12xlarge` endpoints" in text and "free disk" not in text


def test_an_unreachable_hub_is_not_checked_and_the_disk_is_estimated(local_stack):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    report = common.preflight(LMI, hub_endpoint=f"http://127.0.0.1:{closed}", show=False,
                              disk_free=lambda path: PLENTY)
    checks = _by_check(report)
    assert checks["Model access"].status == NOT_CHECKED
    assert "could not be reached" in checks["Model access"].detail
    assert checks["Notebook disk"].status == PASSED
    assert "estimated from the preset" in checks["Notebook disk"].detail


def test_offline_mode_is_not_checked(monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    def offline(self, *args, **kwargs):
        raise OfflineModeIsEnabled("Cannot reach ...: offline mode is enabled.")

    monkeypatch.setattr(HfApi, "auth_check", offline)
    result = check_model_access(TGI.model_id, "hf_dummy_token_value")
    assert result.status == NOT_CHECKED and "HF_HUB_OFFLINE" in result.detail


def test_a_public_model_needs_no_token(local_stack, monkeypatch):
    import huggingface_hub

    from common.local.hub import write_snapshot

    write_snapshot(local_stack.hf_cache, "local-test/public-model", {"config.json": b"{}\n"})
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    result = check_model_access("local-test/public-model", "",
                                endpoint=local_stack.env["HF_ENDPOINT"])
    assert result.status == PASSED and "no token needed" in result.detail
