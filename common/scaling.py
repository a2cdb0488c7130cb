"""Inference components and their autoscaling: wait, load, watch, clean up.

The scale notebooks make the SageMaker, Application Auto Scaling and CloudWatch calls
themselves; this module carries the parts that are tedious or easy to get wrong:

* :func:`wait_for_inference_component` -- there is no botocore waiter for inference
  components: poll ``DescribeInferenceComponent`` with a live line; ``Failed`` raises with
  SageMaker's ``FailureReason``.
* :class:`BackgroundLoad` -- keeps N streams open against a component from worker threads,
  counting the requests in flight and the recent times to first token.
* :func:`watch_scaling` -- a live view (a line per change, or an ipywidgets table) of copies
  desired/current, instances, in-flight requests and TTFT, until a condition holds;
  returns the :class:`ScalingTimeline`.
* :func:`delete_scaling_resources` -- the idempotent clean-up in the order that works: alarm,
  scaling policies, the scalable target (with the inference-component dimension), the
  component (waiting until it is gone), then endpoint, config and model.

Sources: botocore's ``sagemaker`` (``DescribeInferenceComponent``: ``InferenceComponentStatus``,
``RuntimeConfig.{DesiredCopyCount,CurrentCopyCount}``, ``FailureReason``),
``application-autoscaling`` and ``cloudwatch`` service models; AWS's "Auto scaling of
inference components" and "scale to zero" documentation.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from common.endpoints import (
    client_or_default,
    delete_endpoint_resources,
    delete_if_exists,
    growing_pauses,
    is_not_found,
)
from common.errors import DeploymentError, InferenceComponentFailedError
from common.metrics import percentile
from common.progress import ProgressLine, format_elapsed

__all__ = [
    "COPY_COUNT_DIMENSION",
    "BackgroundLoad",
    "ScalingState",
    "ScalingTimeline",
    "delete_inference_component",
    "delete_scaling_resources",
    "inference_component_resource_id",
    "read_scaling_state",
    "wait_for_inference_component",
    "watch_scaling",
]

COPY_COUNT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
"""Application Auto Scaling's scalable dimension of an inference component's copies."""


def inference_component_resource_id(name: str) -> str:
    """Return the Application Auto Scaling resource id ``inference-component/NAME``."""
    return f"inference-component/{name}"


# --------------------------------------------------------------------------- waiting


def _copies(described: dict[str, Any]) -> tuple[int, int]:
    runtime = described.get("RuntimeConfig") or {}
    return int(runtime.get("CurrentCopyCount", 0) or 0), int(runtime.get("DesiredCopyCount", 0)
                                                             or 0)


def wait_for_inference_component(
    name: str,
    *,
    sagemaker_client: Any = None,
    timeout_s: float = 3600,
    poll_s: float = 10,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Poll ``DescribeInferenceComponent`` until the component is ``InService``.

    The progress (:class:`common.progress.ProgressLine`: one updating line in Jupyter, a line
    per change elsewhere) shows the status, the copies current/desired and the elapsed time,
    e.g. ``llama-ic: Creating, copies 0/1 (elapsed 02:10)``.

    Args:
        name: the inference component.
        sagemaker_client: a boto3 ``sagemaker`` client (default: a new one).
        timeout_s: give up after this many seconds.
        poll_s: the longest pause between polls; the first pause is 1 s and each next one
            1.5 times longer, so a quick start is seen quickly.
        progress: show the line.
        clock / sleep / out: injectable for tests; ``out`` defaults to ``sys.stdout``.

    Returns:
        The last ``DescribeInferenceComponent`` response (status ``InService``).

    Raises:
        InferenceComponentFailedError: the component went to ``Failed`` (with SageMaker's
            ``FailureReason``).
        DeploymentError: it does not exist, is being deleted, or is not ``InService`` after
            ``timeout_s`` (the message says what to check).
        botocore.exceptions.ClientError: any other failure of the describe call.
    """
    from botocore.exceptions import ClientError

    client = client_or_default(sagemaker_client, "sagemaker")
    line = ProgressLine(out, enabled=progress, clock=clock)
    started = clock()
    pauses = growing_pauses(1.0, poll_s)
    while True:
        try:
            described = client.describe_inference_component(InferenceComponentName=name)
        except ClientError as exc:
            if is_not_found(exc):
                line.finish(f"{name}: not found")
                raise DeploymentError(
                    f"Inference component {name!r} does not exist in this account and region. "
                    "Check the name and the region, and that InferenceComponent.create ran."
                ) from exc
            raise
        status = str(described.get("InferenceComponentStatus", "Unknown"))
        current, desired = _copies(described)
        elapsed = clock() - started
        state = f"{name}: {status}, copies {current}/{desired}"
        if status == "InService":
            line.finish(f"{state} after {format_elapsed(elapsed)}")
            return described
        if status == "Failed":
            line.finish(f"{state} after {format_elapsed(elapsed)}")
            raise InferenceComponentFailedError(name, described.get("FailureReason"))
        if status == "Deleting":
            line.finish(state)
            raise DeploymentError(f"Inference component {name!r} is being deleted; create it "
                                  "again to use it.")
        if elapsed >= timeout_s:
            line.finish(f"{state} after {format_elapsed(elapsed)}")
            raise DeploymentError(
                f"Inference component {name!r} is still {status} after {elapsed:.0f} s. Check "
                f"its log in CloudWatch (/aws/sagemaker/InferenceComponents/{name}) and that "
                "the endpoint's ManagedInstanceScaling allows an instance for it; then wait "
                "again with a longer timeout.")
        line.update(f"{state} (elapsed {format_elapsed(elapsed)})", state=state)
        sleep(max(0.0, min(next(pauses), timeout_s - elapsed)))


# --------------------------------------------------------------------------- load


class BackgroundLoad:
    """Keep ``concurrency`` streams open at once from worker threads until stopped.

    Each worker sends a request with ``invoke`` (e.g. ``lambda: common.invoke_stream(runtime,
    endpoint_name, payload, inference_component=name)``), reads the stream to its end, and
    sends the next. The load counts the requests in flight, the finished ones, the errors,
    and keeps the recent times to first token.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, invoke: Callable[[], Iterable[Any]], concurrency: int, *,
                 window: int = 50, clock: Callable[[], float] = time.perf_counter) -> None:
        """Prepare the load (nothing is sent until :meth:`start`).

        Args:
            invoke: sends one request and returns its token stream.
            concurrency: the streams kept open at once (>= 1).
            window: how many recent TTFTs :attr:`ttft_p50_s` is taken over.
            clock: the clock of the TTFTs.

        Raises:
            ValueError: for a concurrency below 1.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, not {concurrency!r}")
        self.invoke = invoke
        self.concurrency = concurrency
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ttfts: deque[float] = deque(maxlen=window)
        self.in_flight = 0
        self.completed = 0
        self.errors: list[str] = []

    def _worker(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            with self._lock:
                self.in_flight += 1
            try:
                first = None
                for _ in self.invoke():
                    if first is None:
                        first = self._clock() - started
                        with self._lock:
                            self._ttfts.append(first)
                with self._lock:
                    self.completed += 1
            except Exception as exc:  # counted and shown in the summary, never hidden
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.5)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def start(self) -> BackgroundLoad:
        """Start the worker threads; returns ``self``."""
        if self._threads:
            raise RuntimeError("this load is already running; stop() it first")
        self._stop.clear()
        self._threads = [threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
                         for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        """Let every open stream finish, then end the workers (waits up to ``timeout_s``)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    @property
    def ttft_p50_s(self) -> float | None:
        """The median of the recent times to first token, or ``None`` before the first."""
        with self._lock:
            values = list(self._ttfts)
        return percentile(values, 50) if values else None

    def summary(self) -> str:
        """Return e.g. ``120 requests finished, 0 errors, recent TTFT p50 210 ms``."""
        ttft = self.ttft_p50_s
        text = (f"{self.completed} requests finished, {len(self.errors)} error(s), recent "
                f"TTFT p50 {'-' if ttft is None else f'{ttft * 1000:.0f} ms'}")
        if self.errors:
            text += f"; first error: {self.errors[0]}"
        return text

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- watching


@dataclass(frozen=True)
class ScalingState:
    """One observation of a scaling component.

    Attributes:
        elapsed_s: seconds since the watch began.
        status: the component's status.
        current_copies / desired_copies: ``RuntimeConfig`` of the component.
        instances: the endpoint variant's ``CurrentInstanceCount`` (``None`` if not reported).
        in_flight: the load's requests in flight (0 without a load).
        ttft_p50_s: the load's recent TTFT p50 (``None`` without one).
        blocked: why the endpoint cannot start an instance that desired copies need (the
            variant's ``VariantStatus`` message, e.g. SageMaker's ``ResourceLimitExceeded``
            text when the account's instance quota is reached), else ``None``.
    """

    elapsed_s: float
    status: str
    current_copies: int
    desired_copies: int
    instances: int | None
    in_flight: int
    ttft_p50_s: float | None
    blocked: str | None = None

    def key(self) -> tuple[Any, ...]:
        """What counts as a change: status, copies, instances and what blocks scaling."""
        return (self.status, self.current_copies, self.desired_copies, self.instances,
                self.blocked)

    def line(self) -> str:
        """Return the state as one line of the live view."""
        ttft = "-" if self.ttft_p50_s is None else f"{self.ttft_p50_s * 1000:.0f} ms"
        instances = "?" if self.instances is None else str(self.instances)
        blocked = f"  blocked: {self.blocked}" if self.blocked else ""
        return (f"t+{format_elapsed(self.elapsed_s)}  copies {self.current_copies} (desired "
                f"{self.desired_copies})  instances {instances}  in flight {self.in_flight}  "
                f"TTFT p50 {ttft}  [{self.status}]{blocked}")


@dataclass
class ScalingTimeline:
    """Every state :func:`watch_scaling` saw change, in order, and whether it ended as asked."""

    states: list[ScalingState] = field(default_factory=list)
    reached: bool = False

    @property
    def max_copies(self) -> int:
        """The most copies that were running at once."""
        return max((s.current_copies for s in self.states), default=0)

    @property
    def last(self) -> ScalingState | None:
        """The last state seen."""
        return self.states[-1] if self.states else None

    def lines(self) -> list[str]:
        """Return every state as a line of the live view."""
        return [state.line() for state in self.states]


def read_scaling_state(inference_component: str, endpoint_name: str, *, sagemaker_client: Any,
                       load: BackgroundLoad | None = None, elapsed_s: float = 0.0
                       ) -> ScalingState:
    """Describe the component and its endpoint once; return the :class:`ScalingState`."""
    described = sagemaker_client.describe_inference_component(
        InferenceComponentName=inference_component)
    current, desired = _copies(described)
    endpoint = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    variants = endpoint.get("ProductionVariants") or []
    variant = next((v for v in variants
                    if v.get("VariantName") == described.get("VariantName")),
                   variants[0] if variants else {})
    instances = variant.get("CurrentInstanceCount")
    blocked = next((s.get("StatusMessage") for s in variant.get("VariantStatus") or []
                    if s.get("StatusMessage")), None)
    return ScalingState(
        elapsed_s=elapsed_s,
        status=str(described.get("InferenceComponentStatus", "Unknown")),
        current_copies=current,
        desired_copies=desired,
        instances=int(instances) if instances is not None else None,
        in_flight=load.in_flight if load is not None else 0,
        ttft_p50_s=load.ttft_p50_s if load is not None else None,
        blocked=blocked,
    )


class _PrintWatch:
    def __init__(self, out: TextIO | None, title: str | None) -> None:
        self.out = out if out is not None else sys.stdout
        if title:
            self.out.write(title + "\n")

    def change(self, state: ScalingState, timeline: ScalingTimeline) -> None:
        self.out.write(state.line() + "\n")
        self.out.flush()

    def tick(self, state: ScalingState) -> None:
        pass

    def finish(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()


class _WidgetWatch:
    """An ipywidgets table of the changes and a live line of the latest state."""

    def __init__(self, title: str | None) -> None:
        import ipywidgets as widgets

        from common.display import show_widget

        self.table = widgets.HTML(value="")
        self.live = widgets.HTML(value="waiting for the first reading ...")
        children = [self.live, self.table]
        if title:
            children.insert(0, widgets.HTML(value=f"<b>{html.escape(title)}</b>"))
        box = widgets.VBox(children)
        box.add_class("llama2-scaling")
        show_widget(box)

    def change(self, state: ScalingState, timeline: ScalingTimeline) -> None:
        header = ("<tr><th>time</th><th>copies</th><th>desired</th><th>instances</th>"
                  "<th>in flight</th><th>TTFT p50</th><th>status</th></tr>")
        rows = "".join(
            f"<tr><td>t+{format_elapsed(s.elapsed_s)}</td><td>{s.current_copies}</td>"
            f"<td>{s.desired_copies}</td><td>{'?' if s.instances is None else s.instances}</td>"
            f"<td>{s.in_flight}</td><td>"
            f"{'-' if s.ttft_p50_s is None else f'{s.ttft_p50_s * 1000:.0f} ms'}</td>"
            f"<td>{html.escape(s.status)}</td></tr>" for s in timeline.states)
        self.table.value = f"<table>{header}{rows}</table>"
        self.tick(state)

    def tick(self, state: ScalingState) -> None:
        self.live.value = f"<code>{html.escape(state.line())}</code>"

    def finish(self, message: str) -> None:
        self.live.value = f"<code>{html.escape(message)}</code>"


def watch_scaling(
    inference_component: str,
    endpoint_name: str,
    *,
    until: Callable[[ScalingState], bool],
    load: BackgroundLoad | None = None,
    sagemaker_client: Any = None,
    timeout_s: float = 3600,
    poll_s: float = 2,
    title: str | None = None,
    mode: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> ScalingTimeline:
    """Show copies, instances, in-flight requests and TTFT live until ``until(state)`` holds.

    In ``print`` mode a line is printed at every change of status, copies or instances; in
    ``widget`` mode a table of those changes grows under a line that shows the latest reading
    (``mode`` as :func:`common.display.resolve_mode`, so ``COMMON_DISPLAY=print`` prints).

    Args:
        inference_component / endpoint_name: what to watch.
        until: called with every reading; the watch ends when it returns true, e.g.
            ``lambda state: state.current_copies >= 2``.
        load: the :class:`BackgroundLoad` whose in-flight requests and TTFT are shown.
        sagemaker_client: a boto3 ``sagemaker`` client (default: a new one).
        timeout_s: the longest watch; the timeline then has ``reached == False``.
        poll_s: seconds between readings.
        title: a heading.
        mode: ``"widget"``, ``"print"`` or ``"auto"``/``None``.
        clock / sleep / out: injectable for tests; ``out`` is where print mode writes.

    Returns:
        The :class:`ScalingTimeline` of the changes (the first reading included).

    Raises:
        InferenceComponentFailedError: the component went to ``Failed``.
        botocore.exceptions.ClientError: a describe call failed.
    """
    from common.display import resolve_mode

    client = client_or_default(sagemaker_client, "sagemaker")
    view: _PrintWatch | _WidgetWatch
    view = _WidgetWatch(title) if resolve_mode(mode) == "widget" else _PrintWatch(out, title)
    timeline = ScalingTimeline()
    started = clock()
    while True:
        elapsed = clock() - started
        state = read_scaling_state(inference_component, endpoint_name, sagemaker_client=client,
                                   load=load, elapsed_s=elapsed)
        if state.status == "Failed":
            view.finish(state.line())
            described = client.describe_inference_component(
                InferenceComponentName=inference_component)
            raise InferenceComponentFailedError(inference_component,
                                                described.get("FailureReason"))
        if not timeline.states or timeline.states[-1].key() != state.key():
            timeline.states.append(state)
            view.change(state, timeline)
        else:
            view.tick(state)
        if until(state):
            timeline.reached = True
            view.finish(f"done after {format_elapsed(elapsed)}: {state.line()}")
            return timeline
        if elapsed >= timeout_s:
            view.finish(f"stopped watching after {format_elapsed(elapsed)} without reaching the "
                        f"condition: {state.line()}")
            return timeline
        sleep(max(0.0, min(poll_s, timeout_s - elapsed)))


# --------------------------------------------------------------------------- clean-up


def delete_alarms(cloudwatch: Any, names: Sequence[str]) -> list[str]:
    """Delete the CloudWatch alarms ``names`` that exist; return one line per name,
    ``"alarm NAME: deleted"`` or ``"alarm NAME: already gone"``.

    Raises:
        botocore.exceptions.ClientError: any failure (e.g. AccessDenied).
    """
    if not names:
        return []
    existing = {alarm["AlarmName"] for alarm in
                cloudwatch.describe_alarms(AlarmNames=list(names)).get("MetricAlarms", [])}
    done = []
    gone = [name for name in names if name not in existing]
    if existing:
        cloudwatch.delete_alarms(AlarmNames=sorted(existing))
        done += [f"alarm {name}: deleted" for name in sorted(existing)]
    done += [f"alarm {name}: already gone" for name in gone]
    return done


def _scaling_target(autoscaling: Any, resource_id: str) -> bool:
    answer = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id],
        ScalableDimension=COPY_COUNT_DIMENSION)
    return bool(answer.get("ScalableTargets"))


def _delete_policies(autoscaling: Any, resource_id: str, names: Sequence[str] | None
                     ) -> list[str]:
    answer = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=COPY_COUNT_DIMENSION)
    existing = [p["PolicyName"] for p in answer.get("ScalingPolicies", [])]
    wanted = list(names) if names is not None else existing
    done = []
    for name in wanted:
        if name not in existing:
            done.append(f"scaling policy {name}: already gone")
            continue
        autoscaling.delete_scaling_policy(
            PolicyName=name, ServiceNamespace="sagemaker", ResourceId=resource_id,
            ScalableDimension=COPY_COUNT_DIMENSION)
        done.append(f"scaling policy {name}: deleted")
    return done


def delete_inference_component(
    name: str,
    *,
    sagemaker_client: Any = None,
    timeout_s: float = 1800,
    poll_s: float = 10,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Delete an inference component and wait until it is gone.

    One that is ``Creating`` or ``Updating`` cannot be deleted (and keeps billing): it is
    waited for first. Polls after 1 s, then 1.5 times longer each time, at most ``poll_s``.

    Returns:
        ``"inference component NAME: deleted"`` or ``"... already gone"``.

    Raises:
        DeploymentError: it is not gone after ``timeout_s`` (it keeps billing).
        botocore.exceptions.ClientError: any other failure (e.g. AccessDenied).
    """
    from botocore.exceptions import ClientError

    sm = client_or_default(sagemaker_client, "sagemaker")
    started = clock()
    asked = False
    pauses = growing_pauses(1.0, poll_s)
    while True:
        try:
            described = sm.describe_inference_component(InferenceComponentName=name)
        except ClientError as exc:
            if not is_not_found(exc):
                raise
            return f"inference component {name}: {'deleted' if asked else 'already gone'}"
        status = described.get("InferenceComponentStatus")
        asked = asked or status == "Deleting"
        if not asked and status not in ("Deleting", "Creating", "Updating"):
            result = delete_if_exists(
                "inference component", name,
                lambda: sm.delete_inference_component(InferenceComponentName=name))
            if result.endswith("already gone"):
                return result
            asked = True
        elapsed = clock() - started
        if elapsed >= timeout_s:
            raise DeploymentError(
                f"Inference component {name!r} is still {status} after {elapsed:.0f} s"
                f"{'' if asked else ' (one that is Creating or Updating cannot be deleted)'}. "
                "It keeps billing: run the clean-up again later, or delete it in the console.")
        sleep(max(0.0, min(next(pauses), timeout_s - elapsed)))


def delete_scaling_resources(
    *,
    inference_component: str,
    endpoint_name: str,
    endpoint_config_name: str | None = None,
    model_name: str | None = None,
    alarm_names: Sequence[str] = (),
    policy_names: Sequence[str] | None = None,
    s3_uri: str | None = None,
    sagemaker_client: Any = None,
    autoscaling_client: Any = None,
    cloudwatch_client: Any = None,
    s3_client: Any = None,
    timeout_s: float = 1800,
    poll_s: float = 10,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Delete a scale recipe's resources in the order that works, reporting each.

    1. the CloudWatch alarms (so none fires a policy that is being deleted);
    2. the scaling policies of ``inference-component/NAME`` (``policy_names``, or every
       policy on it when ``None``);
    3. the scalable target, deregistered with the **inference-component** dimension
       (``sagemaker:inference-component:DesiredCopyCount``);
    4. the inference component -- waiting while it is ``Creating``/``Updating`` (it cannot
       be deleted then) and until it is gone (polling after 1 s, then 1.5 times longer each
       time, at most ``poll_s``);
    5. the endpoint, its configuration, the model and the S3 prefix, as
       :func:`common.endpoints.delete_endpoint_resources` does.

    Idempotent: what no longer exists is reported as already gone, so it can run twice.

    Returns:
        One line per resource, e.g. ``"scalable target inference-component/x: deregistered"``.

    Raises:
        DeploymentError: the component is not gone after ``timeout_s`` (it keeps billing), or
            as :func:`~common.endpoints.delete_endpoint_resources`.
        botocore.exceptions.ClientError: any other failure (e.g. AccessDenied).
    """
    sm = client_or_default(sagemaker_client, "sagemaker")
    autoscaling = client_or_default(autoscaling_client, "application-autoscaling")
    cloudwatch = client_or_default(cloudwatch_client, "cloudwatch")
    resource_id = inference_component_resource_id(inference_component)
    done = delete_alarms(cloudwatch, alarm_names)
    done += _delete_policies(autoscaling, resource_id, policy_names)
    if _scaling_target(autoscaling, resource_id):
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource_id,
            ScalableDimension=COPY_COUNT_DIMENSION)
        done.append(f"scalable target {resource_id}: deregistered")
    else:
        done.append(f"scalable target {resource_id}: already gone")
    done.append(delete_inference_component(inference_component, sagemaker_client=sm,
                                           timeout_s=timeout_s, poll_s=poll_s, clock=clock,
                                           sleep=sleep))
    done += delete_endpoint_resources(
        endpoint_name, endpoint_config_name=endpoint_config_name, model_name=model_name,
        s3_uri=s3_uri, sagemaker_client=sm, s3_client=s3_client, clock=clock, sleep=sleep)
    return done
