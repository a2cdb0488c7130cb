"""NVIDIA drivers on SageMaker real-time hosts, and the host AMI an image needs.

A SageMaker real-time instance runs the NVIDIA driver of its instance family unless the
production variant names an ``InferenceAmiVersion``; SageMaker never applies such an override
by itself. A container whose CUDA version is newer than the host driver's can only start
through NVIDIA's forward-compatibility libraries, which AWS's newer AMIs do not even mount
(the ``-1`` AMI versions disable CUDA-compat mounting). :func:`inference_ami_version` picks
the AMI whose driver supports the image's CUDA natively, so no recipe relies on forward
compatibility.

This module is the one place these facts live; the recipes call
:func:`inference_ami_version`, and the local stand-in reads :func:`host_stack` to decide
whether a container can start on a host.

Sources (read 2026-12):

* AMI versions -- botocore 1.43.117 service model ``sagemaker``, enum
  ``ProductionVariantInferenceAmiVersion`` and the documentation of
  ``ProductionVariant.InferenceAmiVersion``: ``al2-ami-sagemaker-inference-gpu-2`` and
  ``-2-1`` driver 535 / CUDA 12.2, ``-3-1`` driver 550 / CUDA 12.4,
  ``al2023-ami-sagemaker-inference-gpu-4-1`` driver 580 / CUDA 13.0 (the ``-1`` ones with
  "NVIDIA Container Toolkit with disabled CUDA-compat mounting"),
  ``al2-ami-sagemaker-inference-neuron-2`` for Inferentia2 and Trainium.
* Defaults per family -- AWS "Best practices to minimize interruptions during GPU driver
  upgrades" (docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html), real-time
  inference: driver 470 / CUDA 11.4 on ml.p2, ml.p3, ml.p4d, ml.p4de, ml.g4dn, ml.g5;
  535 / 12.2 on ml.p5, ml.g6; 550 / 12.4 on ml.p5e, ml.p5en; and "SageMaker AI does not apply
  AMI overrides automatically" (the page's translations carry the newer table with the
  override column). ml.g6e is not listed: it is taken as ml.g6 (535 / 12.2), and the recipes
  pin an AMI on it anyway.
* Which families take the GPU AMIs -- the earlier botocore documentation of
  ``al2-ami-sagemaker-inference-gpu-2`` ("Supported instance types: ml.g4dn.*, ml.g5.*,
  ml.g6.*, ml.p3.*, ml.p4d.*, ml.p4de.*, ml.p5.*", aws/sagemaker-core#245); for the CUDA 13
  AMI on ml.g5/ml.g6/ml.g6e/ml.p4d/ml.p4de/ml.p5/ml.p5e/ml.p5en: autogluon/autogluon-cloud
  ``src/autogluon/cloud/utils/dlc_utils.py`` (``_INFERENCE_AMI_INSTANCE_PREFIXES``), and a
  public deployment guide that ran a ``cu130`` image on ml.g5.xlarge with
  ``al2023-ami-sagemaker-inference-gpu-4-1`` and ManagedInstanceScaling.
* An image's CUDA version is in its tag: ``...-cu124-ubuntu22.04`` (TGI 3.3.6),
  ``...-lmi27.0.0-cu130`` (LMI 0.36.0); a host runs it natively when its driver's CUDA version
  is at least the image's (NVIDIA CUDA Toolkit release notes, "CUDA Toolkit and
  Corresponding Driver Versions": CUDA 12.4 needs driver >= 550, 13.0 needs >= 580).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import PresetError

__all__ = [
    "AMI_VERSIONS",
    "FAMILY_DEFAULTS",
    "GPU_FAMILIES",
    "NEURON_AMI_VERSION",
    "NEURON_FAMILIES",
    "HostStack",
    "driver_mismatch",
    "host_stack",
    "image_cuda_version",
    "inference_ami_version",
    "instance_family",
]


@dataclass(frozen=True)
class HostStack:
    """The NVIDIA driver of a host and the newest CUDA version it runs natively.

    Attributes:
        driver: the driver branch, e.g. ``470``.
        cuda: the CUDA version, e.g. ``(11, 4)``.
        cuda_compat_mounted: whether the NVIDIA Container Toolkit mounts the image's CUDA
            forward-compatibility libraries (``False`` for the ``-1`` AMI versions).
        source: where the host's driver comes from: ``"default"`` (the family's) or the
            ``InferenceAmiVersion``.
    """

    driver: int
    cuda: tuple[int, int]
    cuda_compat_mounted: bool = True
    source: str = "default"

    @property
    def cuda_label(self) -> str:
        """The CUDA version as text, e.g. ``"11.4"``."""
        return f"{self.cuda[0]}.{self.cuda[1]}"

    def runs(self, cuda: tuple[int, int]) -> bool:
        """Whether a container built for ``cuda`` runs on this host without forward
        compatibility."""
        return cuda <= self.cuda


AMI_VERSIONS: dict[str, HostStack] = {
    # botocore ProductionVariantInferenceAmiVersion documentation.
    "al2-ami-sagemaker-inference-gpu-2": HostStack(535, (12, 2), True,
                                                   "al2-ami-sagemaker-inference-gpu-2"),
    "al2-ami-sagemaker-inference-gpu-2-1": HostStack(535, (12, 2), False,
                                                     "al2-ami-sagemaker-inference-gpu-2-1"),
    "al2-ami-sagemaker-inference-gpu-3-1": HostStack(550, (12, 4), False,
                                                     "al2-ami-sagemaker-inference-gpu-3-1"),
    "al2023-ami-sagemaker-inference-gpu-4-1": HostStack(
        580, (13, 0), False, "al2023-ami-sagemaker-inference-gpu-4-1"),
}
"""The GPU ``InferenceAmiVersion`` values and the driver each one runs (the Neuron AMI,
``al2-ami-sagemaker-inference-neuron-2``, is for Inferentia2 and Trainium and has no NVIDIA
driver)."""

NEURON_AMI_VERSION = "al2-ami-sagemaker-inference-neuron-2"

FAMILY_DEFAULTS: dict[str, HostStack] = {
    # AWS "inference-gpu-drivers" page, real-time inference.
    **dict.fromkeys(("p2", "p3", "p4d", "p4de", "g4dn", "g5"), HostStack(470, (11, 4))),
    **dict.fromkeys(("p5", "g6"), HostStack(535, (12, 2))),
    **dict.fromkeys(("p5e", "p5en"), HostStack(550, (12, 4))),
    "g6e": HostStack(535, (12, 2)),  # not on the page; taken as ml.g6
}
"""The driver each NVIDIA instance family runs when no ``InferenceAmiVersion`` is set."""

GPU_FAMILIES: frozenset[str] = frozenset(
    ("g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en"))
"""The families that take the GPU ``InferenceAmiVersion`` values."""

NEURON_FAMILIES: frozenset[str] = frozenset(("inf2", "trn1"))

_CUDA_TAG = re.compile(r"(?:^|[-_.])cu(\d{2})(\d)(?=$|[-_.])")


def instance_family(instance_type: str) -> str:
    """Return the family of a SageMaker instance type: ``ml.g5.2xlarge`` -> ``g5``.

    Raises:
        PresetError: ``instance_type`` is not ``ml.FAMILY.SIZE``.
    """
    parts = str(instance_type).split(".")
    if len(parts) != 3 or parts[0] != "ml" or not parts[1]:
        raise PresetError(f"{instance_type!r} is not a SageMaker instance type such as "
                          "'ml.g5.2xlarge'.")
    return parts[1]


def image_cuda_version(image_uri: str) -> tuple[int, int] | None:
    """Return the CUDA version in an image's tag (``...-cu124-...`` -> ``(12, 4)``), or
    ``None`` when the tag names none (a CPU or Neuron image, or a custom tag)."""
    tag = str(image_uri).rsplit("/", 1)[-1].partition(":")[2] or str(image_uri)
    match = _CUDA_TAG.search(tag)
    return (int(match.group(1)), int(match.group(2))) if match else None


def host_stack(instance_type: str, ami_version: str | None = None) -> HostStack | None:
    """Return the NVIDIA driver a host of ``instance_type`` runs with ``ami_version``.

    Returns:
        The AMI's :class:`HostStack` when ``ami_version`` names a GPU AMI, else the family's
        default; ``None`` for a family without NVIDIA GPUs (or one this table does not know).

    Raises:
        PresetError: ``ami_version`` is not an ``InferenceAmiVersion`` value, or it is one
            the instance family cannot run (a GPU AMI on Inferentia, say).
    """
    family = instance_family(instance_type)
    if ami_version:
        if ami_version == NEURON_AMI_VERSION:
            if family not in NEURON_FAMILIES:
                raise PresetError(f"{ami_version} is for Inferentia2 and Trainium instances, "
                                  f"not {instance_type}.")
            return None
        stack = AMI_VERSIONS.get(ami_version)
        if stack is None:
            raise PresetError(f"Unknown InferenceAmiVersion {ami_version!r}; SageMaker "
                              f"offers {', '.join([*AMI_VERSIONS, NEURON_AMI_VERSION])}.")
        if family not in GPU_FAMILIES:
            raise PresetError(f"{ami_version} is a GPU host image; {instance_type} has no "
                              "NVIDIA GPU it supports.")
        return stack
    return FAMILY_DEFAULTS.get(family)


def inference_ami_version(image_uri: str, instance_type: str) -> str | None:
    """Return the ``ProductionVariant.InferenceAmiVersion`` that runs ``image_uri`` natively.

    The image's CUDA version comes from its tag (``cu124``, ``cu130``); the result is the
    oldest GPU AMI whose driver supports that CUDA version without forward compatibility,
    preferring the AMIs that do not mount CUDA-compat libraries. An AMI is chosen even where
    the family's default driver would do, so a recipe does not change when AWS upgrades the
    default.

    Args:
        image_uri: the container image, e.g. ``...djl-inference:0.36.0-lmi27.0.0-cu130``.
        instance_type: the endpoint's instance type, e.g. ``ml.g5.2xlarge``.

    Returns:
        e.g. ``"al2023-ami-sagemaker-inference-gpu-4-1"`` for a CUDA 13.0 image, or ``None``
        when the instance has no NVIDIA GPU or the image's tag names no CUDA version (then
        SageMaker's default host image is used).

    Raises:
        PresetError: ``instance_type`` is malformed, or no SageMaker AMI has a driver new
            enough for the image's CUDA version (the message names the newest one).
    """
    family = instance_family(instance_type)
    cuda = image_cuda_version(image_uri)
    if cuda is None or family not in GPU_FAMILIES:
        return None
    fitting = [(stack.cuda, stack.cuda_compat_mounted, name)
               for name, stack in AMI_VERSIONS.items() if stack.runs(cuda)]
    if not fitting:
        newest = max(AMI_VERSIONS.items(), key=lambda item: item[1].cuda)
        raise PresetError(
            f"The image {image_uri} is built for CUDA {cuda[0]}.{cuda[1]}, newer than any "
            f"SageMaker inference AMI supports (the newest, {newest[0]}, runs driver "
            f"{newest[1].driver} / CUDA {newest[1].cuda_label}). Pick an image built for CUDA "
            f"{newest[1].cuda_label} or older.")
    return min(fitting)[2]


def driver_mismatch(image_uri: str, instance_type: str, ami_version: str | None = None
                    ) -> tuple[tuple[int, int], HostStack] | None:
    """Return ``(image CUDA, host)`` when the image's CUDA is newer than the host's driver
    supports, else ``None`` (also when either is unknown).

    Raises:
        PresetError: as :func:`host_stack`.
    """
    cuda = image_cuda_version(image_uri)
    host = host_stack(instance_type, ami_version)
    if cuda is None or host is None or host.runs(cuda):
        return None
    return cuda, host
