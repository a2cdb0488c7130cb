"""How long a recipe notebook takes on AWS and what it costs, for the notebook's first cell.

Every figure is a range in minutes built from named steps, so the first cell can say where
the time goes; the cost is the billed instance-hours times the preset's approximate on-demand
price (``InstanceType.approx_usd_per_hour``, us-east-1). These are estimates, not
measurements (the project has no AWS account to time them on); where each number comes from
is in DESIGN.md ("Time and cost up front").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.presets import Preset, ScalingSettings

__all__ = [
    "Estimate",
    "Step",
    "deploy_estimate",
    "endpoint_start_minutes",
    "inference_estimate",
    "scale_estimate",
    "weight_copy_minutes",
]

SETUP_MINUTES = (2, 5)
"""``%pip install`` of the requirements and the imports, on a fresh Studio space."""
COPY_MB_PER_S = (150, 50)
"""Hub -> notebook -> S3 throughput of the one-file-at-a-time weight copy, fast and slow."""
INFERENCE_MINUTES = (5, 10)
"""The inference notebook's cells: five streamed answers, one blocking, a chat turn, reading."""
SWEEP_MINUTES = (3, 10)
"""The scale notebook's capacity sweep (1 to 32 streams, 128 tokens each)."""
SCALE_OUT_MINUTES = (10, 20)
"""The alarm's three 10-second readings, provisioning an instance, starting a copy on it."""
SCALE_IN_MINUTES = (15, 20)
"""Target tracking's scale-in alarm: 15 minutes of low readings, then the scale-in."""
FROM_ZERO_MINUTES = (5, 15)
"""The no-capacity alarm (30 s), then a copy -- on an instance not yet released, or a new one."""
IDLE_RELEASE_MINUTES = 10
"""SageMaker releases an instance about 10 minutes after its last copy is gone."""
CLEAN_UP_MINUTES = (2, 5)
"""Deleting the component (waiting until it is gone), the endpoint, its config and model."""


@dataclass(frozen=True)
class Step:
    """One named part of a notebook's run: ``label`` takes ``low`` to ``high`` minutes."""

    label: str
    low: int
    high: int

    @property
    def span(self) -> str:
        """``"10 to 15 minutes"`` (or ``"10 minutes"`` when low equals high)."""
        return _span(self.low, self.high)


def _span(low: float, high: float) -> str:
    low, high = round(low), round(high)
    return f"{low} minutes" if low == high else f"{low} to {high} minutes"


@dataclass(frozen=True)
class Estimate:
    """A notebook's time and cost on AWS.

    Attributes:
        steps: the named parts of the run, in order.
        billed_hours: instance-hours billed while the notebook runs (low, high).
        price_per_hour: the instance's approximate on-demand USD per hour, or ``None``.
        added_instances: instances the scale notebook's load adds to the first one.
    """

    steps: tuple[Step, ...]
    billed_hours: tuple[float, float]
    price_per_hour: float | None
    added_instances: int = 0

    @property
    def minutes(self) -> tuple[int, int]:
        """The whole run in minutes (low, high)."""
        return sum(s.low for s in self.steps), sum(s.high for s in self.steps)

    @property
    def span(self) -> str:
        """The whole run, e.g. ``"15 to 25 minutes"``."""
        return _span(*self.minutes)

    @property
    def cost(self) -> str:
        """The billed instance-hours in USD, e.g. ``"$0.25 to $0.38"``; ``""`` without a price."""
        if self.price_per_hour is None:
            return ""
        low, high = (hours * self.price_per_hour for hours in self.billed_hours)
        return f"${low:.2f} to ${high:.2f}"

    @property
    def hours(self) -> str:
        """The billed instance-hours, e.g. ``"0.2 to 0.3"``."""
        return f"{self.billed_hours[0]:.1f} to {self.billed_hours[1]:.1f}"


def endpoint_start_minutes(preset: Preset) -> tuple[int, int]:
    """Minutes from ``CreateEndpoint`` to ``InService``: an instance is provisioned, the
    container starts and loads the weights (more weights, longer)."""
    if preset.weights_gib <= 20:
        return 10, 15
    if preset.weights_gib <= 60:
        return 15, 20
    return 20, 35


def weight_copy_minutes(preset: Preset) -> tuple[int, int]:
    """Minutes of LMI's one-file-at-a-time copy of the fp16 weights from the Hub to S3."""
    megabytes = preset.weights_gib * 1024**3 / 1e6
    return tuple(max(1, math.ceil(megabytes / rate / 60)) for rate in COPY_MB_PER_S)


def _steps(preset: Preset, *named: tuple[str, tuple[int, int]]) -> tuple[Step, ...]:
    steps = [Step("set-up", *SETUP_MINUTES)]
    if preset.container == "lmi":
        steps.append(Step("copying the weights to S3", *weight_copy_minutes(preset)))
    steps += [Step(label, *minutes) for label, minutes in named]
    return tuple(steps)


def deploy_estimate(preset: Preset) -> Estimate:
    """The deploy notebook: set-up, (LMI) the weight copy, then the endpoint starting; billing
    starts at ``CreateEndpoint``."""
    start = endpoint_start_minutes(preset)
    return Estimate(_steps(preset, ("the endpoint starting", start)),
                    (start[0] / 60, start[1] / 60), preset.instance.approx_usd_per_hour)


def inference_estimate(preset: Preset) -> Estimate:
    """The inference notebook: its cells, on the endpoint the deploy notebook left running."""
    return Estimate((Step("the cells", *INFERENCE_MINUTES),),
                    (INFERENCE_MINUTES[0] / 60, INFERENCE_MINUTES[1] / 60),
                    preset.instance.approx_usd_per_hour)


def scale_estimate(preset: Preset, scaling: ScalingSettings) -> Estimate:
    """The scale notebook, start to clean-up: one instance from ``CreateEndpoint`` to the
    clean-up, and the instances the load adds from their provisioning until SageMaker
    releases them, idle, after the scale-in."""
    start = endpoint_start_minutes(preset)
    billed = (  # from CreateEndpoint to the clean-up
        ("the endpoint and its first copy starting", (start[0] + 2, start[1] + 5)),
        ("the capacity sweep", SWEEP_MINUTES),
        ("scaling out under load, while an instance is provisioned and a copy starts",
         SCALE_OUT_MINUTES),
        ("the 15-minute scale-in to zero copies", SCALE_IN_MINUTES),
        ("the request after zero, while a copy starts again", FROM_ZERO_MINUTES),
        ("clean-up", CLEAN_UP_MINUTES),
    )
    steps = _steps(preset, *billed)
    base = (sum(low for _, (low, _) in billed) / 60, sum(high for _, (_, high) in billed) / 60)
    copies_under_load = min(3, scaling.max_copies)  # the load asks for 2 x target + 1 streams
    added = math.ceil(copies_under_load / scaling.copies_per_instance) - 1
    # An added instance bills from its provisioning through the scale-in to its idle release.
    minutes = (SCALE_OUT_MINUTES[0] + SCALE_IN_MINUTES[0] + IDLE_RELEASE_MINUTES,
               SCALE_OUT_MINUTES[1] + SCALE_IN_MINUTES[1] + IDLE_RELEASE_MINUTES)
    hours = (base[0] + added * minutes[0] / 60, base[1] + added * minutes[1] / 60)
    return Estimate(steps, hours, preset.instance.approx_usd_per_hour, added_instances=added)
