"""Application Auto Scaling for inference components, CloudWatch metrics and alarms.

:class:`ScalingSimulator` puts the scaling model together on the stand-in's one clock:

* the inference components (:class:`common.local.components.ComponentManager`, with their
  moto API from :mod:`common.local.components_api`);
* metrics into moto's CloudWatch, namespace ``AWS/SageMaker``, dimension
  ``InferenceComponentName``, every :data:`METRIC_PERIOD_S` simulated seconds:
  ``ConcurrentRequestsPerCopy`` (time-weighted requests in flight or queued over the
  period -- a stream counts until its last token -- divided by the serving copies),
  ``InvocationsPerCopy``, and ``NoCapacityInvocationFailures`` (1 per request refused for
  lack of a copy, stamped when it happened);
* Application Auto Scaling for the dimension ``sagemaker:inference-component:DesiredCopyCount``
  (moto refuses it): registered targets (``MinCapacity`` 0 allowed), target tracking (two
  alarms per policy, as AWS makes them: *AlarmHigh*, 3 datapoints of 10 s above the target;
  *AlarmLow*, 15 datapoints of 1 minute below 90 % of it; new capacity
  ``ceil(copies x metric / target)``; ``ScaleOutCooldown``/``ScaleInCooldown`` 300 s by
  default), step scaling fired by any CloudWatch alarm on these metrics whose
  ``AlarmActions`` name the policy, and every decision in ``DescribeScalingActivities``;
* one evaluator: each period boundary it advances the components, publishes the metrics,
  evaluates the alarms (moto stores them; moto never evaluates them) and runs the policies.
  A background thread drives it in real time for a :class:`~common.local.clock.ScaledClock`;
  with a :class:`~common.local.clock.ManualClock` a test calls :meth:`ScalingSimulator.tick`.

Every change is a *scaling event* (:meth:`ScalingSimulator.events`, logger
``common.local.scaling``), so a terminal user can watch copies rise and fall.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from common.local.clock import Clock, ScaledClock
from common.local.components import ComponentManager, CopyPace, Timings

__all__ = [
    "IC_DIMENSION",
    "METRIC_NAMESPACE",
    "METRIC_PERIOD_S",
    "PREDEFINED_METRICS",
    "ScalingSimulator",
]

IC_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
METRIC_NAMESPACE = "AWS/SageMaker"
METRIC_PERIOD_S = 10.0
DEFAULT_COOLDOWN_S = 300.0
SCALE_IN_RATIO = 0.9
SERIES_KEPT_S = 3600.0  # simulated seconds of datapoints kept for alarm evaluation

PREDEFINED_METRICS: dict[str, tuple[str, str, float]] = {
    # predefined metric type -> (CloudWatch metric, statistic, AlarmHigh period)
    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution":
        ("ConcurrentRequestsPerCopy", "Average", 10.0),
    "SageMakerInferenceComponentInvocationsPerCopy": ("InvocationsPerCopy", "Sum", 60.0),
}
"""Application Auto Scaling's predefined metric types for inference components."""

_OUR_METRICS = ("ConcurrentRequestsPerCopy", "InvocationsPerCopy",
                "NoCapacityInvocationFailures")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def _statistic(values: list[float], statistic: str) -> float:
    if statistic == "Maximum":
        return max(values)
    if statistic == "Minimum":
        return min(values)
    if statistic == "Sum":
        return sum(values)
    if statistic == "SampleCount":
        return float(len(values))
    return sum(values) / len(values)


def _component_of(resource_id: str) -> str | None:
    prefix = "inference-component/"
    return resource_id[len(prefix):] if resource_id.startswith(prefix) else None


class ScalingSimulator:
    """Inference components + metrics + alarms + Application Auto Scaling, on one clock.

    Args:
        clock: the stand-in's clock.
        timings: the component model's simulated durations.
        copy_concurrency: streams per copy (``None``: from the container's settings).
        copy_pace: a floor on each copy's streams' pace (real seconds).
        fail_components: component names or patterns that go ``Failed``.
        quotas: the account's endpoint quotas (:class:`common.local.quotas.QuotaBook`):
            managed instance scaling starts no instance past them, and the Application Auto
            Scaling activity that asked for the copies says so (``None``: no limit).

    Give :meth:`install` to the control plane as an extension, pass :meth:`route` to the
    runtime server as its router, and call :meth:`start`/:meth:`stop` around serving.
    """

    def __init__(self, clock: Clock, *, timings: Timings | None = None,
                 copy_concurrency: int | None = None, copy_pace: CopyPace | None = None,
                 fail_components: Iterable[str] = (), quotas: Any = None) -> None:
        self.clock = clock
        self.quotas = quotas
        self._init = {"timings": timings, "copy_concurrency": copy_concurrency,
                      "copy_pace": copy_pace, "fail_components": tuple(fail_components)}
        self.manager: ComponentManager | None = None
        self.plane: Any = None
        self._series: dict[tuple[str, str, str, str, str], list[tuple[float, float]]] = \
            defaultdict(list)
        self._activities: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._last_scale: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
        self._next_boundary = METRIC_PERIOD_S
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- wiring

    def install(self, plane: Any, patch: Callable[[object, str, object], None]) -> None:
        """Control-plane extension: build the component manager and patch moto."""
        from common.local.components_api import install_component_api

        self.plane = plane
        self.manager = ComponentManager(
            self.clock, plane._lock, **self._init,
            instance_quota=self._quota_refusal if self.quotas is not None else None)
        self._next_boundary = (math.floor(self.clock.now() / METRIC_PERIOD_S) + 1) * \
            METRIC_PERIOD_S
        install_component_api(plane, self.manager, patch)
        self._patch_autoscaling(patch)

    def fleet_size(self, account: str, region: str, endpoint_name: str) -> int | None:
        """The instances an endpoint for inference components runs or starts now (``None``
        for another endpoint): what counts against the account's quota."""
        return self._require().fleet_size(account, region, endpoint_name)

    def _quota_refusal(self, account: str, region: str, instance_type: str,
                       delta: int) -> str | None:
        from moto.backends import get_backend

        from common.local.quotas import instances_in_use

        backend = get_backend("sagemaker")[account][region]
        used = instances_in_use(backend, instance_type, fleet_size=self.fleet_size)
        return self.quotas.refusal(instance_type, used, delta)

    def route(self, endpoint_name: str, component_name: str | None) -> Any:
        """The runtime server's router (:meth:`ComponentManager.admit`)."""
        return self._require().admit(endpoint_name, component_name)

    def start(self) -> None:
        """Start the evaluator thread (only for a clock that moves by itself)."""
        if self._thread is not None or not isinstance(self.clock, ScaledClock):
            return
        self._stop.clear()
        interval = min(0.05, self.clock.real_seconds(METRIC_PERIOD_S) / 2)
        self._thread = threading.Thread(target=self._run, args=(interval,),
                                        name="sagemaker-local-autoscaling", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the evaluator thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.tick()

    def _require(self) -> ComponentManager:
        if self.manager is None:
            raise RuntimeError("the scaling simulator is not installed in a control plane")
        return self.manager

    # ----------------------------------------------------------------- reading

    def events(self) -> list[dict[str, Any]]:
        """Every scaling event so far (copies, instances, components, alarms, activities),
        oldest first: dicts with ``time_s`` (simulated), ``kind``, ``resource``,
        ``message`` and values such as ``desired``/``current``/``instances``."""
        with self.plane._lock:
            return sorted((dict(e) for e in self._require().events),
                          key=lambda e: e["time_s"])

    def datapoints(self, metric: str, component: str) -> list[tuple[float, float]]:
        """The (simulated time, value) datapoints published for ``metric`` of
        ``component``."""
        with self.plane._lock:
            return [point for key, points in self._series.items()
                    if key[2:4] == (metric, component) for point in points]

    # ----------------------------------------------------------------- the evaluator

    def tick(self, now: float | None = None) -> None:
        """Process every period boundary up to ``now`` (default: the clock), in order:
        advance the components, publish metrics, evaluate alarms, run policies."""
        manager = self._require()
        now = self.clock.now() if now is None else now
        with self.plane._lock:
            while self._next_boundary <= now:
                at = self._next_boundary
                self._next_boundary += METRIC_PERIOD_S
                manager.advance(at)
                self._enforce_bounds(at)
                self._publish(at)
                self._evaluate_alarms(at)
                manager.advance(at)
            manager.advance(now)

    def _publish(self, at: float) -> None:
        manager = self._require()
        from moto.cloudwatch.models import MetricDatum, cloudwatch_backends

        for account, region, name in list(manager._components):
            gauges = manager.drain_gauges(account, region, name, at)
            if gauges is None:
                continue
            load, serving, invocations, failures = gauges
            points: list[tuple[str, float, float]] = [
                ("NoCapacityInvocationFailures", t, 1.0) for t in failures]
            if serving:
                points += [("ConcurrentRequestsPerCopy", at, load / serving),
                           ("InvocationsPerCopy", at, invocations / serving)]
            cloudwatch = cloudwatch_backends[account][region]
            for metric, t, value in points:
                series = self._series[(account, region, metric, name, "")]
                series.append((t, value))
                if series[0][0] < at - SERIES_KEPT_S:  # alarms look back 15 minutes at most
                    series[:] = [p for p in series if p[0] >= at - SERIES_KEPT_S]
                cloudwatch.metric_data.append(MetricDatum(
                    METRIC_NAMESPACE, metric, value,
                    [{"Name": "InferenceComponentName", "Value": name}],
                    self.clock.wall(t).replace(tzinfo=None)))  # moto keeps naive UTC

    def _values(self, account: str, region: str, metric: str, component: str,
                start: float, end: float) -> list[float]:
        # Gauges are stamped at the end of the period they cover; failures when they happen.
        at_end = metric != "NoCapacityInvocationFailures"
        return [v for t, v in self._series.get((account, region, metric, component, ""), [])
                if (start < t <= end if at_end else start <= t < end)]

    def _evaluate_alarms(self, at: float) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        manager = self._require()
        regions = {k[:2] for k in manager._components} | {k[:2] for k in manager._fleets}
        for account, region in regions:
            cloudwatch = cloudwatch_backends[account][region]
            for alarm in list(cloudwatch.alarms.values()):
                component = self._alarm_component(alarm)
                if component is None:
                    continue
                period = float(alarm.period or 60)
                if round(at % period, 6) not in (0.0, period):
                    continue
                self._evaluate(account, region, alarm, component, at, period)

    @staticmethod
    def _alarm_component(alarm: Any) -> str | None:
        if alarm.namespace != METRIC_NAMESPACE or alarm.metric_name not in _OUR_METRICS:
            return None
        for dimension in alarm.dimensions or []:
            name = getattr(dimension, "name", None) or (
                dimension.get("Name") if isinstance(dimension, dict) else None)
            value = getattr(dimension, "value", None) or (
                dimension.get("Value") if isinstance(dimension, dict) else None)
            if name == "InferenceComponentName":
                return str(value)
        return None

    def _evaluate(self, account: str, region: str, alarm: Any, component: str, at: float,
                  period: float) -> None:
        statistic = alarm.statistic or "Average"
        windows = []
        for i in range(int(alarm.evaluation_periods)):
            end = at - i * period
            values = self._values(account, region, alarm.metric_name, component,
                                  end - period, end)
            windows.append(_statistic(values, statistic) if values else None)
        compare = _COMPARE.get(alarm.comparison_operator, _COMPARE["GreaterThanThreshold"])
        threshold = float(alarm.threshold)
        missing = alarm.treat_missing_data or "missing"
        present = [v for v in windows if v is not None]
        breaching = sum(compare(v, threshold) for v in present)
        if missing == "breaching":
            breaching += len(windows) - len(present)
        needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
        if not present and missing in ("missing", "ignore"):
            state = "INSUFFICIENT_DATA" if missing == "missing" else alarm.state_value
        else:
            state = "ALARM" if breaching >= needed else "OK"
        if state != alarm.state_value:
            reason = (f"{breaching} of the last {len(windows)} datapoints ({len(present)} "
                      f"present) {alarm.comparison_operator} {threshold:g}; "
                      f"{needed} needed to alarm.")
            alarm.update_state(reason, json.dumps({"recentDatapoints": present[:5]}), state)
            self._require().record(at, "alarm", alarm.name, f"{state}: {reason}")
        if state == "ALARM" and alarm.actions_enabled:
            latest = next((v for v in windows if v is not None), None)
            for action in alarm.alarm_actions or []:
                self._run_policy(account, region, str(action), alarm, latest, at)

    # ----------------------------------------------------------------- policies

    def _policies(self, account: str, region: str) -> dict[str, Any]:
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        return applicationautoscaling_backends[account][region].policies

    def _target(self, account: str, region: str, resource_id: str) -> Any:
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        backend = applicationautoscaling_backends[account][region]
        return backend.targets.get(IC_DIMENSION, {}).get(resource_id)

    def _run_policy(self, account: str, region: str, action: str, alarm: Any,
                    value: float | None, at: float) -> None:
        policy = next((p for p in self._policies(account, region).values()
                       if action == p.policy_arn or action.startswith(p.policy_arn + ":")),
                      None)
        if policy is None or policy.scalable_dimension != IC_DIMENSION or value is None:
            return
        target = self._target(account, region, policy.resource_id)
        name = _component_of(policy.resource_id)
        component = self._require().component(account, region, name or "")
        if target is None or component is None:
            return
        suspended = target.suspended_state or {}
        current = component.desired
        last = self._last_scale[(account, region, policy.resource_id)]
        if policy.policy_type == "TargetTrackingScaling":
            config = policy.target_tracking_scaling_policy_configuration or {}
            goal = float(config["TargetValue"])
            wanted = math.ceil(round(current * value / goal, 9)) if goal > 0 else current
            if alarm.comparison_operator.startswith("Greater"):
                if wanted <= current or suspended.get("DynamicScalingOutSuspended"):
                    return
                if at - last.get("out", -math.inf) < float(config.get(
                        "ScaleOutCooldown", DEFAULT_COOLDOWN_S)):
                    return
                direction = "out"
            else:
                if config.get("DisableScaleIn") or wanted >= current or \
                        suspended.get("DynamicScalingInSuspended"):
                    return
                cooldown = float(config.get("ScaleInCooldown", DEFAULT_COOLDOWN_S))
                if at - max(last.get("in", -math.inf), last.get("out", -math.inf)) < cooldown:
                    return
                direction = "in"
        else:
            config = policy.step_scaling_policy_configuration or {}
            if at - last.get(policy.policy_name, -math.inf) < float(config.get("Cooldown", 0)):
                return
            step = self._step(config, value - float(alarm.threshold))
            if step is None:
                return
            adjustment = float(step["ScalingAdjustment"])
            kind = config.get("AdjustmentType", "ChangeInCapacity")
            if kind == "ExactCapacity":
                wanted = int(adjustment)
            elif kind == "PercentChangeInCapacity":
                change = int(current * adjustment / 100)
                minimum = int(config.get("MinAdjustmentMagnitude") or 0)
                if abs(change) < minimum:
                    change = minimum if adjustment > 0 else -minimum
                wanted = current + change
            else:
                wanted = current + int(adjustment)
            direction = "out" if wanted > current else "in"
            last[policy.policy_name] = at
        wanted = max(int(target.min_capacity or 0), min(int(target.max_capacity), wanted))
        if wanted == current:
            return
        last[direction] = at
        self._scale(account, region, target, component, current, wanted, at,
                    f"monitor alarm {alarm.name} in state ALARM triggered policy "
                    f"{policy.policy_name}")

    @staticmethod
    def _step(config: dict[str, Any], difference: float) -> dict[str, Any] | None:
        for step in config.get("StepAdjustments") or []:
            lower = step.get("MetricIntervalLowerBound")
            upper = step.get("MetricIntervalUpperBound")
            if (lower is None or difference >= float(lower)) and (
                    upper is None or difference < float(upper)):
                return step
        return None

    def _enforce_bounds(self, at: float) -> None:
        """Bring each registered component's copies within [MinCapacity, MaxCapacity]."""
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        manager = self._require()
        for account, region in {k[:2] for k in manager._components}:
            backend = applicationautoscaling_backends[account][region]
            for resource_id, target in list(backend.targets.get(IC_DIMENSION, {}).items()):
                component = manager.component(account, region,
                                              _component_of(resource_id) or "")
                if component is None or component.status not in ("InService", "Updating"):
                    continue
                low, high = int(target.min_capacity or 0), int(target.max_capacity)
                wanted = max(low, min(high, component.desired))
                if wanted != component.desired:
                    self._scale(account, region, target, component, component.desired,
                                wanted, at, "the scalable target's capacity bounds "
                                f"(MinCapacity {low}, MaxCapacity {high})")

    def _scale(self, account: str, region: str, target: Any, component: Any, current: int,
               wanted: int, at: float, cause: str) -> None:
        manager = self._require()
        manager.set_desired(account, region, component, wanted,
                            cause=f"Application Auto Scaling: {cause}", at=at)
        stamp = self.clock.wall(at)
        blocked = manager.blocked(account, region, component.name)
        status = ({"StatusCode": "Failed",
                   "StatusMessage": f"Failed to set desired copy count to {wanted}: SageMaker "
                                    f"cannot start an instance for every copy. Reason: {blocked}"}
                  if blocked else
                  {"StatusCode": "Successful",
                   "StatusMessage": f"Successfully set desired copy count to {wanted}. Change "
                                    "successfully fulfilled by sagemaker."})
        self._activities[(account, region)].append({
            "ActivityId": str(uuid.uuid4()),
            "ServiceNamespace": "sagemaker",
            "ResourceId": target.resource_id,
            "ScalableDimension": IC_DIMENSION,
            "Description": f"Setting desired copy count to {wanted}.",
            "Cause": cause,
            "StartTime": stamp.timestamp(),
            "EndTime": stamp.timestamp(),
            **status,
        })
        manager.record(at, "scaling", target.resource_id,
                       f"copies {current} -> {wanted}: {cause}", desired=wanted,
                       previous=current)

    # ----------------------------------------------------------------- moto patches

    def _patch_autoscaling(self, patch: Callable[[object, str, object], None]) -> None:
        from moto.applicationautoscaling import models, responses
        from moto.applicationautoscaling.exceptions import AWSValidationException
        from moto.cloudwatch.models import cloudwatch_backends

        simulator = self
        original_valid = models._target_params_are_valid
        original_validate_params = responses.ApplicationAutoScalingResponse._validate_params
        backend_cls = models.ApplicationAutoscalingBackend
        original_register = backend_cls.register_scalable_target
        original_deregister = backend_cls.deregister_scalable_target
        original_put_policy = backend_cls.put_scaling_policy
        original_create_alarms = models.FakeApplicationAutoscalingPolicy.create_alarms

        def is_ic(namespace: str | None, resource_id: str | None, dimension: str | None
                  ) -> bool:
            return (dimension == IC_DIMENSION and namespace == "sagemaker"
                    and _component_of(resource_id or "") is not None)

        def target_params_are_valid(namespace: str, r_id: str, dimension: str) -> bool:
            if is_ic(namespace, r_id, dimension):
                return True
            if dimension == IC_DIMENSION:
                raise AWSValidationException(
                    "Unsupported service namespace, resource type or scalable dimension")
            return bool(original_valid(namespace, r_id, dimension))

        def validate_params(response: Any) -> None:
            if response._get_param("ScalableDimension") == IC_DIMENSION:
                return
            original_validate_params(response)

        def register(backend: Any, namespace: str, r_id: str, dimension: str,
                     min_capacity: int | None, max_capacity: int | None, role_arn: str,
                     suspended_state: Any) -> Any:
            if dimension == IC_DIMENSION and is_ic(namespace, r_id, dimension):
                with simulator.plane._lock:
                    manager = simulator._require()
                    manager.advance()
                    name = _component_of(r_id) or ""
                    if manager.component(backend.account_id, backend.region_name,
                                         name) is None:
                        raise AWSValidationException(
                            f"The inference component {name} does not exist.")
                    existing = backend.targets.get(dimension, {}).get(r_id)
                    if existing is None and (min_capacity is None or max_capacity is None):
                        raise AWSValidationException(
                            "MinCapacity and MaxCapacity are required to register a new "
                            "scalable target.")
                    low = min_capacity if min_capacity is not None else existing.min_capacity
                    high = max_capacity if max_capacity is not None else existing.max_capacity
                    if low > high:
                        raise AWSValidationException(
                            f"Minimum capacity ({low}) cannot be greater than maximum "
                            f"capacity ({high}).")
                    target = original_register(backend, namespace, r_id, dimension,
                                               min_capacity, max_capacity, role_arn,
                                               suspended_state)
                    manager.record(simulator.clock.now(), "scaling", r_id,
                                   f"registered scalable target: copies {low} to {high}")
                    return target
            return original_register(backend, namespace, r_id, dimension, min_capacity,
                                     max_capacity, role_arn, suspended_state)

        def deregister(backend: Any, namespace: str, r_id: str, dimension: str) -> None:
            original_deregister(backend, namespace, r_id, dimension)
            if dimension == IC_DIMENSION:
                for key, policy in list(backend.policies.items()):
                    if policy.resource_id == r_id and policy.scalable_dimension == dimension:
                        policy.delete_alarms(backend.account_id, backend.region_name)
                        del backend.policies[key]
                simulator._require().record(simulator.clock.now(), "scaling", r_id,
                                            "deregistered scalable target")

        def put_policy(backend: Any, policy_name: str, service_namespace: str,
                       resource_id: str, scalable_dimension: str, policy_body: Any,
                       policy_type: str | None) -> Any:
            if scalable_dimension == IC_DIMENSION and resource_id not in backend.targets.get(
                    IC_DIMENSION, {}):
                raise AWSValidationException(
                    f"No scalable target registered for service namespace: "
                    f"{service_namespace}, resource ID: {resource_id}, scalable dimension: "
                    f"{scalable_dimension}")
            old = backend.policies.get(models.FakeApplicationAutoscalingPolicy.formulate_key(
                service_namespace, resource_id, scalable_dimension, policy_name))
            if old is not None:
                old.delete_alarms(backend.account_id, backend.region_name)
            return original_put_policy(backend, policy_name, service_namespace, resource_id,
                                       scalable_dimension, policy_body, policy_type)

        def create_alarms(policy: Any) -> None:
            original_create_alarms(policy)
            if policy.policy_type == "TargetTrackingScaling" and \
                    policy.scalable_dimension == IC_DIMENSION:
                policy.alarms.extend(target_tracking_alarms(policy))

        def target_tracking_alarms(policy: Any) -> list[Any]:
            config = policy.target_tracking_scaling_policy_configuration or {}
            goal = float(config.get("TargetValue", 0))
            name = _component_of(policy.resource_id) or ""
            predefined = (config.get("PredefinedMetricSpecification") or {}).get(
                "PredefinedMetricType")
            custom = config.get("CustomizedMetricSpecification") or {}
            if predefined in PREDEFINED_METRICS:
                metric, statistic, high_period = PREDEFINED_METRICS[predefined]
                dimensions = [{"Name": "InferenceComponentName", "Value": name}]
            elif custom:
                metric = custom.get("MetricName", "")
                statistic = custom.get("Statistic", "Average")
                high_period = 10.0 if metric == "ConcurrentRequestsPerCopy" else 60.0
                dimensions = custom.get("Dimensions") or []
            else:
                raise AWSValidationException(
                    "TargetTrackingScalingPolicyConfiguration needs a "
                    "PredefinedMetricSpecification or a CustomizedMetricSpecification.")
            namespace = custom.get("Namespace", METRIC_NAMESPACE) if custom else \
                METRIC_NAMESPACE
            cloudwatch = cloudwatch_backends[policy.account_id][policy.region_name]
            action = policy.policy_arn
            description = f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {action}."
            alarms = [cloudwatch.put_metric_alarm(
                name=f"TargetTracking-{policy.resource_id}-AlarmHigh-{uuid.uuid4()}",
                namespace=namespace, metric_name=metric, metric_data_queries=[],
                comparison_operator="GreaterThanThreshold", evaluation_periods=3,
                period=int(high_period), threshold=goal, statistic=statistic,
                description=description, dimensions=dimensions, alarm_actions=[action])]
            if not config.get("DisableScaleIn"):
                alarms.append(cloudwatch.put_metric_alarm(
                    name=f"TargetTracking-{policy.resource_id}-AlarmLow-{uuid.uuid4()}",
                    namespace=namespace, metric_name=metric, metric_data_queries=[],
                    comparison_operator="LessThanThreshold", evaluation_periods=15,
                    period=60, threshold=round(goal * SCALE_IN_RATIO, 6),
                    statistic=statistic, description=description, dimensions=dimensions,
                    alarm_actions=[action]))
            return alarms

        def describe_scaling_activities(response: Any) -> str:
            backend = response.applicationautoscaling_backend
            namespace = response._get_param("ServiceNamespace")
            resource_id = response._get_param("ResourceId")
            dimension = response._get_param("ScalableDimension")
            with simulator.plane._lock:
                items = [a for a in simulator._activities[(backend.account_id,
                                                           backend.region_name)]
                         if a["ServiceNamespace"] == namespace
                         and (not resource_id or a["ResourceId"] == resource_id)
                         and (not dimension or a["ScalableDimension"] == dimension)]
            items = list(reversed(items))  # newest first, as AWS lists them
            start = int(response._get_param("NextToken") or 0)
            size = int(response._get_param("MaxResults") or 50)
            result: dict[str, Any] = {"ScalingActivities": items[start:start + size]}
            if start + size < len(items):
                result["NextToken"] = str(start + size)
            return json.dumps(result)

        patch(models, "_target_params_are_valid", target_params_are_valid)
        patch(responses.ApplicationAutoScalingResponse, "_validate_params", validate_params)
        patch(responses.ApplicationAutoScalingResponse, "describe_scaling_activities",
              describe_scaling_activities)
        patch(backend_cls, "register_scalable_target", register)
        patch(backend_cls, "deregister_scalable_target", deregister)
        patch(backend_cls, "put_scaling_policy", put_policy)
        patch(models.FakeApplicationAutoscalingPolicy, "create_alarms", create_alarms)
