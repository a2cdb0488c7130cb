"""``python -m common.cleanup`` against the stand-in, with leftovers of every kind.

The test leaves what recipe runs leave -- a running deploy, a run that stopped after its
model, a failed endpoint, a whole scale run (component, scalable target, policies, alarm), a
scalable target whose component is gone, a run's S3 files, a shared weight copy, a folder of
the older S3 layout -- next to resources that are not the recipes' (untagged, or another
alarm), lists them, filters them, and deletes them in the order the APIs require.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from botocore.exceptions import ClientError
from recipe_resources import (
    deploy_run,
    new_tags,
    scale_run,
    slow_endpoints,
    upload_run_files,
    upload_weights,
)

from common.cleanup import KINDS, delete_leftovers, find_leftovers, format_age, main, parse_age
from common.errors import CleanupError
from common.presets import instance_info
from common.scaling import COPY_COUNT_DIMENSION, delete_inference_component

RECIPE = "cleanup-test-tgi"
SCALE_RECIPE = "cleanup-test-tgi-scale"


@pytest.fixture(scope="module")
def clients(local_stack):
    return {name: local_stack.client(name) for name in
            ("sagemaker", "application-autoscaling", "cloudwatch", "s3")}


@pytest.fixture(scope="module")
def bucket(clients):
    name = f"sagemaker-cleanup-{uuid.uuid4().hex[:8]}"
    clients["s3"].create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def leftovers(local_stack, clients, bucket):
    """Everything a few runs left, and some resources that are not the recipes'."""
    sm, s3, role = clients["sagemaker"], clients["s3"], local_stack.role_arn
    running = deploy_run(sm, role, new_tags(RECIPE))
    halfway = deploy_run(sm, role, new_tags(RECIPE), stop_after="model")
    failing = new_tags(RECIPE)
    local_stack.fail_endpoint(f"{failing.recipe}-{failing.run}", "Ping failed.")
    failed = deploy_run(sm, role, failing)
    scaled = scale_run(clients, role, new_tags(SCALE_RECIPE))
    # A scalable target whose component was deleted, as a clean-up that stopped halfway
    # leaves it: registered while the component existed, then the component went.
    orphan = scale_run(clients, role, new_tags(SCALE_RECIPE))
    clients["cloudwatch"].delete_alarms(AlarmNames=[orphan.alarm])
    for policy in orphan.policies:
        clients["application-autoscaling"].delete_scaling_policy(
            PolicyName=policy, ServiceNamespace="sagemaker", ResourceId=orphan.resource_id,
            ScalableDimension=COPY_COUNT_DIMENSION)
    delete_inference_component(orphan.component, sagemaker_client=sm, poll_s=0.2)
    run_files = upload_run_files(s3, bucket, running.tags)
    weights = upload_weights(s3, bucket)
    old_layout = f"llama-2-recipes/{RECIPE}-20250101-000000/"
    s3.put_object(Bucket=bucket, Key=f"{old_layout}code/model.tar.gz", Body=b"old")
    # Not the recipes': no tags, another alarm, an object outside the recipes' folder.
    sm.create_model(ModelName="not-a-recipe", ExecutionRoleArn=role,
                    PrimaryContainer={"Image": "x"})
    clients["cloudwatch"].put_metric_alarm(
        AlarmName="someone-elses-alarm", Namespace="AWS/EC2", MetricName="CPUUtilization",
        Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=90,
        ComparisonOperator="GreaterThanThreshold")
    s3.put_object(Bucket=bucket, Key="elsewhere/file.txt", Body=b"keep")
    local_stack.clear_faults()
    return {"running": running, "halfway": halfway, "failed": failed, "scaled": scaled,
            "orphan": orphan, "run_files": run_files, "weights": weights,
            "old_layout": f"s3://{bucket}/{old_layout}"}


def _rows(report, recipe=None):
    return {(item.kind, item.name) for item in report.leftovers
            if recipe is None or item.recipe == recipe}


def test_every_kind_a_run_leaves_is_listed_with_its_recipe_run_and_price(
        leftovers, bucket, local_stack):
    report = find_leftovers(recipe="cleanup-test-*", buckets=[bucket])
    assert report.notes == []
    running, halfway, failed = leftovers["running"], leftovers["halfway"], leftovers["failed"]
    scaled, orphan = leftovers["scaled"], leftovers["orphan"]
    assert _rows(report, RECIPE) == {
        ("endpoint", running.name), ("endpoint config", running.name), ("model", running.name),
        ("model", halfway.name),
        ("endpoint", failed.name), ("endpoint config", failed.name), ("model", failed.name),
        ("S3 run files", leftovers["run_files"]), ("S3 run files", leftovers["old_layout"]),
    }
    assert _rows(report, SCALE_RECIPE) == {
        ("alarm", scaled.alarm),
        ("scaling policy", scaled.policies[0]), ("scaling policy", scaled.policies[1]),
        ("scalable target", scaled.resource_id), ("scalable target", orphan.resource_id),
        ("inference component", scaled.component),
        ("endpoint", scaled.endpoint), ("endpoint config", scaled.endpoint),
        ("model", scaled.endpoint),
        ("endpoint", orphan.endpoint), ("endpoint config", orphan.endpoint),
        ("model", orphan.endpoint),
    }
    assert [item.kind for item in report.leftovers] == sorted(
        (item.kind for item in report.leftovers), key=KINDS.index), "deletion order"
    by_name = {(item.kind, item.name): item for item in report.leftovers}
    endpoint = by_name[("endpoint", running.name)]
    assert endpoint.run == running.tags.run and endpoint.recipe == RECIPE
    assert endpoint.state == "InService, 1 x ml.g5.2xlarge"
    assert endpoint.usd_per_hour == pytest.approx(instance_info("ml.g5.2xlarge").price_per_hour)
    assert by_name[("endpoint", failed.name)].state == "Failed"
    assert by_name[("endpoint", failed.name)].usd_per_hour == 0.0
    assert by_name[("scalable target", orphan.resource_id)].state.startswith(
        "orphan: its inference component is gone")
    assert by_name[("S3 run files", leftovers["old_layout"])].run == "20250101-000000"
    assert all(item.created is not None for item in report.leftovers)
    table = report.table()
    assert "KIND" in table and "~USD/H" in table and running.name in table
    assert f"about ${report.usd_per_hour:.2f} per hour" in table
    # The shared weights belong to no run: listed only without a recipe or run filter.
    everything = find_leftovers(buckets=[bucket])
    assert ("S3 weights", leftovers["weights"]) in _rows(everything)
    weights = by_name.get(("S3 weights", leftovers["weights"]))
    assert weights is None
    (copy,) = [i for i in everything.leftovers if i.kind == "S3 weights"]
    assert copy.state == "2 objects, 2.0 kB, complete" and copy.recipe == "(shared)"


def test_the_filters_pick_a_run_and_an_age(leftovers, bucket):
    running = leftovers["running"]
    report = find_leftovers(run=running.tags.run, buckets=[bucket])
    assert _rows(report) == {("endpoint", running.name), ("endpoint config", running.name),
                             ("model", running.name), ("S3 run files", leftovers["run_files"])}
    assert find_leftovers(recipe="cleanup-test-*", older_than="1d",
                          buckets=[bucket]).leftovers == []
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    aged = find_leftovers(recipe=RECIPE, older_than=dt.timedelta(days=1), buckets=[bucket],
                          now=later)
    assert _rows(aged) == _rows(find_leftovers(recipe=RECIPE, buckets=[bucket]))


def test_the_command_lists_without_deleting_by_default(leftovers, bucket, clients):
    out = io.StringIO()
    assert main(["--recipe", RECIPE, "--bucket", bucket], out=out) == 0
    printed = out.getvalue()
    assert leftovers["running"].name in printed
    assert "Nothing was deleted: add --delete to delete what is listed." in printed
    clients["sagemaker"].describe_endpoint(EndpointName=leftovers["running"].name)


def test_the_command_deletes_in_order_and_a_second_run_finds_nothing(leftovers, bucket,
                                                                     clients):
    out = io.StringIO()
    status = main(["--recipe", "cleanup-test-*", "--bucket", bucket, "--delete",
                   "--wait", "60"], out=out)
    printed = out.getvalue()
    assert status == 0, printed
    deleted = printed.split("Deleting, in the order the APIs require:\n", 1)[1]
    prefixes = ["alarm ", "scaling policy ", "scalable target ", "inference component ",
                "endpoint config ", "endpoint ", "model ", "S3 prefix "]
    order = ["alarm ", "scaling policy ", "scalable target ", "inference component ",
             "endpoint ", "endpoint config ", "model ", "S3 prefix "]
    seen = [next(p for p in prefixes if line.startswith(p))
            for line in deleted.splitlines() if ": " in line and not line.startswith("Done")]
    assert seen == sorted(seen, key=order.index), seen
    assert set(seen) == set(order)
    assert f"alarm {leftovers['scaled'].alarm}: deleted" in deleted
    assert f"scalable target {leftovers['orphan'].resource_id}: deleted" in deleted
    assert f"inference component {leftovers['scaled'].component}: deleted" in deleted
    assert f"endpoint {leftovers['failed'].name}: deleted" in deleted
    assert "S3 prefix " + leftovers["run_files"] + ": deleted 1 object" in deleted
    assert find_leftovers(recipe="cleanup-test-*", buckets=[bucket]).leftovers == []
    sm = clients["sagemaker"]
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=leftovers["halfway"].name)
    sm.describe_model(ModelName="not-a-recipe")  # not the recipes': untouched
    assert clients["cloudwatch"].describe_alarms(
        AlarmNames=["someone-elses-alarm"])["MetricAlarms"]
    s3 = clients["s3"]
    s3.head_object(Bucket=bucket, Key="elsewhere/file.txt")
    # The shared weights are kept unless asked for.
    (weights,) = [i for i in find_leftovers(buckets=[bucket]).leftovers
                  if i.kind == "S3 weights"]
    assert delete_leftovers([weights], out=io.StringIO()) == [
        f"S3 weights {weights.name}: kept (shared by every run of this model; --weights "
        "deletes them)"]
    done = delete_leftovers([weights], include_weights=True, out=io.StringIO())
    assert done == [f"S3 prefix {weights.name}: deleted 2 objects"]
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert remaining == ["elsewhere/file.txt"], "the manifest went with the weights"


def test_an_endpoint_still_creating_is_waited_for_then_deleted(local_stack, clients):
    with slow_endpoints(local_stack, 6):  # this endpoint takes 6 real seconds to come up
        run = deploy_run(clients["sagemaker"], local_stack.role_arn,
                         new_tags("cleanup-wait-tgi"), wait=False)
    report = find_leftovers(recipe="cleanup-wait-tgi", buckets=[])
    (endpoint,) = [i for i in report.leftovers if i.kind == "endpoint"]
    assert endpoint.state.startswith("Creating")
    out = io.StringIO()
    done = delete_leftovers(report.leftovers, wait_s=60, out=out)
    assert f"endpoint {run.name}: deleted" in done
    assert "SageMaker cannot delete it before it is InService or Failed" in out.getvalue()


def test_a_failure_is_reported_after_the_rest_is_deleted(local_stack, clients):
    from common.cleanup import Leftover

    run = deploy_run(clients["sagemaker"], local_stack.role_arn, new_tags("cleanup-fail-tgi"),
                     stop_after="model")
    bad = Leftover("S3 run files", "s3://bucket-without-prefix", "x", "y", None, "-", 0.0)
    with pytest.raises(CleanupError) as caught:
        delete_leftovers([bad, *find_leftovers(recipe="cleanup-fail-tgi",
                                               buckets=[]).leftovers], out=io.StringIO())
    assert caught.value.done == [f"model {run.name}: deleted"]
    assert caught.value.failures[0][0] == "S3 run files s3://bucket-without-prefix"
    assert "run the clean-up again" in str(caught.value)


def test_the_default_bucket_is_sagemakers(local_stack):
    report = find_leftovers(recipe="nothing-by-this-name")
    assert report.buckets == [f"sagemaker-{local_stack.region}-123456789012"]
    assert report.notes == [] and "Nothing left by the recipes" in report.table()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("45m", 2700), ("2h", 7200),
                                               ("3d", 259200), ("1w", 604800),
                                               ("1d12h", 129600)])
def test_ages_parse(text, seconds):
    assert parse_age(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "2", "2 hours", "h2", "2h x"])
def test_bad_ages_are_refused(text):
    with pytest.raises(ValueError, match="90s, 45m, 2h, 3d, 1w or 1d12h"):
        parse_age(text)


def test_ages_print_in_two_units():
    assert [format_age(dt.timedelta(seconds=s)) for s in (40, 720, 7500, 277200)] == [
        "40s", "12m", "2h 05m", "3d 5h"]


def test_the_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for needle in ("What am I still paying for?", "--delete", "--older-than", "--recipe",
                   "--run", "--weights", "--region", "in the order the APIs"):
        assert needle in text
