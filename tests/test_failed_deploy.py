"""A deploy that fails or times out says exactly how to clean up; the clean-up copes with an
endpoint SageMaker cannot delete yet, and spares a healthy one when asked to."""

from __future__ import annotations

import io

import pytest
import test_endpoints
from botocore.exceptions import ClientError
from recipe_resources import deploy_run, new_tags, slow_endpoints, wait_status
from test_endpoints import FakeClock, client_error  # the same injectable clock and errors

import common
from common.endpoints import delete_endpoint, wait_for_endpoint
from common.errors import EndpointFailedError, EndpointWaitTimeout


class _Meta:
    region_name = "eu-west-1"


class FakeSageMaker(test_endpoints.FakeSageMaker):
    """The waiting tests' fake (DescribeEndpoint walks ``statuses``; none left: not found),
    answering with the ARN and config name, ListTags with ``tags`` (or refusing), and
    DeleteEndpoint refused, as SageMaker refuses it, while the status is in
    ``refuse_delete_while``."""

    meta = _Meta()

    def __init__(self, *statuses, reason=None, tags=None, deny_tags=False,
                 refuse_delete_while=("Creating",)):
        super().__init__(*statuses, reason=reason)
        self.tags = tags or []
        self.deny_tags = deny_tags
        self.refuse_delete_while = refuse_delete_while
        self.deleted = []

    def describe_endpoint(self, EndpointName):
        self.missing = not self.statuses
        answer = super().describe_endpoint(EndpointName)
        return {**answer, "EndpointConfigName": EndpointName,
                "EndpointArn": f"arn:aws:sagemaker:eu-west-1:1:endpoint/{EndpointName}"}

    def list_tags(self, ResourceArn):
        if self.deny_tags:
            raise client_error("AccessDeniedException", 400, "not allowed", "ListTags")
        return {"Tags": self.tags}

    def delete_endpoint(self, EndpointName):
        status = self.statuses[0]
        if status in self.refuse_delete_while:
            raise client_error("ValidationException", 400,
                               f'Cannot update in-progress endpoint "{EndpointName}".',
                               "DeleteEndpoint")
        self.deleted.append(EndpointName)
        self.statuses = ["Deleting"]


def _wait(client, **options):
    clock = FakeClock()
    return wait_for_endpoint("ep", sagemaker_client=client, clock=clock, sleep=clock.sleep,
                             out=io.StringIO(), **options)


TAGS = common.recipe_tags("llama-2-7b-chat-tgi", "20261205-101500").aws()
LOG = ("https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
       "#logsV2:log-groups/log-group/$252Faws$252Fsagemaker$252FEndpoints$252Fep")
COMMAND = ("python -m common.cleanup --recipe llama-2-7b-chat-tgi --run 20261205-101500 "
           "--region eu-west-1 --delete")


def test_a_failure_names_the_reason_the_log_and_the_runs_clean_up():
    with pytest.raises(EndpointFailedError) as caught:
        _wait(FakeSageMaker("Creating", "Failed", reason="Ping failed.", tags=TAGS))
    message = str(caught.value)
    assert message.startswith("Endpoint 'ep' failed: Ping failed.")
    assert caught.value.log_url == f"{LOG} (log group /aws/sagemaker/Endpoints/ep)"
    assert LOG in message and COMMAND in message
    assert "the clean-up cell of the recipe's notebook" in message


def test_a_timeout_says_it_bills_once_up_how_to_wait_and_how_to_give_up():
    with pytest.raises(EndpointWaitTimeout) as caught:
        _wait(FakeSageMaker("Creating", tags=TAGS), timeout_s=60)
    message = str(caught.value)
    assert "still 'Creating' after 60 s" in message and "bills by the hour" in message
    assert "common.wait_for_endpoint('ep', timeout_s=...)" in message
    assert LOG in message and COMMAND in message
    assert "SageMaker refuses to delete an endpoint while it is Creating" in message


def test_without_tags_the_error_gives_the_python_call():
    for client in (FakeSageMaker("Failed"), FakeSageMaker("Failed", deny_tags=True)):
        with pytest.raises(EndpointFailedError) as caught:
            _wait(client)
        assert "common.delete_endpoint_resources('ep')" in str(caught.value)


def test_a_given_clean_up_text_is_used():
    with pytest.raises(EndpointFailedError, match="run the last cell"):
        _wait(FakeSageMaker("Failed", tags=TAGS), clean_up="run the last cell")


def test_deleting_a_creating_endpoint_waits_until_it_settles():
    clock = FakeClock()
    client = FakeSageMaker("Creating", "Creating", "Creating", "Failed")
    out = io.StringIO()
    done = delete_endpoint("ep", sagemaker_client=client, clock=clock, sleep=clock.sleep,
                           out=out)
    assert done == "endpoint ep: deleted" and client.deleted == ["ep"]
    assert "ep is Creating: SageMaker cannot delete it before it is InService or Failed" in (
        out.getvalue())


def test_deleting_gives_up_after_the_wait_and_says_it_may_bill():
    clock = FakeClock()
    with pytest.raises(common.DeploymentError, match="still Creating after 01:40"):
        delete_endpoint("ep", sagemaker_client=FakeSageMaker("Creating"), wait_s=100,
                        clock=clock, sleep=clock.sleep, out=io.StringIO())


def test_the_stand_in_refuses_to_delete_a_creating_endpoint_as_sagemaker_does(local_stack):
    sm = local_stack.client("sagemaker")
    with slow_endpoints(local_stack, 5):
        run = deploy_run(sm, local_stack.role_arn, new_tags("refuse-test-tgi"), wait=False)
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        sm.delete_endpoint(EndpointName=run.name)
    done = common.delete_endpoint_resources(run.name, sagemaker_client=sm, out=io.StringIO(),
                                            poll_s=0.2)
    assert done == [f"endpoint {run.name}: deleted", f"endpoint config {run.name}: deleted",
                    f"model {run.name}: deleted"]


def test_keep_in_service_spares_a_healthy_endpoint_and_deletes_a_failed_one(local_stack):
    sm = local_stack.client("sagemaker")
    healthy = deploy_run(sm, local_stack.role_arn, new_tags("keep-test-tgi"))
    failing = new_tags("keep-test-tgi")
    local_stack.fail_endpoint(f"{failing.recipe}-{failing.run}")
    try:
        failed = deploy_run(sm, local_stack.role_arn, failing)
    finally:
        local_stack.clear_faults()
    assert wait_status(sm, failed.name, {"Failed"}) == "Failed"
    kept = common.delete_endpoint_resources(healthy.name, keep_in_service=True,
                                            sagemaker_client=sm)
    assert kept == [f"endpoint {healthy.name}: InService, kept -- it is healthy and billing; "
                    "the inference notebook uses it, and its clean-up cell deletes it"]
    assert sm.describe_model(ModelName=healthy.name)
    gone = common.delete_endpoint_resources(failed.name, keep_in_service=True,
                                            sagemaker_client=sm)
    assert gone[0] == f"endpoint {failed.name}: deleted"
    common.delete_endpoint_resources(healthy.name, sagemaker_client=sm)
