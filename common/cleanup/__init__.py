"""What the recipes left behind, and deleting it: "what am I still paying for?" in one command.

:func:`find_leftovers` lists, in one region, everything a recipe notebook created that still
exists -- including the half of a run that failed or was interrupted -- with its recipe, run,
age, state and approximate hourly price; :func:`delete_leftovers` deletes them in the order
the APIs require. ``python -m common.cleanup`` is the command line (see :func:`main`).

How each kind is found:

* **SageMaker** models, endpoint configurations, endpoints and inference components: listed,
  then kept when their tags name a recipe and a run (:mod:`common.tags`; every recipe tags
  what it creates, at creation, so a run that stopped halfway is found too).
* **Scalable targets and scaling policies** (Application Auto Scaling) cannot be tagged with
  the permissions a Studio role usually has: they are found through the inference component
  in their resource id (``inference-component/<name>``). A target left behind after its
  component was deleted is found by the component's name, which the recipes build as
  ``<recipe>-<run>-ic``.
* **CloudWatch alarms**: by the recipe marker in their description (:attr:`RecipeTags.marker`),
  or their ``InferenceComponentName`` dimension naming a recipe's component. The alarms a
  target-tracking policy makes (``TargetTracking-...``) are left to Application Auto Scaling,
  which deletes them with their policy (AWS: do not delete them yourself).
* **S3**: under ``llama-2-recipes/`` in SageMaker's default bucket (and ``bucket=``): each
  run's own uploads (``runs/<endpoint name>/``, labelled by their user metadata) and the
  shared weight copies (``weights/<model id>/<revision>/``, one per model and revision, used
  by every run -- deleted only when asked for explicitly). Folders of the older layout
  (``llama-2-recipes/<endpoint name>/``) are listed as run uploads.

Deletion order: alarms, scaling policies, scalable targets, inference components (waiting
until they are gone), endpoints (waiting while one is still ``Creating``: SageMaker refuses to
delete it then), endpoint configurations, models, S3 objects. Everything that can be deleted
is; the failures are reported together at the end (:class:`~common.errors.CleanupError`).
Prices are approximate on-demand figures (us-east-1) from :mod:`common.presets`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from common.endpoints import (
    default_bucket,
    delete_endpoint,
    delete_if_exists,
    delete_s3_prefix,
    is_not_found,
)
from common.errors import CleanupError, DeploymentError
from common.scaling import COPY_COUNT_DIMENSION
from common.tags import RUN_ID_PATTERN, RecipeTags, read_recipe_tags, resource_recipe_tags
from common.weights import MANIFEST_SUFFIX, RUNS_ROOT, S3_ROOT, WEIGHTS_ROOT, format_bytes

__all__ = [
    "KINDS",
    "Leftover",
    "LeftoverReport",
    "delete_leftovers",
    "find_leftovers",
    "format_age",
    "main",
    "parse_age",
]

KINDS = ("alarm", "scaling policy", "scalable target", "inference component", "endpoint",
         "endpoint config", "model", "S3 run files", "S3 weights")
"""Every kind of resource, in the order :func:`delete_leftovers` deletes them."""

S3_USD_PER_GB_MONTH = 0.023  # S3 Standard, first 50 TB, us-east-1 (approximate)
ALARM_USD_PER_MONTH = {"standard": 0.10, "high resolution": 0.30}  # CloudWatch, us-east-1
HOURS_PER_MONTH = 730
_IC_NAME = re.compile(rf"(?P<recipe>[a-z0-9][a-z0-9-]*?)-(?P<run>{RUN_ID_PATTERN})-ic")
_RUN_NAME = re.compile(rf"(?P<recipe>[a-z0-9][a-z0-9-]*?)-(?P<run>{RUN_ID_PATTERN})")


@dataclass(frozen=True)
class Leftover:
    """One resource a recipe left.

    Attributes:
        kind: one of :data:`KINDS`.
        name: its name (S3: the ``s3://bucket/prefix/``).
        recipe / run: the recipe's slug and the run id (``"(shared)"`` / ``"-"`` for weights).
        created: when it was created (S3: the newest object), or ``None``.
        state: its status, e.g. ``InService``, ``Failed``, ``2 objects, 1.2 kB``.
        usd_per_hour: approximate on-demand price per hour; ``None`` when unknown.
        detail: what deleting it needs (resource id, bucket, keys).
    """

    kind: str
    name: str
    recipe: str
    run: str
    created: dt.datetime | None
    state: str
    usd_per_hour: float | None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class LeftoverReport:
    """What :func:`find_leftovers` found, and what it could not look at.

    Attributes:
        leftovers: the resources, in deletion order.
        notes: what could not be listed (a missing permission, say); a listing with notes is
            incomplete.
        region / buckets: where it looked.
    """

    leftovers: list[Leftover]
    notes: list[str]
    region: str
    buckets: list[str]

    @property
    def usd_per_hour(self) -> float:
        """The approximate total per hour of what is listed (unknown prices count 0)."""
        return sum(item.usd_per_hour or 0.0 for item in self.leftovers)

    def table(self, now: dt.datetime | None = None) -> str:
        """The listing as a plain-text table, with the total and the notes."""
        now = now or dt.datetime.now(dt.timezone.utc)
        rows = [("KIND", "NAME", "RECIPE", "RUN", "AGE", "STATE", "~USD/H")]
        for item in self.leftovers:
            price = "?" if item.usd_per_hour is None else f"{item.usd_per_hour:.2f}"
            age = format_age(now - item.created) if item.created else "?"
            rows.append((item.kind, item.name, item.recipe, item.run, age, item.state, price))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                 .rstrip() for row in rows]
        where = f"region {self.region}" + (f", bucket {', '.join(self.buckets)}"
                                            if self.buckets else "")
        if not self.leftovers:
            lines = [f"Nothing left by the recipes in {where}."]
        else:
            lines.append(f"{len(self.leftovers)} resource(s) in {where}; about "
                         f"${self.usd_per_hour:.2f} per hour in all (endpoint instances; S3 and "
                         "alarms cost cents a month).")
        lines += [f"Not listed: {note}" for note in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- ages


def parse_age(text: str) -> dt.timedelta:
    """Parse an age such as ``90s``, ``45m``, ``2h``, ``3d``, ``1w`` or ``1d12h``.

    Raises:
        ValueError: for anything else (the message shows the accepted forms).
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ValueError(f"an age looks like 90s, 45m, 2h, 3d, 1w or 1d12h; got {text!r}")
    return dt.timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def format_age(age: dt.timedelta) -> str:
    """Return an age in its two largest units, e.g. ``3d 4h``, ``2h 05m``, ``12m``, ``40s``."""
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else f"{secs}s"


# --------------------------------------------------------------------------- finding


def _aware(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return None


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def _instance_price(instance_type: str | None) -> float | None:
    from common.errors import PresetError
    from common.presets import instance_info

    if not instance_type:
        return None
    try:
        return instance_info(instance_type).price_per_hour
    except PresetError:
        return None


class _Finder:
    """One listing: the clients, what was found, and the notes."""

    def __init__(self, session: Any, region: str, buckets: list[str] | None) -> None:
        self.session = session
        self.region = region
        self.sm = session.client("sagemaker", region_name=region)
        self.found: list[Leftover] = []
        self.notes: list[str] = []
        self.components: dict[str, Leftover] = {}
        self.buckets = buckets

    def guarded(self, what: str, step: Callable[[], None]) -> None:
        """Run one listing step; a failure becomes a note (the listing is then incomplete)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            step()
        except (ClientError, BotoCoreError) as exc:
            self.notes.append(f"{what} ({type(exc).__name__}: {exc})")

    def tags_of(self, arn: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return resource_recipe_tags(self.sm, arn)
        except ClientError as exc:
            if is_not_found(exc):  # deleted between the listing and now
                return None
            raise

    def sagemaker(self) -> None:
        for summary in _pages(self.sm, "list_models", "Models"):
            tags = self.tags_of(summary["ModelArn"])
            if tags:
                self.found.append(Leftover("model", summary["ModelName"], tags.recipe,
                                           tags.run, _aware(summary.get("CreationTime")),
                                           "-", 0.0))
        for summary in _pages(self.sm, "list_endpoint_configs", "EndpointConfigs"):
            tags = self.tags_of(summary["EndpointConfigArn"])
            if tags:
                self.found.append(Leftover(
                    "endpoint config", summary["EndpointConfigName"], tags.recipe, tags.run,
                    _aware(summary.get("CreationTime")), "-", 0.0))
        for summary in _pages(self.sm, "list_endpoints", "Endpoints"):
            tags = self.tags_of(summary["EndpointArn"])
            if tags:
                self.found.append(self.endpoint(summary, tags))
        for summary in _pages(self.sm, "list_inference_components", "InferenceComponents"):
            tags = self.tags_of(summary["InferenceComponentArn"])
            if tags:
                item = Leftover("inference component", summary["InferenceComponentName"],
                                tags.recipe, tags.run, _aware(summary.get("CreationTime")),
                                f"{summary.get('InferenceComponentStatus')} (on "
                                f"{summary.get('EndpointName')})", 0.0)
                self.components[item.name] = item
                self.found.append(item)

    def endpoint(self, summary: dict[str, Any], tags: Any) -> Leftover:
        """An endpoint with its instances' price (none while it fails or is deleted)."""
        from botocore.exceptions import ClientError

        name, status = summary["EndpointName"], str(summary.get("EndpointStatus"))
        price: float | None = 0.0
        state = status
        if status not in ("Failed", "Deleting", "OutOfService"):
            try:
                described = self.sm.describe_endpoint(EndpointName=name)
                config = self.sm.describe_endpoint_config(
                    EndpointConfigName=described["EndpointConfigName"])
            except ClientError as exc:
                return Leftover("endpoint", name, tags.recipe, tags.run,
                                _aware(summary.get("CreationTime")), status, None,
                                {"why": f"its configuration could not be read: {exc}"})
            counts = {v.get("VariantName"): v.get("CurrentInstanceCount")
                      for v in described.get("ProductionVariants", [])}
            price, instances = 0.0, []
            for variant in config.get("ProductionVariants", []):
                count = counts.get(variant.get("VariantName"))
                count = variant.get("InitialInstanceCount", 0) if count is None else count
                each = _instance_price(variant.get("InstanceType"))
                instances.append(f"{count} x {variant.get('InstanceType')}")
                price = None if price is None or each is None else price + each * count
            state = f"{status}, {', '.join(instances)}" if instances else status
        return Leftover("endpoint", name, tags.recipe, tags.run,
                        _aware(summary.get("CreationTime")), state, price)

    def alarms(self) -> None:
        cloudwatch = self.session.client("cloudwatch", region_name=self.region)
        for alarm in _pages(cloudwatch, "describe_alarms", "MetricAlarms"):
            tags = read_recipe_tags(alarm.get("AlarmDescription") or "")
            component = next((d["Value"] for d in alarm.get("Dimensions", [])
                              if d.get("Name") == "InferenceComponentName"), None)
            managed = str(alarm.get("AlarmName", "")).startswith("TargetTracking-")
            if managed:  # Application Auto Scaling's own: they go with their policy
                continue
            if tags is None and component in self.components:
                owner = self.components[component]
                tags = RecipeTags(owner.recipe, owner.run)
            if tags is None:
                continue
            resolution = "high resolution" if int(alarm.get("Period") or 60) < 60 \
                else "standard"
            self.found.append(Leftover(
                "alarm", alarm["AlarmName"], tags.recipe, tags.run,
                _aware(alarm.get("AlarmConfigurationUpdatedTimestamp")),
                str(alarm.get("StateValue", "-")),
                ALARM_USD_PER_MONTH[resolution] / HOURS_PER_MONTH))

    def scaling(self) -> None:
        autoscaling = self.session.client("application-autoscaling", region_name=self.region)
        targets = [t for t in _pages(autoscaling, "describe_scalable_targets", "ScalableTargets",
                                     ServiceNamespace="sagemaker")
                   if t.get("ScalableDimension") == COPY_COUNT_DIMENSION]
        for target in targets:
            resource_id = str(target["ResourceId"])
            component = resource_id.removeprefix("inference-component/")
            owner = self.components.get(component)
            if owner is not None:
                recipe, run, state = owner.recipe, owner.run, "registered"
            else:
                parsed = _IC_NAME.fullmatch(component)
                if parsed is None or self.component_exists(component):
                    continue  # not a recipe's (or an untagged component's)
                recipe, run = parsed["recipe"], parsed["run"]
                state = "orphan: its inference component is gone"
            detail = {"resource_id": resource_id}
            self.found.append(Leftover(
                "scalable target", resource_id, recipe, run,
                _aware(target.get("CreationTime")),
                f"{state}, copies {target.get('MinCapacity')}-{target.get('MaxCapacity')}",
                0.0, detail))
            for policy in _pages(autoscaling, "describe_scaling_policies", "ScalingPolicies",
                                 ServiceNamespace="sagemaker", ResourceId=resource_id,
                                 ScalableDimension=COPY_COUNT_DIMENSION):
                self.found.append(Leftover(
                    "scaling policy", policy["PolicyName"], recipe, run,
                    _aware(policy.get("CreationTime")), str(policy.get("PolicyType", "-")),
                    0.0, detail))

    def component_exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.sm.describe_inference_component(InferenceComponentName=name)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def s3(self) -> None:
        s3 = self.session.client("s3", region_name=self.region)
        if self.buckets is None:
            self.buckets = [default_bucket(self.session, self.region)]
        for bucket in self.buckets:
            self.guarded(f"S3 objects under s3://{bucket}/{S3_ROOT}/",
                         lambda bucket=bucket: self.bucket(s3, bucket))

    def bucket(self, s3: Any, bucket: str) -> None:
        from botocore.exceptions import ClientError

        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        try:
            for item in _pages(s3, "list_objects_v2", "Contents", Bucket=bucket,
                               Prefix=f"{S3_ROOT}/"):
                groups.setdefault(_s3_group(item["Key"]), []).append(item)
        except ClientError as exc:
            if is_not_found(exc):  # no such bucket
                return
            raise
        for (kind, prefix), items in sorted(groups.items()):
            size = sum(int(item.get("Size", 0)) for item in items)
            newest = max((_aware(item.get("LastModified")) for item in items
                          if item.get("LastModified")), default=None)
            price = size / 1e9 * S3_USD_PER_GB_MONTH / HOURS_PER_MONTH
            keys = [item["Key"] for item in items]
            files = [k for k in keys if not k.endswith(MANIFEST_SUFFIX)]
            state = f"{len(files)} object{'s' if len(files) != 1 else ''}, {format_bytes(size)}"
            detail = {"bucket": bucket, "prefix": prefix,
                      "extra_keys": [k for k in keys if not k.startswith(prefix)]}
            name = f"s3://{bucket}/{prefix}"
            if kind == "S3 weights":
                complete = any(k.endswith(MANIFEST_SUFFIX) for k in keys)
                self.found.append(Leftover(
                    kind, name, "(shared)", "-", newest,
                    f"{state}, {'complete' if complete else 'incomplete'}", price, detail))
                continue
            tags = read_recipe_tags(s3.head_object(Bucket=bucket, Key=keys[0])
                                    .get("Metadata", {}))
            parsed = _RUN_NAME.fullmatch(prefix.rstrip("/").rsplit("/", 1)[-1])
            if tags is None and parsed is None:
                continue
            recipe, run = (tags.recipe, tags.run) if tags else (parsed["recipe"], parsed["run"])
            self.found.append(Leftover(kind, name, recipe, run, newest, state, price, detail))


def _s3_group(key: str) -> tuple[str, str]:
    """(kind, prefix) of an object under ``llama-2-recipes/``."""
    if key.startswith(f"{WEIGHTS_ROOT}/"):
        parts = key[len(WEIGHTS_ROOT) + 1:].split("/")
        if len(parts) == 3 and parts[2].endswith(MANIFEST_SUFFIX):  # owner/model/rev.manifest
            parts[2] = parts[2].removesuffix(MANIFEST_SUFFIX)
        return "S3 weights", f"{WEIGHTS_ROOT}/{'/'.join(parts[:3])}/"
    if key.startswith(f"{RUNS_ROOT}/"):
        return "S3 run files", f"{RUNS_ROOT}/{key[len(RUNS_ROOT) + 1:].split('/')[0]}/"
    return "S3 run files", f"{S3_ROOT}/{key[len(S3_ROOT) + 1:].split('/')[0]}/"  # old layout


def _selected(item: Leftover, *, recipe: str | None, run: str | None,
              older_than: dt.timedelta | None, now: dt.datetime) -> bool:
    if item.kind == "S3 weights" and (recipe or run):
        return False  # shared by runs: listed only when no recipe or run is picked
    if recipe and not fnmatch.fnmatchcase(item.recipe, recipe):
        return False
    if run and not fnmatch.fnmatchcase(item.run, run):
        return False
    return older_than is None or (item.created is not None
                                  and now - item.created >= older_than)


def find_leftovers(
    *,
    session: Any = None,
    region: str | None = None,
    recipe: str | None = None,
    run: str | None = None,
    older_than: dt.timedelta | str | None = None,
    buckets: Iterable[str] | None = None,
    now: dt.datetime | None = None,
) -> LeftoverReport:
    """List what the recipes left in one region (see the module's docstring).

    Args:
        session: a ``boto3.Session`` (default: a new one).
        region: the region (default: the session's).
        recipe / run: ``fnmatch`` patterns, e.g. ``llama-2-7b-*``, ``20261205-*``. With either,
            the shared weight copies are left out (they belong to no run).
        older_than: only what is at least this old (a timedelta or :func:`parse_age` text).
        buckets: the S3 buckets to look in (default: SageMaker's default bucket,
            ``sagemaker-<region>-<account>``).
        now: the time ages are measured from (default: now).

    Returns:
        A :class:`LeftoverReport`; its ``notes`` name what could not be listed.

    Raises:
        ValueError: a region cannot be found, or ``older_than`` does not parse.
    """
    import boto3

    session = session or boto3.Session(region_name=region)
    region = region or session.region_name
    if not region:
        raise ValueError("no region: pass --region (or region=), or set AWS_DEFAULT_REGION")
    if isinstance(older_than, str):
        older_than = parse_age(older_than)
    now = now or dt.datetime.now(dt.timezone.utc)
    finder = _Finder(session, region, None if buckets is None else list(buckets))
    finder.guarded("SageMaker models, endpoint configurations, endpoints and inference "
                   "components", finder.sagemaker)
    finder.guarded("Application Auto Scaling targets and policies", finder.scaling)
    finder.guarded("CloudWatch alarms", finder.alarms)
    finder.guarded("S3 (the default bucket's account)", finder.s3)
    chosen = [item for item in finder.found
              if _selected(item, recipe=recipe, run=run, older_than=older_than, now=now)]
    chosen.sort(key=lambda item: (KINDS.index(item.kind), item.recipe, item.run, item.name))
    return LeftoverReport(chosen, finder.notes, region, finder.buckets or [])


# --------------------------------------------------------------------------- deleting


def delete_leftovers(
    leftovers: Iterable[Leftover],
    *,
    session: Any = None,
    region: str | None = None,
    include_weights: bool = False,
    wait_s: float = 3600,
    out: TextIO | None = None,
) -> list[str]:
    """Delete ``leftovers`` in the order the APIs require; report each.

    Args:
        leftovers: what :func:`find_leftovers` listed (or a part of it).
        session / region: as :func:`find_leftovers`.
        include_weights: delete the shared weight copies too (``S3 weights``); otherwise they
            are kept and reported as kept.
        wait_s: how long to wait for an inference component to go, or for an endpoint that
            is still ``Creating`` to settle before it can be deleted.
        out: where progress lines go (default ``sys.stdout``).

    Returns:
        One line per resource (``"endpoint x: deleted"``, ``"... already gone"``, ``"... kept"``).

    Raises:
        CleanupError: some could not be deleted (all others were); lists them with reasons.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from common.scaling import delete_alarms, delete_inference_component

    session = session or boto3.Session(region_name=region)
    region = region or session.region_name
    stream = out if out is not None else sys.stdout
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, region_name=region)
        return clients[service]

    def delete(item: Leftover) -> str:
        if item.kind == "alarm":
            return delete_alarms(client("cloudwatch"), [item.name])[0]
        if item.kind == "scaling policy":
            return delete_if_exists("scaling policy", item.name, lambda: client(
                "application-autoscaling").delete_scaling_policy(
                    PolicyName=item.name, ServiceNamespace="sagemaker",
                    ResourceId=item.detail["resource_id"], ScalableDimension=COPY_COUNT_DIMENSION))
        if item.kind == "scalable target":
            return delete_if_exists("scalable target", item.name, lambda: client(
                "application-autoscaling").deregister_scalable_target(
                    ServiceNamespace="sagemaker", ResourceId=item.detail["resource_id"],
                    ScalableDimension=COPY_COUNT_DIMENSION))
        if item.kind == "inference component":
            return delete_inference_component(item.name, sagemaker_client=client("sagemaker"),
                                              timeout_s=wait_s)
        if item.kind == "endpoint":
            return delete_endpoint(item.name, sagemaker_client=client("sagemaker"),
                                   wait_s=wait_s, out=stream)
        if item.kind == "endpoint config":
            return delete_if_exists("endpoint config", item.name, lambda: client(
                "sagemaker").delete_endpoint_config(EndpointConfigName=item.name))
        if item.kind == "model":
            return delete_if_exists("model", item.name,
                             lambda: client("sagemaker").delete_model(ModelName=item.name))
        if item.kind == "S3 weights" and not include_weights:
            return (f"S3 weights {item.name}: kept (shared by every run of this model; "
                    "--weights deletes them)")
        done = delete_s3_prefix(item.name, s3_client=client("s3"))
        for key in item.detail.get("extra_keys", []):  # a weight copy's manifest
            client("s3").delete_object(Bucket=item.detail["bucket"], Key=key)
        return done

    done: list[str] = []
    failures: list[tuple[str, str]] = []
    for item in sorted(leftovers, key=lambda item: KINDS.index(item.kind)):
        try:
            line = delete(item)
        except (ClientError, BotoCoreError, DeploymentError) as exc:
            failures.append((f"{item.kind} {item.name}", f"{type(exc).__name__}: {exc}"))
            stream.write(f"{item.kind} {item.name}: FAILED ({type(exc).__name__})\n")
            continue
        done.append(line)
        stream.write(line + "\n")
        stream.flush()
    if failures:
        raise CleanupError(failures, done)
    return done


# --------------------------------------------------------------------------- command line


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m common.cleanup",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "What am I still paying for? Lists everything the recipe notebooks created in one\n"
            "region that still exists -- endpoints, endpoint configurations, models, inference\n"
            "components, scaling policies and targets, alarms, S3 uploads -- with its recipe,\n"
            "run, age, state and approximate hourly price, including what a failed or\n"
            "interrupted run left. With --delete it deletes them, in the order the APIs\n"
            "require (alarms, policies, targets, components, endpoints, configurations,\n"
            "models, S3). The shared weight copies (one per model and revision, used by every\n"
            "LMI run) are deleted only with --weights."),
        epilog=(
            "examples:\n"
            "  python -m common.cleanup                      list everything, default region\n"
            "  python -m common.cleanup --older-than 2h      only what is 2 hours old or more\n"
            "  python -m common.cleanup --recipe 'llama-2-7b-*' --delete\n"
            "  python -m common.cleanup --run 20261205-101500 --delete\n"
            "  python -m common.cleanup --weights --delete   everything, shared weights too\n"
            "\nexit status: 0 done; 1 something could not be listed or deleted; 2 bad usage."))
    parser.add_argument("--region", help="the AWS region (default: your configured one)")
    parser.add_argument("--recipe", metavar="PATTERN",
                        help="only this recipe, e.g. llama-2-7b-chat-tgi or 'llama-2-*-lmi*'")
    parser.add_argument("--run", metavar="PATTERN",
                        help="only this run id (YYYYmmdd-HHMMSS), or a pattern such as "
                             "'20261205-*'")
    parser.add_argument("--older-than", metavar="AGE", type=parse_age,
                        help="only what is at least this old: 90s, 45m, 2h, 3d, 1w, 1d12h")
    parser.add_argument("--bucket", action="append", metavar="BUCKET",
                        help="look in this S3 bucket (repeatable; default: SageMaker's default "
                             "bucket, sagemaker-<region>-<account>)")
    parser.add_argument("--delete", action="store_true",
                        help="delete what is listed (without it, nothing is changed)")
    parser.add_argument("--weights", action="store_true",
                        help="with --delete: delete the shared weight copies too")
    parser.add_argument("--wait", type=float, default=3600, metavar="SECONDS",
                        help="with --delete: how long to wait for an endpoint that is still "
                             "Creating, or a component being deleted (default 3600)")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``python -m common.cleanup``; return the exit status (see ``--help``)."""
    stream = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)
    try:
        report = find_leftovers(region=args.region, recipe=args.recipe, run=args.run,
                                older_than=args.older_than, buckets=args.bucket)
    except ValueError as exc:
        print(f"python -m common.cleanup: {exc}", file=sys.stderr)
        return 2
    stream.write(report.table() + "\n")
    if not args.delete or not report.leftovers:
        if report.leftovers and not args.delete:
            stream.write("Nothing was deleted: add --delete to delete what is listed.\n")
        return 1 if report.notes else 0
    stream.write("\nDeleting, in the order the APIs require:\n")
    started = time.monotonic()
    try:
        delete_leftovers(report.leftovers, region=report.region,
                         include_weights=args.weights, wait_s=args.wait, out=stream)
    except CleanupError as exc:
        stream.write(f"\n{exc}\n")
        return 1
    stream.write(f"Done in {format_age(dt.timedelta(seconds=time.monotonic() - started))}.\n")
    return 1 if report.notes else 0
