"""The stand-in's Service Quotas for SageMaker and its --quota / --gated-denied flags."""

from __future__ import annotations

import pytest

from common.local.__main__ import build_parser
from common.local.quotas import (
    APPLIED_VALUE,
    AWS_DEFAULT_VALUE,
    endpoint_quota_name,
    parse_quota,
    quota_code,
)


def test_quota_flags_parse_and_repeat():
    args = build_parser().parse_args(
        ["--quota", "ml.g5.12xlarge=0", "--quota", "ml.g5.2xlarge=3",
         "--gated-denied", "meta-llama/Llama-2-70b-chat-hf"])
    assert dict(args.quotas) == {"ml.g5.12xlarge": 0.0, "ml.g5.2xlarge": 3.0}
    assert args.gated_denied == ["meta-llama/Llama-2-70b-chat-hf"]
    serve = build_parser().parse_args(["serve", "--quota", "ml.p4d.24xlarge=1"])
    assert dict(serve.quotas) == {"ml.p4d.24xlarge": 1.0}


@pytest.mark.parametrize("text", ["g5.2xlarge=1", "ml.g5.2xlarge", "ml.g5.2xlarge=-1",
                                  "ml.g5.2xlarge=many"])
def test_a_malformed_quota_is_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"INSTANCE_TYPE=N or INSTANCE_TYPE=default \(e\.g\. "
                                         r"ml\.g5\.12xlarge=0\)"):
        parse_quota(text)


def test_the_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--quota TYPE=N" in text and "--gated-denied MODEL_ID" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--quota", "nonsense"])
    assert "expected INSTANCE_TYPE=N" in capsys.readouterr().err


def test_service_quotas_lists_sagemaker_endpoint_quotas_by_name(local_stack):
    client = local_stack.client("service-quotas")
    applied = {q["QuotaName"]: q for q in
               client.list_service_quotas(ServiceCode="sagemaker")["Quotas"]}
    defaults = {q["QuotaName"]: q["Value"] for q in
                client.list_aws_default_service_quotas(ServiceCode="sagemaker")["Quotas"]}
    name = endpoint_quota_name("ml.g5.12xlarge")
    assert name == "ml.g5.12xlarge for endpoint usage"
    assert applied[name]["Value"] == APPLIED_VALUE and defaults[name] == AWS_DEFAULT_VALUE
    assert applied[name]["QuotaCode"] == quota_code(name)
    assert applied[name]["ServiceName"] == "Amazon SageMaker"
    one = client.get_service_quota(ServiceCode="sagemaker", QuotaCode=quota_code(name))
    assert one["Quota"]["QuotaName"] == name
    default = client.get_aws_default_service_quota(ServiceCode="sagemaker",
                                                   QuotaCode=quota_code(name))
    assert default["Quota"]["Value"] == AWS_DEFAULT_VALUE
    with pytest.raises(client.exceptions.NoSuchResourceException):
        client.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-00000000")
    # moto's own services still answer as before.
    assert client.list_aws_default_service_quotas(ServiceCode="vpc")["Quotas"]


def test_parse_quota_returns_the_type_and_value():
    assert parse_quota(" ml.g5.48xlarge=2 ") == ("ml.g5.48xlarge", 2.0)
