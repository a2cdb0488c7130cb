"""The host-driver rule of the stand-in: a container whose CUDA is newer than the host's
driver does not start.

A SageMaker real-time host runs its instance family's NVIDIA driver unless the production
variant names an ``InferenceAmiVersion`` (:mod:`common.gpu_drivers` holds both tables; the
stand-in reads them from there, so the recipes and the stand-in cannot disagree). When the
image's CUDA version (from its tag) is newer than the host's, the stand-in lets the endpoint
(or the inference component) wait out its container start-up health check and then go
``Failed`` with SageMaker's documented failure reason for a container that cannot start on the
host's driver (AWS "inference-gpu-drivers" page, ``CannotStartContainerError``), followed by
what the stand-in found and the fix.

It also checks ``InferenceAmiVersion`` itself when an endpoint configuration is created: a
value outside botocore's enum (botocore does not check enums on the client) is refused with
SageMaker's validation wording, and so is an AMI the instance family cannot run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import PresetError
from common.gpu_drivers import (
    AMI_VERSIONS,
    NEURON_AMI_VERSION,
    driver_mismatch,
    host_stack,
    inference_ami_version,
)

__all__ = ["StartFailure", "check_variant_ami", "start_failure"]


@dataclass(frozen=True)
class StartFailure:
    """A container that will not start: the ``FailureReason`` and how long SageMaker waits
    (simulated seconds, the start-up health-check timeout) before it says so."""

    reason: str
    wait_s: float


def check_variant_ami(variant: Mapping[str, Any], index: int) -> str | None:
    """Return SageMaker's ``ValidationException`` text for a production variant whose
    ``InferenceAmiVersion`` is not a known value or not one its instance type can run, else
    ``None``. ``index`` is the variant's position (0-based) for the message."""
    ami = variant.get("InferenceAmiVersion")
    if not ami:
        return None
    known = [*AMI_VERSIONS, NEURON_AMI_VERSION]
    if ami not in known:
        return (f"1 validation error detected: Value '{ami}' at 'productionVariants."
                f"{index + 1}.member.inferenceAmiVersion' failed to satisfy constraint: Member "
                f"must satisfy enum value set: [{', '.join(known)}]")
    instance_type = variant.get("InstanceType")
    if not instance_type:
        return None
    try:
        host_stack(str(instance_type), str(ami))
    except PresetError as exc:
        return (f"InferenceAmiVersion {ami} is not supported for instance type "
                f"{instance_type}: {exc}")
    return None


def start_failure(image: str | None, variant: Mapping[str, Any], *, subject: str,
                  health_check_s: float | None, default_wait_s: float) -> StartFailure | None:
    """Return why a container of ``image`` cannot start on the variant's hosts, or ``None``.

    Args:
        image: the container image (its tag names its CUDA version).
        variant: the endpoint configuration's production variant (``InstanceType``,
            ``InferenceAmiVersion``).
        subject: what runs the container, for the message (``"variant AllTraffic"``,
            ``"inference component NAME"``).
        health_check_s: ``ContainerStartupHealthCheckTimeoutInSeconds`` (of the variant or of
            the inference component's start-up parameters), ``None`` when not set.
        default_wait_s: how long to wait when no health-check timeout is set.
    """
    instance_type = variant.get("InstanceType")
    if not image or not instance_type:
        return None
    ami = variant.get("InferenceAmiVersion") or None
    try:
        mismatch = driver_mismatch(image, str(instance_type), ami)
    except PresetError:  # refused when the configuration was created
        return None
    if mismatch is None:
        return None
    cuda, host = mismatch
    try:
        fix = inference_ami_version(image, str(instance_type))
    except PresetError as exc:
        fix_text = str(exc)
    else:
        chosen = AMI_VERSIONS[fix] if fix else None
        fix_text = (f"Set ProductionVariant.InferenceAmiVersion to '{fix}' (driver "
                    f"{chosen.driver}, CUDA {chosen.cuda_label}) -- "
                    "common.inference_ami_version(image, instance_type) picks it -- or use an "
                    "image built for the host's CUDA version." if chosen else
                    "Use an image built for the host's CUDA version.")
    where = (f"the host image {host.source}" if host.source != "default"
             else f"the default host image of {instance_type} (no InferenceAmiVersion set)")
    reason = (
        f"CannotStartContainerError. Please ensure the model container for {subject} "
        f"starts correctly when invoked with 'docker run <image> serve'. "
        f"[local stand-in] The image is built for CUDA {cuda[0]}.{cuda[1]} ({image}), but "
        f"{where} runs NVIDIA driver {host.driver}, which supports CUDA {host.cuda_label}; "
        "SageMaker does not change the host's driver by itself. " + fix_text)
    return StartFailure(reason, float(health_check_s) if health_check_s else default_wait_s)
