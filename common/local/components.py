"""Inference components in the stand-in: life cycle, placement, instances, and routing.

moto 5.2.5 has no inference-component operation, rejects an endpoint-config variant without
``ModelName`` (a ``KeyError`` in its validation) and drops ``ExecutionRoleArn``. This module
adds what SageMaker does, patched into moto's classes in this process like the control
plane's other fixes (:class:`ComponentManager.install`), and gives the runtime server a
router (:meth:`ComponentManager.admit`) that sends each request to a copy.

The model, in simulated seconds on the stand-in's one clock (:mod:`common.local.clock`):

* An endpoint whose variant has no ``ModelName`` hosts components. Its
  ``ManagedInstanceScaling`` bounds the instances (``MinInstanceCount`` ..
  ``MaxInstanceCount``); it starts with ``InitialInstanceCount`` instances.
* Each copy needs ``ceil(NumberOfAcceleratorDevicesRequired)`` accelerators (1 when not
  given) and ``MinMemoryRequiredInMb`` of memory on one instance; an instance has the
  accelerators of its type (:data:`ACCELERATORS`) and a schedulable memory pool well below its
  host memory (:func:`memory_pool_mb`). A copy that could never fit one instance fails the
  component at once with SageMaker's "not enough hardware resources" text. A copy goes on an
  instance with room, else on a new instance (ready after
  :attr:`Timings.instance_provision_s`) while the maximum *and the account's instance quota*
  allow, else it stays *pending* (``DesiredCopyCount`` > copies placed) until room appears; a
  copy held back by the quota shows on DescribeEndpoint (the variant's ``VariantStatus``
  message) and in the Application Auto Scaling activity that asked for it.
* A container built for a newer CUDA than the host's driver (:mod:`common.local.drivers`)
  never serves: the component goes ``Failed`` after its start-up health-check timeout.
* A placed copy serves after :attr:`Timings.copy_startup_s` (from when its instance is up).
  ``CurrentCopyCount`` counts the copies that serve.
* An instance without copies is released after :attr:`Timings.instance_idle_release_s`,
  never below ``MinInstanceCount``.
* Status: ``Creating`` -> ``InService`` once the copies that can be placed serve (or at once
  for zero copies); ``Updating`` while a new copy count or specification is applied;
  ``Deleting`` for :attr:`Timings.component_delete_s`; ``Failed`` with a ``FailureReason``
  when a copy can never fit an instance, or for components matched by ``fail_components``.

Routing: ``InferenceComponentName`` picks the component; each copy serves at most
``concurrency`` streams at once and further requests wait in the component's queue (first
come, first served) for the copy with the fewest outstanding requests (the
``LEAST_OUTSTANDING_REQUESTS`` routing). A stream holds its place until its last token.
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import logging
import math
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.local.clock import Clock

__all__ = [
    "ACCELERATORS",
    "COMPONENT_HEADER",
    "DEFAULT_COPY_CONCURRENCY",
    "NOT_ENOUGH_HARDWARE_MESSAGE",
    "NO_CAPACITY_MESSAGE",
    "SCHEDULABLE_MEMORY_SHARE",
    "Admission",
    "ComponentManager",
    "CopyPace",
    "InvocationRejected",
    "Timings",
    "accelerators_of",
    "copy_concurrency_from",
    "memory_of",
    "memory_pool_mb",
]

logger = logging.getLogger("common.local.scaling")

COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
"""The header botocore sends for ``InferenceComponentName`` (service model
``sagemaker-runtime``)."""

NO_CAPACITY_MESSAGE = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may "
    "be in-progress (if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)
HEADER_REQUIRED_MESSAGE = (
    "Inference Component Name header is required for endpoints to which you plan to deploy "
    "inference components. Please include Inference Component Name header or consider using "
    "SageMaker models."
)
HEADER_NOT_ALLOWED_MESSAGE = (
    "Inference Component Name header is not allowed for endpoints to which you dont plan to "
    "deploy inference components. Please remove the Inference Component Name header and try "
    "again."
)
NOT_SUPPORTED_MESSAGE = "Inference Components are not supported in this Endpoint."
NOT_ENOUGH_HARDWARE_MESSAGE = (
    "There is not enough hardware resources on the instances for this endpoint to create a "
    "copy of the inference component."
)
"""SageMaker's refusal of a copy larger than one instance's schedulable resources (quoted in a
public deployment guide that measured it on ml.g5.xlarge: 1,024 MB accepted, 4,096 MB
refused)."""

SCHEDULABLE_MEMORY_SHARE = 0.125
"""The share of an instance's host memory that inference-component copies can reserve
(``MinMemoryRequiredInMb``) in the stand-in: an ml.g5.xlarge (16 GiB) then schedules 2,048 MB,
inside what was measured there (1,024 MB accepted, 4,096 MB refused). AWS does not publish the
pool; the SageMaker SDK defaults every copy to 1,024 MB for that reason."""

DEFAULT_COPY_CONCURRENCY = 8
"""Streams one copy serves at once when neither the stand-in's option nor the container's
settings say (TGI sizes its batch from free GPU memory; about 8 full Llama 2 7B requests fit
an A10G's KV cache)."""

VLLM_DEFAULT_MAX_NUM_SEQS = 256  # vLLM EngineArgs.max_num_seqs, LMI's default rolling batch

_ACCELERATORS_BY_SIZE = {
    # AWS accelerated-computing instance pages: GPUs (Neuron devices for inf2/trn1).
    "g5": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
           "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
           "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6e": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
            "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "p4d": {"24xlarge": 8}, "p4de": {"24xlarge": 8}, "p5": {"48xlarge": 8},
    "p5e": {"48xlarge": 8},
    "inf2": {"xlarge": 1, "8xlarge": 1, "24xlarge": 6, "48xlarge": 12},
    "trn1": {"2xlarge": 1, "32xlarge": 16},
}
ACCELERATORS: dict[str, int] = {
    f"ml.{family}.{size}": count
    for family, sizes in _ACCELERATORS_BY_SIZE.items() for size, count in sizes.items()
}
"""Accelerators (GPUs, or Neuron devices) per instance type."""


def memory_pool_mb(instance_type: str) -> float:
    """Return the memory (MB) copies can reserve on one instance of ``instance_type``:
    :data:`SCHEDULABLE_MEMORY_SHARE` of its host memory (``common.presets.INSTANCE_TYPES``),
    or no limit for a type that table does not know."""
    from common.presets import INSTANCE_TYPES

    known = INSTANCE_TYPES.get(instance_type)
    if known is None:
        return math.inf
    return known.memory_gib * 1024 * SCHEDULABLE_MEMORY_SHARE


def memory_of(specification: dict[str, Any]) -> float:
    """``MinMemoryRequiredInMb`` of a component specification (0 when not given)."""
    requirements = specification.get("ComputeResourceRequirements") or {}
    return float(requirements.get("MinMemoryRequiredInMb") or 0)


def accelerators_of(instance_type: str) -> int:
    """Return the accelerators of ``instance_type`` (1 for a type not in :data:`ACCELERATORS`,
    which the stand-in then treats as one slot per instance)."""
    return ACCELERATORS.get(instance_type, 1)


@dataclass(frozen=True)
class Timings:
    """The simulated durations (seconds on the stand-in's clock) of the scaling model.

    Attributes:
        instance_provision_s: a new instance takes this long to come up ("several
            minutes" in AWS's scale-to-zero guidance).
        copy_startup_s: a placed copy loads its model this long before it serves.
        instance_idle_release_s: an instance without copies is released after this long
            (~10 minutes after the copies reach zero, per AWS's guidance).
        component_delete_s: how long a deleted component stays ``Deleting``.
    """

    instance_provision_s: float = 240.0
    copy_startup_s: float = 60.0
    instance_idle_release_s: float = 600.0
    component_delete_s: float = 10.0


@dataclass(frozen=True)
class CopyPace:
    """A floor on how fast one copy's streams go, in real seconds.

    The token ``i`` (from 0) of a stream is not sent before ``ttft_s + i / tokens_per_s``
    after the stream got its place on a copy; a backend that is slower sets the pace itself.
    ``None`` leaves that part to the backend.
    """

    ttft_s: float | None = None
    tokens_per_s: float | None = None

    def active(self) -> bool:
        """Whether this pace delays anything."""
        return bool(self.ttft_s) or bool(self.tokens_per_s)


class InvocationRejected(Exception):
    """The runtime must answer with this error (SageMaker's status, code and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- state


@dataclass(eq=False)
class _Instance:
    id: str
    ready_at: float
    accelerators: int
    used: int = 0
    idle_since: float | None = None
    memory_mb: float = math.inf
    memory_used: float = 0.0

    def fits(self, accelerators: int, memory_mb: float) -> bool:
        return (self.accelerators - self.used >= accelerators
                and self.memory_mb - self.memory_used >= memory_mb)

    def ready(self, now: float) -> bool:
        return now >= self.ready_at


@dataclass(eq=False)
class _Copy:
    id: str
    instance: _Instance
    ready_at: float
    needs: int
    memory_mb: float = 0.0
    active: int = 0
    retired: bool = False
    announced: bool = False

    def serving(self, now: float) -> bool:
        return not self.retired and now >= self.ready_at


@dataclass(eq=False)
class _Fleet:
    """The instances of one component-hosting endpoint variant."""

    endpoint_name: str
    variant_name: str
    instance_type: str
    min_instances: int
    max_instances: int
    scaling: dict[str, Any]
    routing: dict[str, Any]
    instances: list[_Instance] = field(default_factory=list)
    ami_version: str | None = None


@dataclass(eq=False)
class ComponentRecord:
    """The stand-in's state of one inference component: what ``CreateInferenceComponent`` set
    (endpoint, variant, specification, container image and environment), its status and
    copies, the streams waiting for a copy, and the load figures the metric publisher drains.
    :class:`ComponentManager` owns and changes it (under its lock)."""

    name: str
    arn: str
    endpoint_name: str
    endpoint_arn: str
    variant_name: str
    specification: dict[str, Any]
    image: str
    environment: dict[str, str]
    concurrency: int
    needs: int
    desired: int
    status: str
    created: datetime
    modified: datetime
    due_at: float = 0.0
    failure_reason: str | None = None
    doomed: tuple[str, float] | None = None  # (FailureReason, when): its container cannot start
    blocked: str | None = None  # why pending copies get no new instance (the account's quota)
    blocked_since: datetime | None = None
    pending_spec: tuple[dict[str, Any], str, dict[str, str], int, int] | None = None
    copies: list[_Copy] = field(default_factory=list)
    waiting: deque[_Ticket] = field(default_factory=deque)
    # metric accounting (drained by the autoscaling publisher)
    load_area: float = 0.0
    load_since: float = 0.0
    gauge_start: float = 0.0
    invocations: int = 0
    no_capacity: list[float] = field(default_factory=list)

    def live(self) -> list[_Copy]:
        return [c for c in self.copies if not c.retired]

    def serving(self, now: float) -> list[_Copy]:
        return [c for c in self.copies if c.serving(now)]

    def load(self) -> int:
        return sum(c.active for c in self.copies) + len(self.waiting)


@dataclass(eq=False)
class _Ticket:
    copy: _Copy | None = None
    failed: InvocationRejected | None = None


# --------------------------------------------------------------------------- settings


def copy_concurrency_from(environment: dict[str, str], image: str,
                          serving_properties: dict[str, str] | None = None) -> int:
    """Return how many streams one copy serves at once, from the container's settings.

    * LMI (``djl-inference`` images): ``OPTION_MAX_ROLLING_BATCH_SIZE`` or
      ``OPTION_MAX_NUM_SEQS`` in the environment, else ``option.max_rolling_batch_size`` in
      ``serving.properties``, else vLLM's default ``max_num_seqs`` (256).
    * TGI: ``MAX_BATCH_TOTAL_TOKENS // MAX_TOTAL_TOKENS`` (full-length requests that fit the
      batch's token budget) when both are set, else :data:`DEFAULT_COPY_CONCURRENCY`.
    * anything else: :data:`DEFAULT_COPY_CONCURRENCY`.
    """
    def number(value: str | None) -> int | None:
        try:
            return int(str(value).strip()) if value is not None else None
        except ValueError:
            return None

    if "djl-inference" in image or "djl-lmi" in image:
        for name in ("OPTION_MAX_ROLLING_BATCH_SIZE", "OPTION_MAX_NUM_SEQS"):
            if (value := number(environment.get(name))) and value > 0:
                return value
        value = number((serving_properties or {}).get("option.max_rolling_batch_size"))
        return value if value and value > 0 else VLLM_DEFAULT_MAX_NUM_SEQS
    total = number(environment.get("MAX_BATCH_TOTAL_TOKENS"))
    per_request = number(environment.get("MAX_TOTAL_TOKENS"))
    if total and per_request and total >= per_request:
        return total // per_request
    return DEFAULT_COPY_CONCURRENCY


def serving_properties_from_s3(account_id: str, artifact_url: str | None) -> dict[str, str] | None:
    """Return the ``serving.properties`` keys and values of the ``model.tar.gz`` at
    ``artifact_url`` in moto's S3 (account ``account_id``), or ``None`` when the URL is not an
    ``s3://...tar.gz``/``.tgz``, the object is missing, is not a readable gzip tar, or holds no
    ``serving.properties``. Raises nothing for a missing or broken archive.
    """
    if not artifact_url or not artifact_url.startswith("s3://") or not artifact_url.endswith(
            (".tar.gz", ".tgz")):
        return None
    from moto.s3.exceptions import MissingBucket, MissingKey
    from moto.s3.models import s3_backends

    bucket, _, key = artifact_url[len("s3://"):].partition("/")
    try:
        stored = s3_backends[account_id]["aws"].get_object(bucket, key)
    except (MissingBucket, MissingKey):
        return None
    if stored is None:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(stored.value), mode="r:gz") as archive:
            member = next((m for m in archive.getmembers()
                           if m.name.rsplit("/", 1)[-1] == "serving.properties"), None)
            if member is None:
                return None
            text = archive.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
    except (tarfile.TarError, OSError):
        return None
    properties = {}
    for line in text.splitlines():
        key_, sep, value = line.partition("=")
        if sep and not key_.lstrip().startswith("#"):
            properties[key_.strip()] = value.strip()
    return properties


# --------------------------------------------------------------------------- the manager


class ComponentManager:
    """Inference components, the instances that host them, and the router to their copies.

    Args:
        clock: the stand-in's clock (simulated seconds).
        lock: the control plane's lock (every state change happens under it).
        timings: the simulated durations (:class:`Timings`).
        copy_concurrency: streams per copy for every component (``None``: from the
            container's settings, :func:`copy_concurrency_from`).
        copy_pace: a floor on each copy's streams' pace, in real seconds (:class:`CopyPace`).
        fail_components: component names or ``fnmatch`` patterns that go ``Failed``.
        queue_timeout_s: the longest a request waits for a place on a copy (real seconds)
            before it is answered with a throttling error.
        instance_quota: ``instance_quota(account, region, instance_type, delta)`` -> the
            ``ResourceLimitExceeded`` text when ``delta`` more instances would pass the
            account's endpoint quota, else ``None`` (``None``: no quota).

    The control plane calls :meth:`install` when it patches moto, and :meth:`advance` reads
    the clock; the runtime server calls :meth:`admit`.
    """

    def __init__(
        self,
        clock: Clock,
        lock: threading.RLock,
        *,
        timings: Timings | None = None,
        copy_concurrency: int | None = None,
        copy_pace: CopyPace | None = None,
        fail_components: Iterable[str] = (),
        queue_timeout_s: float = 300.0,
        instance_quota: Callable[[str, str, str, int], str | None] | None = None,
    ) -> None:
        if copy_concurrency is not None and copy_concurrency < 1:
            raise ValueError(f"copy_concurrency must be >= 1, got {copy_concurrency}")
        self.clock = clock
        self.lock = lock
        self.timings = timings or Timings()
        self.copy_concurrency = copy_concurrency
        self.copy_pace = copy_pace or CopyPace()
        self.fail_patterns = list(fail_components)
        self.queue_timeout_s = queue_timeout_s
        self.instance_quota = instance_quota
        self._slots = threading.Condition(lock)
        self._fleets: dict[tuple[str, str, str], _Fleet] = {}
        self._components: dict[tuple[str, str, str], ComponentRecord] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.events: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- events

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every scaling event (see :meth:`record`)."""
        self._listeners.append(listener)

    def record(self, at: float, kind: str, resource: str, message: str, **values: Any) -> None:
        """Record one scaling event (``time_s`` simulated, ``kind``, ``resource``, ``message``
        and values), log it on ``common.local.scaling`` and tell the listeners."""
        event = {"time_s": round(at, 3), "kind": kind, "resource": resource,
                 "message": message, **values}
        self.events.append(event)
        logger.info("[t=%8.1fs] %s %s: %s", at, kind, resource, message)
        for listener in list(self._listeners):
            listener(event)

    # ----------------------------------------------------------------- fleets

    def add_fleet(self, account: str, region: str, endpoint_name: str, variant: dict[str, Any],
                  ready_at: float) -> None:
        """Start the instances of an endpoint whose variant hosts components."""
        scaling = dict(variant.get("ManagedInstanceScaling") or {})
        initial = int(variant.get("InitialInstanceCount") or 0)
        enabled = scaling.get("Status") == "ENABLED"
        minimum = int(scaling.get("MinInstanceCount", initial)) if enabled else initial
        maximum = int(scaling.get("MaxInstanceCount", initial)) if enabled else initial
        fleet = _Fleet(endpoint_name, variant.get("VariantName", "AllTraffic"),
                       variant.get("InstanceType", ""), minimum, max(maximum, minimum),
                       scaling, dict(variant.get("RoutingConfig") or {}),
                       ami_version=variant.get("InferenceAmiVersion") or None)
        for _ in range(initial):
            fleet.instances.append(self._new_instance(fleet, ready_at, idle=True))
        self._fleets[(account, region, endpoint_name)] = fleet

    def drop_fleet(self, account: str, region: str, endpoint_name: str) -> None:
        """Forget an endpoint's instances and components (the endpoint is gone)."""
        self._fleets.pop((account, region, endpoint_name), None)
        for key in [k for k, c in self._components.items()
                    if k[:2] == (account, region) and c.endpoint_name == endpoint_name]:
            component = self._components.pop(key)
            self._fail_waiting(component, NO_CAPACITY_MESSAGE)

    def fleet_summary(self, account: str, region: str, endpoint_name: str
                      ) -> dict[str, Any] | None:
        """The variant fields of DescribeEndpoint for a component-hosting endpoint."""
        fleet = self._fleets.get((account, region, endpoint_name))
        if fleet is None:
            return None
        now = self.clock.now()
        summary: dict[str, Any] = {
            "VariantName": fleet.variant_name,
            "CurrentInstanceCount": sum(i.ready(now) for i in fleet.instances),
            "DesiredInstanceCount": len(fleet.instances),
        }
        if fleet.scaling:
            summary["ManagedInstanceScaling"] = fleet.scaling
        if fleet.routing:
            summary["RoutingConfig"] = fleet.routing
        blocked = [c for k, c in self._components.items()
                   if k[:2] == (account, region) and c.endpoint_name == endpoint_name
                   and c.blocked]
        if blocked:
            summary["VariantStatus"] = [{"Status": "Updating",
                                         "StatusMessage": blocked[0].blocked,
                                         "StartTime": blocked[0].blocked_since}]
        return summary

    def fleet_size(self, account: str, region: str, endpoint_name: str) -> int | None:
        """The instances (running or starting) of a component-hosting endpoint, or ``None``
        for an endpoint without components."""
        fleet = self._fleets.get((account, region, endpoint_name))
        return None if fleet is None else len(fleet.instances)

    def blocked(self, account: str, region: str, name: str) -> str | None:
        """Why copies of the component ``name`` wait for an instance that the account's quota
        refuses (SageMaker's ``ResourceLimitExceeded`` text), or ``None``."""
        component = self.component(account, region, name)
        return None if component is None else component.blocked

    def components_on(self, account: str, region: str, endpoint_name: str) -> list[str]:
        """The names of the inference components an endpoint hosts (any status)."""
        return sorted(c.name for k, c in self._components.items()
                      if k[:2] == (account, region) and c.endpoint_name == endpoint_name)

    def hosts_components(self, account: str, region: str, endpoint_name: str) -> bool:
        """Whether the endpoint's variant has no model (it hosts inference components)."""
        return (account, region, endpoint_name) in self._fleets

    def _new_instance(self, fleet: _Fleet, ready_at: float, *, idle: bool = False) -> _Instance:
        instance = _Instance(f"i-{next(self._ids):04d}", ready_at,
                             accelerators_of(fleet.instance_type),
                             idle_since=ready_at if idle else None,
                             memory_mb=memory_pool_mb(fleet.instance_type))
        return instance

    # ----------------------------------------------------------------- components

    def component(self, account: str, region: str, name: str) -> ComponentRecord | None:
        """The component called ``name``, or ``None``."""
        return self._components.get((account, region, name))

    def components(self, account: str, region: str) -> list[ComponentRecord]:
        """Every component of an account and region."""
        return [c for k, c in self._components.items() if k[:2] == (account, region)]

    def create(self, account: str, region: str, component: ComponentRecord) -> None:
        """Add a new component (status ``Creating``) and place its copies."""
        now = self.clock.now()
        fleet = self._fleets[(account, region, component.endpoint_name)]
        self._components[(account, region, component.name)] = component
        self.record(now, "component", component.name,
                    f"Creating with {component.desired} "
                    f"cop{'y' if component.desired == 1 else 'ies'}"
                    f" ({component.needs} accelerator(s) and up to {component.concurrency} "
                    "concurrent streams each)", desired=component.desired)
        accelerators = accelerators_of(fleet.instance_type)
        pool = memory_pool_mb(fleet.instance_type)
        memory = memory_of(component.specification)
        if component.needs > accelerators or memory > pool:
            self._fail(component, now, (
                f"{NOT_ENOUGH_HARDWARE_MESSAGE} [local stand-in] Each copy needs "
                f"{component.needs} accelerator devices and {memory:,.0f} MB of memory "
                f"(MinMemoryRequiredInMb), but one {fleet.instance_type} instance has "
                f"{accelerators} accelerators and {pool:,.0f} MB that copies can reserve. Lower "
                "NumberOfAcceleratorDevicesRequired or MinMemoryRequiredInMb (the SageMaker "
                "SDK uses 1,024 MB), or use a larger instance type."))
            return
        from common.local.drivers import start_failure

        startup = component.specification.get("StartupParameters") or {}
        failure = start_failure(
            component.image, {"InstanceType": fleet.instance_type,
                              "InferenceAmiVersion": fleet.ami_version},
            subject=f"inference component {component.name}",
            health_check_s=startup.get("ContainerStartupHealthCheckTimeoutInSeconds"),
            default_wait_s=self.timings.copy_startup_s)
        if failure is not None:
            component.doomed = (failure.reason, now + failure.wait_s)
        self._reconcile(account, region, component, now)

    def set_desired(self, account: str, region: str, component: ComponentRecord, copies: int,
                    *, cause: str, at: float | None = None) -> None:
        """Ask for ``copies`` copies (``UpdateInferenceComponentRuntimeConfig``), at
        simulated time ``at`` (default: now)."""
        now = self.clock.now() if at is None else at
        before = component.desired
        component.desired = copies
        component.modified = self.clock.wall(now)
        if component.status == "InService":
            component.status = "Updating"
        self.record(now, "copies", component.name,
                    f"desired copies {before} -> {copies} ({cause})",
                    desired=copies, previous=before)
        self._reconcile(account, region, component, now)
        self.advance(now)

    def update_spec(self, account: str, region: str, component: ComponentRecord,
                    spec: tuple[dict[str, Any], str, dict[str, str], int, int]) -> None:
        """Apply a new specification after the copies restart (``Updating``)."""
        now = self.clock.now()
        component.pending_spec = spec
        component.status = "Updating"
        component.due_at = now + self.timings.copy_startup_s
        component.modified = self.clock.wall(now)
        self.record(now, "component", component.name, "Updating its specification")

    def delete(self, account: str, region: str, component: ComponentRecord) -> None:
        """Start deleting a component: its copies stop taking requests at once."""
        now = self.clock.now()
        component.status = "Deleting"
        component.due_at = now + self.timings.component_delete_s
        component.modified = self.clock.wall(now)
        component.desired = 0
        for copy_ in component.live():
            self._retire(copy_, now)
        self._fail_waiting(component, NO_CAPACITY_MESSAGE)
        self.record(now, "component", component.name, "Deleting")

    # ----------------------------------------------------------------- time

    def advance(self, now: float | None = None) -> None:
        """Bring every fleet and component to simulated time ``now`` (default: the clock).

        Call it with the control plane's lock held (every caller in this package does).
        """
        now = self.clock.now() if now is None else now
        for (account, region, _name), component in list(self._components.items()):
            self._advance_component(account, region, component, now)
        for fleet in self._fleets.values():
            self._release_idle(fleet, now)
        self._dispatch_all(now)

    def _advance_component(self, account: str, region: str, component: ComponentRecord,
                           now: float) -> None:
        if component.status == "Deleting":
            if now >= component.due_at:
                del self._components[(account, region, component.name)]
                self.record(component.due_at, "component", component.name, "deleted")
            return
        if component.status == "Failed":
            return
        if component.doomed is not None and now >= component.doomed[1]:
            self._fail(component, component.doomed[1], component.doomed[0])
            return
        if component.pending_spec is not None and now >= component.due_at:
            (component.specification, component.image, component.environment,
             component.concurrency, component.needs) = component.pending_spec
            component.pending_spec = None
        self._reconcile(account, region, component, now)
        serving = component.serving(now)
        for copy_ in serving:
            if not copy_.announced:
                copy_.announced = True
                self.record(copy_.ready_at, "copies", component.name,
                            f"copy {copy_.id} on {copy_.instance.id} serves "
                            f"({len(serving)} of {component.desired})",
                            current=len(serving), desired=component.desired)
        if component.status in ("Creating", "Updating"):
            placed = component.live()
            starting = [c for c in placed if not c.serving(now)]
            if component.pending_spec is None and not starting and (
                    serving or component.desired == 0 or not placed):
                reason = self._failure_for(component.name)
                if reason and component.status == "Creating":
                    self._fail(component, now, reason)
                    return
                if serving or component.desired == 0:
                    component.status = "InService"
                    component.modified = self.clock.wall(now)
                    self.record(now, "component", component.name,
                                f"InService with {len(serving)} serving cop"
                                f"{'y' if len(serving) == 1 else 'ies'}",
                                current=len(serving), desired=component.desired)

    def _failure_for(self, name: str) -> str | None:
        for pattern in reversed(self.fail_patterns):
            if fnmatch.fnmatchcase(name, pattern):
                return ("The model container for inference component " + name +
                        " did not pass the ping health check. Please check CloudWatch logs "
                        "for this inference component.")
        return None

    def _fail(self, component: ComponentRecord, now: float, reason: str) -> None:
        component.status = "Failed"
        component.failure_reason = reason
        component.modified = self.clock.wall(now)
        for copy_ in component.live():
            self._retire(copy_, now)
        self._fail_waiting(component, NO_CAPACITY_MESSAGE)
        self.record(now, "component", component.name, f"Failed: {reason}")

    def _reconcile(self, account: str, region: str, component: ComponentRecord, now: float) -> None:
        """Retire copies above the desired count; place missing copies where they fit."""
        fleet = self._fleets.get((account, region, component.endpoint_name))
        if fleet is None or component.status in ("Failed", "Deleting"):
            return
        live = component.live()
        extra = len(live) - component.desired
        if extra > 0:
            # Starting copies first, then the least busy.
            for copy_ in sorted(live, key=lambda c: (c.serving(now), c.active))[:extra]:
                self._retire(copy_, now)
        missing = component.desired - len(component.live())
        memory = memory_of(component.specification)
        refusal = None
        for _ in range(max(0, missing)):
            instance, refusal = self._instance_with_room(account, region, fleet,
                                                         component.needs, memory, now)
            if instance is None:
                break
            instance.used += component.needs
            instance.memory_used += memory
            instance.idle_since = None
            ready_at = (math.inf if component.doomed is not None
                        else max(now, instance.ready_at) + self.timings.copy_startup_s)
            copy_ = _Copy(f"copy-{next(self._ids):04d}", instance, ready_at, component.needs,
                          memory)
            component.copies.append(copy_)
            self.record(now, "copies", component.name,
                        f"copy {copy_.id} placed on {instance.id}, " + (
                            "its container cannot start on the host's driver"
                            if component.doomed is not None
                            else f"serves in {copy_.ready_at - now:.0f} s"))
        if refusal != component.blocked:
            component.blocked = refusal
            component.blocked_since = self.clock.wall(now) if refusal else None
            if refusal:
                self.record(now, "instances", fleet.endpoint_name,
                            f"no new instance for {component.name}: {refusal}")

    def _instance_with_room(self, account: str, region: str, fleet: _Fleet, needs: int,
                            memory: float, now: float) -> tuple[_Instance | None, str | None]:
        """(an instance with room for one copy, or ``None``; the quota's refusal when that is
        why there is none)."""
        candidates = [i for i in fleet.instances if i.fits(needs, memory)]
        if candidates:  # ready instances first, then the one that is up soonest
            return min(candidates, key=lambda i: (not i.ready(now), i.ready_at)), None
        if len(fleet.instances) >= fleet.max_instances:
            return None, None
        if self.instance_quota is not None:
            refusal = self.instance_quota(account, region, fleet.instance_type, 1)
            if refusal:
                return None, refusal
        instance = self._new_instance(fleet, now + self.timings.instance_provision_s)
        fleet.instances.append(instance)
        self.record(now, "instances", fleet.endpoint_name,
                    f"provisioning {instance.id} ({fleet.instance_type}), up in "
                    f"{instance.ready_at - now:.0f} s; {len(fleet.instances)} instance(s)",
                    instances=len(fleet.instances))
        return instance, None

    def _retire(self, copy_: _Copy, now: float) -> None:
        copy_.retired = True
        if copy_.active == 0:
            self._free(copy_, now)

    def _free(self, copy_: _Copy, now: float) -> None:
        for component in self._components.values():
            if copy_ in component.copies:
                component.copies.remove(copy_)
        instance = copy_.instance
        instance.used = max(0, instance.used - copy_.needs)
        instance.memory_used = max(0.0, instance.memory_used - copy_.memory_mb)
        if instance.used == 0:
            instance.idle_since = max(now, instance.ready_at)

    def _release_idle(self, fleet: _Fleet, now: float) -> None:
        for instance in list(fleet.instances):
            if len(fleet.instances) <= fleet.min_instances:
                return
            if instance.used == 0 and instance.idle_since is not None and \
                    now - instance.idle_since >= self.timings.instance_idle_release_s:
                fleet.instances.remove(instance)
                at = instance.idle_since + self.timings.instance_idle_release_s
                self.record(at, "instances", fleet.endpoint_name,
                            f"released idle {instance.id}; {len(fleet.instances)} "
                            "instance(s)", instances=len(fleet.instances))

    # ----------------------------------------------------------------- routing

    def admit(self, endpoint_name: str, component_name: str | None) -> Admission | None:
        """Route one invocation: ``None`` for an endpoint without components (no header).

        Returns:
            An :class:`Admission` for the named component (not yet holding a place).

        Raises:
            InvocationRejected: a missing header on a component endpoint, a header on an
                endpoint without components, an unknown component, or no serving copy
                (the last one also counts as a ``NoCapacityInvocationFailures``).
        """
        with self.lock:
            self.advance()
            key = next((k for k in self._fleets if k[2] == endpoint_name), None)
            hosts = key is not None
            account, region = key[:2] if key is not None else ("", "")
            if not component_name:
                if hosts:
                    raise InvocationRejected(400, "ValidationError", HEADER_REQUIRED_MESSAGE)
                return None
            if not hosts:
                raise InvocationRejected(400, "ValidationError", HEADER_NOT_ALLOWED_MESSAGE)
            component = self.component(account, region, component_name)
            if component is None or component.endpoint_name != endpoint_name or \
                    component.status in ("Deleting",):
                raise InvocationRejected(
                    400, "ValidationError",
                    f"Inference Component {component_name} not found for endpoint "
                    f"{endpoint_name}.")
            now = self.clock.now()
            if not component.serving(now):
                component.no_capacity.append(now)
                raise InvocationRejected(400, "ValidationError", NO_CAPACITY_MESSAGE)
            return Admission(self, component)

    def _account_load(self, component: ComponentRecord, now: float) -> None:
        if now > component.load_since:
            component.load_area += component.load() * (now - component.load_since)
            component.load_since = now

    def _dispatch_all(self, now: float) -> None:
        woke = False
        for component in self._components.values():
            woke |= self._dispatch(component, now)
        if woke:
            self._slots.notify_all()

    def _dispatch(self, component: ComponentRecord, now: float) -> bool:
        woke = False
        while component.waiting:
            open_copies = [c for c in component.serving(now) if c.active < component.concurrency]
            if not open_copies:
                break
            copy_ = min(open_copies, key=lambda c: (c.active, c.ready_at))
            ticket = component.waiting.popleft()
            copy_.active += 1
            component.invocations += 1
            ticket.copy = copy_
            woke = True
        return woke

    def _fail_waiting(self, component: ComponentRecord, message: str) -> None:
        self._account_load(component, self.clock.now())
        while component.waiting:
            ticket = component.waiting.popleft()
            ticket.failed = InvocationRejected(400, "ValidationError", message)
        self._slots.notify_all()

    # ----------------------------------------------------------------- metric gauges

    def drain_gauges(self, account: str, region: str, name: str, now: float
                     ) -> tuple[float, int, int, list[float]] | None:
        """For the metric publisher: (time-weighted requests in flight or queued since the
        last call, serving copies, invocations started, no-capacity failure times), reset."""
        component = self.component(account, region, name)
        if component is None:
            return None
        self._account_load(component, now)
        span = now - component.gauge_start
        load = component.load_area / span if span > 0 else float(component.load())
        component.load_area = 0.0
        component.gauge_start = now
        invocations, component.invocations = component.invocations, 0
        failures, component.no_capacity = component.no_capacity, []
        return load, len(component.serving(now)), invocations, failures


class Admission:
    """One invocation's way through a component: wait for a copy, pace, release.

    Use :meth:`acquire` before the container runs, :meth:`pace` around its tokens and
    :meth:`release` when the last token is sent (in a ``finally``).
    """

    def __init__(self, manager: ComponentManager, component: ComponentRecord) -> None:
        self.manager = manager
        self.component = component
        self.ticket = _Ticket()
        self.acquired_at: float | None = None
        self._released = False

    @property
    def image(self) -> str:
        """The component's container image."""
        return self.component.image

    @property
    def environment(self) -> dict[str, str]:
        """The component's container environment."""
        return dict(self.component.environment)

    @property
    def variant(self) -> str:
        """The variant the component runs on."""
        return self.component.variant_name

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Wait (real time) for a place on a copy, first come first served.

        Raises:
            InvocationRejected: the component lost its copies or was deleted meanwhile
                (no capacity), or the wait passed the manager's ``queue_timeout_s``.
        """
        manager = self.manager
        deadline = time.monotonic() + manager.queue_timeout_s
        with manager.lock:
            manager._account_load(self.component, manager.clock.now())
            self.component.waiting.append(self.ticket)
            try:
                while True:
                    manager.advance()
                    if self.ticket.copy is not None:
                        break
                    if self.ticket.failed is not None:
                        raise self.ticket.failed
                    if not self.component.live():  # scaled to zero while this one waited
                        self.component.no_capacity.append(manager.clock.now())
                        raise InvocationRejected(400, "ValidationError", NO_CAPACITY_MESSAGE)
                    if stop is not None and stop.is_set():
                        raise InvocationRejected(503, "ServiceUnavailable",
                                                 "The stand-in is stopping.")
                    if time.monotonic() > deadline:
                        raise InvocationRejected(
                            400, "ThrottlingException",
                            f"The request waited {manager.queue_timeout_s:g} s for a copy of "
                            f"{self.component.name}; add copies or send fewer requests.")
                    manager._slots.wait(0.05)
            except BaseException:
                if self.ticket in self.component.waiting:
                    manager._account_load(self.component, manager.clock.now())
                    self.component.waiting.remove(self.ticket)
                raise
        self.acquired_at = time.monotonic()

    def pace(self, tokens: Iterator[Any]) -> Iterator[Any]:
        """Yield ``tokens`` no faster than the manager's :class:`CopyPace` allows."""
        pace = self.manager.copy_pace
        if not pace.active():
            yield from tokens
            return
        start = self.acquired_at if self.acquired_at is not None else time.monotonic()
        for index, token in enumerate(tokens):
            due = start + (pace.ttft_s or 0.0) + (index / pace.tokens_per_s
                                                 if pace.tokens_per_s else 0.0)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield token

    def release(self) -> None:
        """Give the copy back (idempotent); a retired copy with no streams left is freed."""
        if self._released:
            return
        self._released = True
        manager = self.manager
        copy_ = self.ticket.copy
        with manager.lock:
            now = manager.clock.now()
            manager._account_load(self.component, now)
            if copy_ is None:
                return
            copy_.active -= 1
            if copy_.retired and copy_.active == 0:
                manager._free(copy_, now)
            manager._dispatch(self.component, now)
            manager._slots.notify_all()


def spec_fields(component: ComponentRecord) -> dict[str, Any]:
    """The ``Specification`` member of DescribeInferenceComponent."""
    spec = component.specification
    out: dict[str, Any] = {}
    if spec.get("ModelName"):
        out["ModelName"] = spec["ModelName"]
    container = spec.get("Container")
    if container:
        summary: dict[str, Any] = {}
        if container.get("Image"):
            summary["DeployedImage"] = {"SpecifiedImage": container["Image"],
                                        "ResolvedImage": container["Image"],
                                        "ResolutionTime": component.created}
        for name in ("ArtifactUrl", "Environment"):
            if container.get(name):
                summary[name] = container[name]
        out["Container"] = summary
    for name in ("StartupParameters", "ComputeResourceRequirements",
                 "BaseInferenceComponentName"):
        if spec.get(name):
            out[name] = spec[name]
    return out


def ceil_accelerators(requirements: dict[str, Any] | None) -> int:
    """``ceil(NumberOfAcceleratorDevicesRequired)``, 1 when not given."""
    value = (requirements or {}).get("NumberOfAcceleratorDevicesRequired")
    return max(1, math.ceil(float(value))) if value is not None else 1
