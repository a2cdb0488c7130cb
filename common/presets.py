"""Deployment presets: which instance, how many GPUs, and the container settings per model.

A :class:`Preset` holds everything that depends on the model and the instance: the Hugging
Face model id, the container (``"tgi"`` or ``"lmi"``) and its pinned version, the instance
type and GPU count, and the token limits. It renders the container's configuration -- TGI's
environment variables (:meth:`Preset.tgi_environment`) or LMI's ``serving.properties``
(:meth:`Preset.serving_properties`, :func:`render_serving_properties`) -- and
:meth:`Preset.validate` checks it before anything is created on AWS, raising
:class:`~common.errors.PresetError` with the fix.

Presets are frozen dataclasses: edit one with ``dataclasses.replace(preset, field=value)``
and call ``validate()`` again. The Hugging Face token is never a field: it is passed to
:meth:`Preset.tgi_environment` at deploy time, and every display of a preset masks secrets.

Sources: TGI's SageMaker entrypoint and launcher checks (text-generation-inference v3.3.6,
``sagemaker-entrypoint.sh``, ``launcher/src/main.rs``, ``backends/v3/src/main.rs``); LMI's
configuration (djl-serving branch ``0.36.0-lmi27-dlc``: ``serving/docs/configurations_model.md``
"async mode", ``serving/docs/lmi/user_guides/vllm_user_guide.md``,
``wlm/.../LmiConfigRecommender.java``, ``djl_python/properties_manager/vllm_rb_properties.py``);
image versions from sagemaker-core 2.27's ``image_uri_config/{huggingface-llm,djl-lmi}.json``.
"""

from __future__ import annotations

import dataclasses
import html
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import PresetError

__all__ = [
    "ACTIVATION_RESERVE_GIB",
    "CONTAINERS",
    "GPU_MEMORY_HEADROOM",
    "GPU_MEMORY_UTILIZATION",
    "INSTANCE_TYPES",
    "LMI_ENTRY_POINT",
    "LMI_VERSION",
    "LMI_VERSION_REASON",
    "LMI_VERSION_SUMMARY",
    "MEMORY_PER_COPY_MB",
    "PRESETS",
    "TGI_VERSION",
    "InstanceType",
    "Preset",
    "ScalingSettings",
    "active_size_from_model_id",
    "custom_preset",
    "get_preset",
    "image_uri",
    "instance_info",
    "mask_secret",
    "render_serving_properties",
    "scaling_settings",
]

CONTAINERS = ("tgi", "lmi")

TGI_VERSION = "3.3.6"
"""The Hugging Face LLM container (TGI) version: ``image_uris.retrieve("huggingface-llm", ...)``
resolves it to ``huggingface-pytorch-tgi-inference:2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04``."""

LMI_VERSION = "0.36.0"
"""The LMI (DJL Serving) version: ``image_uris.retrieve("djl-lmi", ...)`` resolves it to
``djl-inference:0.36.0-lmi27.0.0-cu130``."""

LMI_VERSION_REASON = (
    "The preset pins DJL Serving 0.36.0 (LMI v27), the newest version whose documentation and "
    "source code are published (djl-serving branch 0.36.0-lmi27-dlc), so every setting here "
    "follows what that version documents; the SDK also offers 0.38.0 (LMI v29), which nothing "
    "published describes yet. The image is built on CUDA 13.0, and SageMaker's ml.g5 hosts run "
    "NVIDIA driver 470 (CUDA 11.4) unless the endpoint configuration asks for another host "
    "image, so the endpoint configuration below sets InferenceAmiVersion to "
    "al2023-ami-sagemaker-inference-gpu-4-1 (driver 580, CUDA 13.0; chosen by "
    "common.inference_ami_version from the image's tag and the instance type): the container "
    "then runs on a driver built for it, not on forward-compatibility libraries. Upstream CI "
    "runs this image on g6 (NVIDIA L4) and p4d (A100) instances, not on the g5 (A10G) "
    "instances these recipes use: if the endpoint does not start, read its CloudWatch log, and "
    "try the matching ml.g6 instance type or pin 0.35.0 (LMI v17)."
)
"""Why :data:`LMI_VERSION` is what it is, in full (DESIGN.md carries it too)."""

LMI_VERSION_SUMMARY = (
    "The preset pins DJL Serving 0.36.0 (LMI v27), the newest version whose documentation and "
    "source code are published, so that every setting here follows what that version documents."
)
"""Which LMI container and why, in the one sentence the notebooks show."""

LMI_ENTRY_POINT = "djl_python.lmi_vllm.vllm_async_service"
"""The handler of LMI's vLLM async mode (djl-serving ``PyModel.java`` recommends it when async
mode is on; the 0.36.0 integration tests set it explicitly)."""

GPU_MEMORY_HEADROOM = 0.20
"""Share of the instance's total GPU memory kept free of weights for the KV cache, activations,
CUDA context and CUDA graphs. A model fits when its fp16 weights (2 bytes per parameter) take at
most ``1 - GPU_MEMORY_HEADROOM`` of the GPUs' memory. It is a rule of thumb: for Llama 2 at 4,096
tokens, one full request's KV cache is about 2 GiB (7B) to 3 GiB (13B), and vLLM / TGI reserve
about 90 % of GPU memory in total."""

GPU_MEMORY_UTILIZATION = 0.90
"""Share of the GPUs' memory the server takes for weights and KV cache (vLLM's
``gpu_memory_utilization`` default; TGI's ``--cuda-memory-fraction`` is 1.0, so 0.9 is the
safe figure for both)."""

ACTIVATION_RESERVE_GIB = 1.0
"""GiB per GPU kept out of the KV cache for activations, the CUDA context and CUDA graphs
(vLLM profiles this at start-up; about 1 GiB per GPU for these models at these batch sizes)."""

_BYTES_PER_PARAMETER = 2  # fp16 / bf16 weights
_GROUPS = {"serving.properties:": "serving.properties", "env": "Environment variables"}
"""Row-name prefixes of :meth:`Preset.table_rows` that ``str(preset)`` shows as a heading."""
_GIB = 1024**3
_SECRET_NAME = re.compile(r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|KEY|KEY_ID)$", re.IGNORECASE)
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])")
# A mixture of experts' id names the ACTIVE parameters and the experts: "17B-16E" (Llama 4
# Scout holds about 109B parameters in all, of which 17B are used per token).
_ACTIVE_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[bB]-(\d+)[eE](?![a-zA-Z])")


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class InstanceType:
    """A SageMaker GPU instance type.

    Attributes:
        name: e.g. ``ml.g5.2xlarge``.
        gpus: the number of GPUs.
        gpu_model: e.g. ``A10G``.
        gpu_memory_gib_per_gpu: nominal memory of one GPU (the usable amount is a little
            lower, e.g. about 22.5 GiB of an A10G's 24).
        vcpus / memory_gib: the host's vCPUs and memory.
        approx_usd_per_hour: approximate on-demand price of a SageMaker real-time endpoint
            instance in us-east-1, or ``None`` when not known; see
            https://aws.amazon.com/sagemaker/pricing/ for the current price in your region.
    """

    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib_per_gpu: float
    vcpus: int
    memory_gib: int
    approx_usd_per_hour: float | None

    @property
    def total_gpu_memory_gib(self) -> float:
        """The memory of all GPUs together (nominal)."""
        return self.gpus * self.gpu_memory_gib_per_gpu

    # Short names the notebook generator uses.
    @property
    def gpu_name(self) -> str:
        """Alias of :attr:`gpu_model`."""
        return self.gpu_model

    @property
    def gpu_memory_gib(self) -> float:
        """Alias of :attr:`gpu_memory_gib_per_gpu`."""
        return self.gpu_memory_gib_per_gpu

    @property
    def price_per_hour(self) -> float | None:
        """Alias of :attr:`approx_usd_per_hour`."""
        return self.approx_usd_per_hour

    def describe(self) -> str:
        """Return e.g. ``1 x NVIDIA A10G (24 GiB each), 8 vCPUs, 32 GiB; ~$1.52/h``."""
        price = (f"; about ${self.approx_usd_per_hour:.2f}/h on demand (us-east-1)"
                 if self.approx_usd_per_hour is not None else "")
        return (f"{self.gpus} x NVIDIA {self.gpu_model} ({self.gpu_memory_gib_per_gpu:g} GiB "
                f"each), {self.vcpus} vCPUs, {self.memory_gib} GiB{price}")


def _instances(*rows: tuple[str, int, str, float, int, int, float | None]
               ) -> dict[str, InstanceType]:
    return {row[0]: InstanceType(*row) for row in rows}


INSTANCE_TYPES: dict[str, InstanceType] = _instances(
    # GPUs and memory: AWS's accelerated-computing instance pages (G5, G6, G6e, P4, P5).
    # Prices: SageMaker real-time inference, on demand, us-east-1, APPROXIMATE (USD per hour,
    # https://aws.amazon.com/sagemaker/pricing/); they change, check before you rely on them.
    # name               GPUs  GPU     GiB/GPU vCPU  GiB   ~USD/h
    ("ml.g5.xlarge",      1, "A10G",   24,    4,   16,   1.41),
    ("ml.g5.2xlarge",     1, "A10G",   24,    8,   32,   1.52),
    ("ml.g5.4xlarge",     1, "A10G",   24,   16,   64,   2.03),
    ("ml.g5.12xlarge",    4, "A10G",   24,   48,  192,   7.09),
    ("ml.g5.24xlarge",    4, "A10G",   24,   96,  384,  10.18),
    ("ml.g5.48xlarge",    8, "A10G",   24,  192,  768,  20.36),
    ("ml.g6.xlarge",      1, "L4",     24,    4,   16,   1.01),
    ("ml.g6.2xlarge",     1, "L4",     24,    8,   32,   1.22),
    ("ml.g6.12xlarge",    4, "L4",     24,   48,  192,   5.75),
    ("ml.g6.48xlarge",    8, "L4",     24,  192,  768,  16.43),
    ("ml.g6e.xlarge",     1, "L40S",   48,    4,   32,   2.34),
    ("ml.g6e.2xlarge",    1, "L40S",   48,    8,   64,   2.81),
    ("ml.g6e.12xlarge",   4, "L40S",   48,   48,  384,  13.12),
    ("ml.g6e.48xlarge",   8, "L40S",   48,  192, 1536,  37.61),
    ("ml.p4d.24xlarge",   8, "A100",   40,   96, 1152,  37.69),
    ("ml.p4de.24xlarge",  8, "A100",   80,   96, 1152,  None),
    # P5: 8 x H100 80 GB HBM3, 192 vCPUs, 2 TiB (AWS P5 instance page); price approximate.
    ("ml.p5.48xlarge",    8, "H100",   80,  192, 2048, 113.07),
)
"""The GPU instance types the presets know (add one here to use another)."""


def instance_info(instance_type: str) -> InstanceType:
    """Return the :class:`InstanceType` named ``instance_type``.

    Raises:
        PresetError: for an instance type that is not in :data:`INSTANCE_TYPES`, listing those
            that are.
    """
    try:
        return INSTANCE_TYPES[instance_type]
    except (KeyError, TypeError):
        known = ", ".join(INSTANCE_TYPES)
        hint = ""
        if isinstance(instance_type, str) and not instance_type.startswith("ml."):
            hint = f" SageMaker instance types start with 'ml.' (ml.{instance_type}?)."
        raise PresetError(
            f"Unknown instance type {instance_type!r}.{hint} Use one of: {known}; or add an "
            "InstanceType for it to common.presets.INSTANCE_TYPES (GPUs, GPU memory, price)."
        ) from None


# --------------------------------------------------------------------------- secrets


def mask_secret(value: str) -> str:
    """Return ``value`` masked for display: at most its first 3 characters, then ``****``.

    Values shorter than 12 characters are masked completely (3 characters of a short value
    would give too much away); a real Hugging Face token shows as ``hf_****``.
    """
    text = str(value)
    return (text[:3] if len(text) >= 12 else "") + "****"


def _masked(environment: Mapping[str, str]) -> dict[str, str]:
    return {key: mask_secret(value) if _SECRET_NAME.search(key) else value
            for key, value in environment.items()}


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True, repr=False)
class Preset:
    """Deployment settings for one model on one container and instance type.

    Attributes:
        model_id: the Hugging Face model id, e.g. ``meta-llama/Llama-2-7b-chat-hf``.
        size: the size label, e.g. ``"7b"``.
        container: ``"tgi"`` (Hugging Face LLM container) or ``"lmi"`` (AWS LMI, DJL Serving).
        instance_type: the SageMaker instance type, e.g. ``ml.g5.2xlarge``.
        num_gpus: GPUs to shard the model over (TGI ``SM_NUM_GPUS``, LMI
            ``option.tensor_parallel_degree``); must equal the instance's GPUs.
        params_billion: the model's parameters in billions (for the memory check).
        container_version: the image version (``image_uris.retrieve(..., version=...)``).
        max_input_tokens: the longest prompt (TGI ``MAX_INPUT_TOKENS``; for LMI only checked
            by :func:`common.endpoints.validate_payload`).
        max_total_tokens: prompt + generated tokens of one request (TGI ``MAX_TOTAL_TOKENS``,
            LMI ``option.max_model_len``). Llama 2's context is 4,096.
        max_batch_prefill_tokens: tokens prefilled in one batch step (TGI
            ``MAX_BATCH_PREFILL_TOKENS``, LMI ``option.max_rolling_batch_prefill_tokens``, which
            is vLLM's ``max_num_batched_tokens``); at least ``max_input_tokens``.
        max_batch_total_tokens: TGI ``MAX_BATCH_TOTAL_TOKENS``, or ``None`` to let TGI size
            it from the free GPU memory (recommended); not used by LMI.
        max_new_tokens: the ``max_new_tokens`` the recipes send by default. Always send one:
            LMI generates only 30 tokens without it.
        max_rolling_batch_size: LMI ``option.max_rolling_batch_size`` (vLLM ``max_num_seqs``),
            the most requests decoded together; not used by TGI.
        dtype: LMI ``option.dtype`` (``fp16``: Llama 2's weights are float16).
        health_check_timeout_s: ``ContainerStartupHealthCheckTimeoutInSeconds`` (60-3600):
            TGI downloads the weights from the hub inside this time, LMI from S3.
        download_timeout_s: ``ModelDataDownloadTimeoutInSeconds`` (60-3600).
        environment: extra environment variables for the container, applied last (e.g.
            ``{"HF_MODEL_REVISION": "..."}``); :meth:`validate` checks the settings it
            overrides.
        num_attention_heads / num_kv_heads: the model's attention and KV heads, when known
            (:mod:`common.sizing` sets them): :meth:`validate` then checks that the GPUs
            divide them (TGI and vLLM shard the heads over the GPUs).
        kv_bytes_per_token: KV-cache bytes of one token (2 x layers x KV heads x head dim x
            2 bytes), when known: :meth:`validate` then checks that the GPU memory left
            after the weights holds one full request.
        max_position_embeddings: the model's context length, when known:
            ``max_total_tokens`` may not exceed it.
        revision: the model's branch, tag or commit on the Hub (``None``: the default branch).
            TGI downloads it (``HF_MODEL_REVISION``); LMI too when it loads from the Hub
            (``option.revision`` in ``serving.properties``); the LMI recipes' weight copy
            copies it.
    """

    model_id: str
    size: str
    container: str
    instance_type: str
    num_gpus: int
    params_billion: float
    container_version: str
    max_input_tokens: int = 3072
    max_total_tokens: int = 4096
    max_batch_prefill_tokens: int = 4096
    max_batch_total_tokens: int | None = None
    max_new_tokens: int = 512
    max_rolling_batch_size: int = 32
    dtype: str = "fp16"
    health_check_timeout_s: int = 900
    download_timeout_s: int = 900
    environment: Mapping[str, str] = field(default_factory=dict)
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    kv_bytes_per_token: int | None = None
    max_position_embeddings: int | None = None
    revision: str | None = None  # the Hub revision (branch, tag or commit); None: main

    # ----------------------------------------------------------------- derived values

    @property
    def instance(self) -> InstanceType:
        """The :class:`InstanceType` of :attr:`instance_type` (raises :class:`PresetError`)."""
        return instance_info(self.instance_type)

    @property
    def weights_gib(self) -> float:
        """The fp16 weights' size in GiB (2 bytes per parameter)."""
        return self.params_billion * 1e9 * _BYTES_PER_PARAMETER / _GIB

    def inference_ami_version(self, region: str = "us-east-1") -> str | None:
        """Return the ``ProductionVariant.InferenceAmiVersion`` this preset's image needs on
        its instance type (:func:`common.gpu_drivers.inference_ami_version`; the image tag,
        and so the answer, is the same in every region).

        Raises:
            PresetError: as :func:`image_uri`, or when no SageMaker AMI has a driver for the
                image's CUDA version.
        """
        from common.gpu_drivers import inference_ami_version

        return inference_ami_version(image_uri(self, region), self.instance_type)

    # ----------------------------------------------------------------- validation

    def validate(self) -> Preset:
        """Check that this preset can work on its instance, before anything is created.

        Returns:
            ``self``, so that ``preset = get_preset(...).validate()`` reads well.

        Raises:
            PresetError: listing every problem with its fix: an unknown container or
                instance type; a GPU count (``num_gpus``, or ``SM_NUM_GPUS`` /
                ``TENSOR_PARALLEL_DEGREE`` in :attr:`environment`) that is not the instance's;
                fp16 weights that do not fit the GPUs' memory; ``max_input_tokens >=
                max_total_tokens``; a batch token budget below one full request; a
                ``params_billion`` that contradicts the size in the model id; both
                ``MAX_INPUT_LENGTH`` and ``MAX_INPUT_TOKENS``; timeouts outside 60-3600 s.
        """
        problems: list[str] = []
        if self.container not in CONTAINERS:
            problems.append(f"container is {self.container!r}: use 'tgi' or 'lmi'.")
        try:
            instance: InstanceType | None = self.instance
        except PresetError as exc:
            instance = None
            problems.append(str(exc))
        env = {str(k): str(v) for k, v in self.environment.items()}
        problems += self._environment_problems(env)
        if instance is not None:
            problems += self._gpu_problems(instance, env)
        problems += self._size_problems()
        problems += self._token_problems(env)
        if instance is not None:
            problems += self._architecture_problems(instance)
        for name in ("health_check_timeout_s", "download_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 60 <= value <= 3600:
                problems.append(f"{name}={value!r}: SageMaker accepts 60 to 3600 seconds.")
        if problems:
            raise PresetError(
                f"The preset for {self.model_id} ({self.container}, {self.instance_type}) "
                "cannot work:\n- " + "\n- ".join(problems)
            )
        return self

    def _environment_problems(self, env: Mapping[str, str]) -> list[str]:
        problems = []
        if "MAX_INPUT_LENGTH" in env:
            both = "both MAX_INPUT_LENGTH and MAX_INPUT_TOKENS are set" + (
                "" if "MAX_INPUT_TOKENS" in env else
                " (the preset always sets MAX_INPUT_TOKENS from max_input_tokens)")
            problems.append(
                f"{both}; TGI refuses to start with both. MAX_INPUT_LENGTH is the deprecated "
                "name: remove it from environment and set max_input_tokens instead."
            )
        return problems

    def _gpu_problems(self, instance: InstanceType, env: Mapping[str, str]) -> list[str]:
        problems = []
        gpus = instance.gpus
        if self.num_gpus != gpus:
            problems.append(
                f"num_gpus={self.num_gpus}, but {instance.name} has {gpus} GPU"
                f"{'s' if gpus != 1 else ''}: set num_gpus={gpus} (the model is sharded over "
                "every GPU of the instance; fewer leaves GPUs idle, more cannot start)."
            )
        for key in ("SM_NUM_GPUS", "TENSOR_PARALLEL_DEGREE", "OPTION_TENSOR_PARALLEL_DEGREE"):
            if key in env and env[key] != str(gpus):
                problems.append(
                    f"environment sets {key}={env[key]}, but {instance.name} has {gpus} GPUs: "
                    f"remove it from environment (num_gpus sets it) or set it to {gpus}."
                )
        usable = instance.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)
        if self.weights_gib > usable:
            bigger = [i.name for i in INSTANCE_TYPES.values()
                      if self.weights_gib <= i.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)]
            problems.append(
                f"the model does not fit: its fp16 weights take {self.weights_gib:.1f} GiB "
                f"({self.params_billion:g} B parameters x 2 bytes), more than "
                f"{1 - GPU_MEMORY_HEADROOM:.0%} of {instance.name}'s "
                f"{instance.total_gpu_memory_gib:g} GiB of GPU memory ({usable:.1f} GiB; the "
                "rest is kept for the KV cache and activations). Use a bigger instance"
                + (f" (e.g. {', '.join(bigger[:4])})" if bigger else "")
                + " with num_gpus set to its GPUs, or a quantized model."
            )
        return problems

    def kv_cache_bytes(self, instance: InstanceType | None = None) -> int:
        """GPU bytes left for the KV cache on the instance: :data:`GPU_MEMORY_UTILIZATION` of
        the GPUs' memory, less the weights and :data:`ACTIVATION_RESERVE_GIB` per GPU."""
        info = instance or self.instance
        usable = info.total_gpu_memory_gib * GPU_MEMORY_UTILIZATION
        free = usable - self.weights_gib - ACTIVATION_RESERVE_GIB * info.gpus
        return max(0, int(free * _GIB))

    def _architecture_problems(self, instance: InstanceType) -> list[str]:
        problems = []
        gpus = instance.gpus
        for name in ("num_attention_heads", "num_kv_heads"):
            heads = getattr(self, name)
            if heads and heads % gpus:
                fits = [i.name for i in INSTANCE_TYPES.values() if heads % i.gpus == 0
                        and self.weights_gib <= i.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)]
                problems.append(
                    f"{instance.name} has {gpus} GPUs, which do not divide the model's {heads} "
                    f"{'attention' if name == 'num_attention_heads' else 'KV'} heads: TGI and "
                    "vLLM shard the heads evenly over the GPUs and refuse to start. Use an "
                    "instance whose GPU count divides it"
                    + (f" (e.g. {', '.join(fits[:4])})" if fits else "") + ".")
        limit = self.max_position_embeddings
        if limit and self.max_total_tokens > limit:
            problems.append(
                f"max_total_tokens ({self.max_total_tokens}) exceeds the model's context "
                f"length (max_position_embeddings = {limit}): lower it to at most {limit}.")
        if self.kv_bytes_per_token:
            cache = self.kv_cache_bytes(instance)
            need = self.max_total_tokens * self.kv_bytes_per_token
            if need > cache:
                problems.append(
                    f"the KV cache cannot hold one full request: {self.max_total_tokens} tokens "
                    f"x {self.kv_bytes_per_token:,} bytes per token = {need / _GIB:.1f} GiB, "
                    f"but {instance.name} has {cache / _GIB:.1f} GiB left after the weights "
                    f"({GPU_MEMORY_UTILIZATION:.0%} of {instance.total_gpu_memory_gib:g} GiB "
                    f"- {self.weights_gib:.1f} GiB weights - {ACTIVATION_RESERVE_GIB:g} GiB per "
                    f"GPU for activations). Lower max_total_tokens to at most "
                    f"{cache // self.kv_bytes_per_token} or use a bigger instance.")
        return problems

    def _size_problems(self) -> list[str]:
        if not isinstance(self.params_billion, (int, float)) or self.params_billion <= 0:
            return [f"params_billion={self.params_billion!r}: give the model's parameter "
                    "count in billions (e.g. 6.74 for Llama 2 7B)."]
        active = active_size_from_model_id(self.model_id)
        if active is not None:  # the id names the active parameters: the total is more
            if self.params_billion < 0.75 * active:
                return [f"params_billion={self.params_billion:g}, but the model id "
                        f"{self.model_id!r} says {active:g}B parameters are active per token, "
                        "and a mixture of experts holds more than that in all: set "
                        "params_billion to the total (the safetensors index's total_size / 2)."]
            return []
        named = size_from_model_id(self.model_id)
        if named is not None and abs(named - self.params_billion) > 0.25 * named:
            return [f"params_billion={self.params_billion:g}, but the model id "
                    f"{self.model_id!r} says {named:g}B: set params_billion={named:g} "
                    "(dataclasses.replace) so that the memory check uses the right size."]
        return []

    def _token_problems(self, env: Mapping[str, str]) -> list[str]:
        problems = []
        values: dict[str, Any] = {
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "max_batch_prefill_tokens": self.max_batch_prefill_tokens,
            "max_batch_total_tokens": self.max_batch_total_tokens,
        }
        # Environment overrides win in the container, so check what it will really get.
        for name in list(values):
            key = name.upper()
            if key in env:
                try:
                    values[name] = int(env[key])
                except ValueError:
                    problems.append(f"environment sets {key}={env[key]!r}: use a whole number.")
        for name, value in values.items():
            if name == "max_batch_total_tokens" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r}: use a positive whole number.")
        for name in ("max_new_tokens", "max_rolling_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r}: use a positive whole number.")
        if problems:
            return problems
        max_input, max_total = values["max_input_tokens"], values["max_total_tokens"]
        prefill, batch_total = values["max_batch_prefill_tokens"], values["max_batch_total_tokens"]
        if max_input >= max_total:
            problems.append(
                f"MAX_INPUT_TOKENS ({max_input}) >= MAX_TOTAL_TOKENS ({max_total}): no token "
                f"would be left to generate. Lower max_input_tokens (e.g. {max_total * 3 // 4}) "
                "or raise max_total_tokens up to the model's context length."
            )
        elif self.max_new_tokens >= max_total:
            problems.append(
                f"max_new_tokens ({self.max_new_tokens}) leaves no room for a prompt within "
                f"max_total_tokens ({max_total}): lower it (e.g. to {max_total - max_input})."
            )
        if prefill < max_input:
            problems.append(
                f"the batch token budget is below one full request: MAX_BATCH_PREFILL_TOKENS "
                f"({prefill}) < MAX_INPUT_TOKENS ({max_input}), so a longest prompt could "
                f"never be prefilled. Set max_batch_prefill_tokens >= {max_input}."
            )
        if batch_total is not None and batch_total < max(max_total, prefill):
            problems.append(
                f"the batch token budget is below one full request: MAX_BATCH_TOTAL_TOKENS "
                f"({batch_total}) < max(MAX_TOTAL_TOKENS, MAX_BATCH_PREFILL_TOKENS) "
                f"({max(max_total, prefill)}). Raise max_batch_total_tokens, or set it to "
                "None to let TGI size it from the free GPU memory."
            )
        return problems

    # ----------------------------------------------------------------- container settings

    def _require(self, container: str, what: str) -> None:
        if self.container != container:
            other = {"tgi": "tgi_environment()", "lmi": "serving_properties(model_uri)"}
            raise PresetError(
                f"{what} is for {container.upper()} presets; this preset is for "
                f"{self.container!r}: use {other.get(self.container, 'the matching method')}."
            )

    def _tgi_settings(self) -> dict[str, str]:
        env = {
            "HF_MODEL_ID": self.model_id,
            "SM_NUM_GPUS": str(self.num_gpus),
            "MAX_INPUT_TOKENS": str(self.max_input_tokens),
            "MAX_TOTAL_TOKENS": str(self.max_total_tokens),
            "MAX_BATCH_PREFILL_TOKENS": str(self.max_batch_prefill_tokens),
        }
        if self.max_batch_total_tokens is not None:
            env["MAX_BATCH_TOTAL_TOKENS"] = str(self.max_batch_total_tokens)
        if self.revision:
            env["HF_MODEL_REVISION"] = self.revision
        env.update({str(k): str(v) for k, v in self.environment.items()})
        return env

    def tgi_environment(self, hf_token: str | None = None) -> dict[str, str]:
        """Return the TGI container's environment variables.

        ``HF_MODEL_ID``, ``SM_NUM_GPUS``, ``MAX_INPUT_TOKENS``, ``MAX_TOTAL_TOKENS``,
        ``MAX_BATCH_PREFILL_TOKENS``, ``MAX_BATCH_TOTAL_TOKENS`` and ``HF_MODEL_REVISION``
        (each only when set), then
        :attr:`environment`, then ``HF_TOKEN`` when ``hf_token`` is given. (Never the
        deprecated ``MAX_INPUT_LENGTH``; ``MESSAGES_API_ENABLED`` is gone since TGI 2.4.)

        Args:
            hf_token: a Hugging Face read token for gated models such as Llama 2.

        Raises:
            PresetError: for an LMI preset, or when :meth:`validate` fails.
        """
        self._require("tgi", "tgi_environment()")
        self.validate()
        env = self._tgi_settings()
        if hf_token:
            env["HF_TOKEN"] = hf_token.strip()
        return env

    def _lmi_settings(self, model_uri: str) -> dict[str, str]:
        # The revision is a Hub setting: S3 holds the files of one revision already.
        revision = ({"option.revision": self.revision}
                    if self.revision and not model_uri.startswith("s3://") else {})
        return {
            "engine": "Python",
            "option.model_id": model_uri,
            **revision,
            "option.tensor_parallel_degree": str(self.num_gpus),
            "option.dtype": self.dtype,
            "option.max_model_len": str(self.max_total_tokens),
            "option.max_rolling_batch_size": str(self.max_rolling_batch_size),
            "option.max_rolling_batch_prefill_tokens": str(self.max_batch_prefill_tokens),
            "option.rolling_batch": "disable",
            "option.async_mode": "true",
            "option.entryPoint": LMI_ENTRY_POINT,
        }

    def serving_properties(self, model_uri: str) -> dict[str, str]:
        """Return LMI's ``serving.properties`` as an ordered ``{key: value}``.

        vLLM async mode, configured the way DJL Serving 0.36.0 documents it:
        ``engine=Python``, ``option.async_mode=true`` with ``option.rolling_batch=disable``
        (``configurations_model.md``: the two modes exclude each other) and the async vLLM
        handler as ``option.entryPoint`` (LMI picks these itself when ``rolling_batch`` is
        ``auto``; they are spelled out so that the file says what runs).
        ``option.tensor_parallel_degree`` is the instance's GPU count (the docs say the default
        is 1, the code uses every GPU: explicit is safer); ``option.max_model_len``,
        ``option.max_rolling_batch_size`` and ``option.max_rolling_batch_prefill_tokens`` are
        vLLM's ``max_model_len``, ``max_num_seqs`` and ``max_num_batched_tokens``. A hub id
        with a :attr:`revision` adds ``option.revision`` (LMI's ``HF_REVISION``, djl-serving
        0.36.0 ``lmi/user_guides/starting-guide.md``); an S3 prefix holds one revision's files
        already.

        Args:
            model_uri: where the container loads the weights from: an ``s3://`` prefix with
                the uncompressed Hugging Face files (as the recipes upload them), or a hub id.

        Raises:
            PresetError: for a TGI preset, an empty or multi-line ``model_uri``, or when
                :meth:`validate` fails.
        """
        self._require("lmi", "serving_properties()")
        self.validate()
        uri = str(model_uri).strip()
        if not uri or any(c in uri for c in "\r\n\\") or " " in uri:
            raise PresetError(
                f"model_uri {model_uri!r} cannot go into serving.properties: give the S3 prefix "
                "of the weights (s3://bucket/prefix/) or a hub id, on one line without spaces."
            )
        return self._lmi_settings(uri)

    def lmi_environment(self, hf_token: str | None = None) -> dict[str, str]:
        """Return the LMI container's environment variables.

        Everything LMI needs is in ``serving.properties``; this returns :attr:`environment`
        and, when ``hf_token`` is given (weights loaded from the hub instead of S3),
        ``HF_TOKEN``.

        Raises:
            PresetError: for a TGI preset, or when :meth:`validate` fails.
        """
        self._require("lmi", "lmi_environment()")
        self.validate()
        env = {str(k): str(v) for k, v in self.environment.items()}
        if hf_token:
            env["HF_TOKEN"] = hf_token.strip()
        return env

    # ----------------------------------------------------------------- display

    def table_rows(self, hf_token: str | None = None) -> list[tuple[str, str]]:
        """Return the preset as ``(setting, value)`` rows for display, secrets masked.

        Works on invalid presets too (it does not validate), so that a failing preset can
        still be shown. ``HF_TOKEN`` (and any variable named like a token, secret or key) is
        shown as at most its first 3 characters and ``****``.

        Args:
            hf_token: the token the deploy will pass, to show that one is set (masked).
        """
        try:
            hardware = self.instance.describe()
        except PresetError:
            hardware = "(unknown instance type)"
        label = {"tgi": "Hugging Face TGI", "lmi": "AWS LMI (DJL Serving)"}.get(
            self.container, self.container)
        rows = [
            ("Model", self.model_id + (f" (revision {self.revision})" if self.revision else "")),
            ("Parameters", f"{self.params_billion:g} B (fp16 weights: {self.weights_gib:.1f} GiB)"),
            ("Container", f"{label} {self.container_version}"),
            ("Instance type", self.instance_type),
            ("Hardware", hardware),
        ]
        if self.container == "lmi":
            rows += [(f"serving.properties: {key}", value) for key, value in
                     self._lmi_settings("<S3 prefix of the weights, set at upload>").items()]
            env = _masked(self.environment)
        else:
            env = _masked(self._tgi_settings())
        rows += [(f"env {key}", value) for key, value in env.items()]
        if hf_token:
            rows.append(("env HF_TOKEN", mask_secret(hf_token)))
        elif self.container == "tgi" and "HF_TOKEN" not in env:
            rows.append(("env HF_TOKEN", "(passed at deploy time; never stored in the preset)"))
        if self.num_attention_heads:
            rows.append(("Attention / KV heads",
                         f"{self.num_attention_heads} / {self.num_kv_heads or '?'}"))
        if self.kv_bytes_per_token:
            rows.append(("KV cache per token", f"{self.kv_bytes_per_token:,} bytes"))
        if self.max_position_embeddings:
            rows.append(("Context length (positions)", f"{self.max_position_embeddings:,}"))
        rows += [
            ("max_new_tokens per request", str(self.max_new_tokens)),
            ("Health-check timeout", f"{self.health_check_timeout_s} s"),
            ("Model download timeout", f"{self.download_timeout_s} s"),
        ]
        return rows

    def __repr__(self) -> str:
        fields = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "environment":
                value = _masked(value)
            fields.append(f"{item.name}={value!r}")
        return f"Preset({', '.join(fields)})"

    def __str__(self) -> str:
        """The preset as an aligned two-column table; ``serving.properties`` keys and
        environment variables are indented under a heading of their own."""
        lines: list[tuple[str, str]] = []
        heading = None
        for name, value in self.table_rows():
            group, _, key = name.partition(" ")
            if group in _GROUPS and key:
                if heading != group:
                    lines.append((_GROUPS[group], ""))
                    heading = group
                lines.append(("  " + key.removeprefix(": ").lstrip(), value))
            else:
                lines.append((name, value))
                heading = None
        width = max(len(name) for name, value in lines if value)
        return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text view (Jupyter's text/plain, a terminal, a headless run): the
        aligned table of :meth:`__str__`, not the one long line of :meth:`__repr__`."""
        printer.text("Preset(...)" if cycle else str(self))

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'><code>{html.escape(value)}</code></td></tr>"
            for name, value in self.table_rows()
        )
        return f"<table>{body}</table>"


def size_from_model_id(model_id: str) -> float | None:
    """Return the total size a model id names (``Llama-2-13b-chat-hf`` -> 13.0), else
    ``None`` -- also for a mixture of experts' id, which names the active parameters
    (``Llama-4-Scout-17B-16E``: see :func:`active_size_from_model_id`)."""
    if active_size_from_model_id(model_id) is not None:
        return None
    match = _SIZE_IN_NAME.search(str(model_id).rsplit("/", 1)[-1])
    return float(match.group(1)) if match else None


def active_size_from_model_id(model_id: str) -> float | None:
    """Return the active parameters (billions) a mixture of experts' id names
    (``Llama-4-Scout-17B-16E-Instruct`` -> 17.0), else ``None``."""
    match = _ACTIVE_SIZE_IN_NAME.search(str(model_id).rsplit("/", 1)[-1])
    return float(match.group(1)) if match else None


# --------------------------------------------------------------------------- the table


_LLAMA2 = {
    # size: (parameters in billions, instance, health-check timeout, download timeout)
    "7b": (6.74, "ml.g5.2xlarge", 900, 900),
    "13b": (13.02, "ml.g5.12xlarge", 1500, 1200),
    "70b": (68.98, "ml.g5.48xlarge", 3000, 2400),
}


def _llama2_preset(size: str, container: str) -> Preset:
    params, instance, health, download = _LLAMA2[size]
    return Preset(
        model_id=f"meta-llama/Llama-2-{size}-chat-hf",
        size=size,
        container=container,
        instance_type=instance,
        num_gpus=INSTANCE_TYPES[instance].gpus,
        params_billion=params,
        container_version=TGI_VERSION if container == "tgi" else LMI_VERSION,
        health_check_timeout_s=health,
        download_timeout_s=download,
    )


PRESETS: dict[tuple[str, str], Preset] = {
    (size, container): _llama2_preset(size, container)
    for size in _LLAMA2 for container in CONTAINERS
}
"""The six Llama 2 chat presets, keyed by ``(size, container)``, e.g. ``("7b", "tgi")``."""


def get_preset(model: str, container: str) -> Preset:
    """Return the preset of a Llama 2 chat model on a container.

    Args:
        model: the size (``"7b"``, ``"13b"``, ``"70b"``, any case) or the full model id
            (``"meta-llama/Llama-2-7b-chat-hf"``).
        container: ``"tgi"`` or ``"lmi"``.

    Raises:
        PresetError: for an unknown model or container, listing the presets that exist (and
            pointing to :func:`custom_preset` for other models).
    """
    wanted_container = str(container).strip().lower()
    wanted = str(model).strip()
    size = wanted.lower()
    if size not in _LLAMA2:
        size = next((s for (s, _), p in PRESETS.items() if p.model_id.lower() == wanted.lower()),
                    "")
    preset = PRESETS.get((size, wanted_container))
    if preset is None:
        known = ", ".join(f"({s!r}, {c!r})" for s, c in PRESETS)
        models = ", ".join(sorted({p.model_id for p in PRESETS.values()}))
        raise PresetError(
            f"No preset for model {model!r} on container {container!r}. Presets exist for "
            f"{known} (models: {models}). For another model use "
            "common.presets.custom_preset(model_id, container, instance_type, params_billion=...)."
        )
    return preset


def custom_preset(
    model_id: str,
    container: str,
    instance_type: str,
    *,
    params_billion: float | None = None,
    **overrides: Any,
) -> Preset:
    """Return a validated preset for another model (Llama 2 base, Code Llama, Llama 3, ...).

    Starts from the Llama 2 defaults (4,096-token context, fp16) with the GPU count of
    ``instance_type`` and start-up timeouts scaled to the model's size.

    Args:
        model_id: the Hugging Face model id.
        container: ``"tgi"`` or ``"lmi"``.
        instance_type: a key of :data:`INSTANCE_TYPES`.
        params_billion: the parameter count in billions; read from the model id (``...-34b-...``)
            when not given.
        **overrides: any other :class:`Preset` field, e.g. ``max_total_tokens=8192`` for
            Llama 3's context.

    Raises:
        PresetError: for an unknown container or instance type, a size that cannot be read from
            the model id when ``params_billion`` is not given, an unknown field, or when
            :meth:`Preset.validate` fails.
    """
    if container not in CONTAINERS:
        raise PresetError(f"container is {container!r}: use 'tgi' or 'lmi'.")
    instance = instance_info(instance_type)
    if params_billion is None:
        params_billion = size_from_model_id(model_id)
        if params_billion is None:
            raise PresetError(
                f"Cannot read the model size from {model_id!r}: pass params_billion=..."
            )
    names = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise PresetError(f"Unknown preset fields {unknown}; the fields are: {sorted(names)}.")
    health = 900 if params_billion <= 10 else 1500 if params_billion <= 20 else 3000
    settings: dict[str, Any] = {
        "model_id": model_id,
        "size": f"{params_billion:g}b",
        "container": container,
        "instance_type": instance_type,
        "num_gpus": instance.gpus,
        "params_billion": float(params_billion),
        "container_version": TGI_VERSION if container == "tgi" else LMI_VERSION,
        "health_check_timeout_s": health,
        "download_timeout_s": min(health, 2400),
    }
    settings.update(overrides)
    return Preset(**settings).validate()


# --------------------------------------------------------------------------- rendering


def render_serving_properties(preset: Preset, model_uri: str) -> str:
    """Render LMI's ``serving.properties`` file from a preset with the jinja2 template.

    The template is ``common/templates/serving.properties.j2`` (package data); the settings
    are those of :meth:`Preset.serving_properties`.

    Returns:
        The file's text: a short comment header, then one ``key=value`` line per setting.

    Raises:
        PresetError: as :meth:`Preset.serving_properties`.
    """
    import jinja2

    properties = preset.serving_properties(model_uri)
    source = (importlib.resources.files("common") / "templates" / "serving.properties.j2"
              ).read_text(encoding="utf-8")
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )
    return environment.from_string(source).render(
        model_id=preset.model_id,
        instance_type=preset.instance_type,
        num_gpus=preset.num_gpus,
        container_version=preset.container_version,
        properties=properties,
        preset=preset,
    )


_IMAGE_FRAMEWORKS = {"tgi": "huggingface-llm", "lmi": "djl-lmi"}


def image_uri(preset: Preset, region: str) -> str:
    """Return the container image URI of ``preset`` in ``region`` (no network needed).

    Wraps ``sagemaker.core.image_uris.retrieve("huggingface-llm" | "djl-lmi", region,
    version=preset.container_version)``, which reads the SDK's bundled image table. For
    TGI 3.3.6 that is ``763104351884.dkr.ecr.<region>.amazonaws.com/
    huggingface-pytorch-tgi-inference:2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04``; for LMI
    0.36.0 ``.../djl-inference:0.36.0-lmi27.0.0-cu130``.

    Raises:
        PresetError: for an unknown container, or a version or region the installed SDK does
            not know (upgrade ``sagemaker`` or pick a version it lists).
    """
    framework = _IMAGE_FRAMEWORKS.get(preset.container)
    if framework is None:
        raise PresetError(f"container is {preset.container!r}: use 'tgi' or 'lmi'.")
    from sagemaker.core import image_uris

    try:
        return str(image_uris.retrieve(framework, region=region,
                                       version=preset.container_version))
    except ValueError as exc:
        raise PresetError(
            f"The installed SageMaker SDK has no {framework} image for version "
            f"{preset.container_version!r} in region {region!r}: {exc}. Upgrade the sagemaker "
            "package or set container_version to a version it lists."
        ) from exc



# --------------------------------------------------------------------------- scaling

_MAX_INSTANCES = {"7b": 4, "13b": 2, "70b": 2}
"""Default ``ManagedInstanceScaling`` maximum per Llama 2 size (others: 2)."""
MEMORY_PER_COPY_MB = 1024
"""``MinMemoryRequiredInMb`` of one copy. It is a scheduling reservation against a pool that is
far below the host's memory, not a cap on what the container uses: the SageMaker SDK's
``ModelBuilder`` (sagemaker 3.27, ``serve/model_builder.py``) defaults to 1,024 MB because
larger values "can exceed SageMaker inference component limits (which are lower than raw EC2
memory)", and an ml.g5.xlarge (16 GiB) was seen accepting 1,024 MB and refusing 4,096 MB
("There is not enough hardware resources on the instances for this endpoint to create a copy
of the inference component"). A vLLM or TGI copy that reserves 1,024 MB uses several GB of host
memory without trouble."""


@dataclass(frozen=True)
class ScalingSettings:
    """How an inference-component endpoint of one preset scales (see :func:`scaling_settings`).

    Attributes:
        min_instances / max_instances: the variant's ``ManagedInstanceScaling`` range
            (``MinInstanceCount`` 0 lets the endpoint give back every instance when idle).
        accelerators_per_copy: ``NumberOfAcceleratorDevicesRequired`` of one copy: the GPUs
            the model is sharded over (the preset's ``num_gpus``).
        memory_per_copy_mb: ``MinMemoryRequiredInMb`` of one copy (host memory, not GPU): a
            scheduling reservation, :data:`MEMORY_PER_COPY_MB`.
        copies_per_instance: how many copies one instance holds (GPUs / GPUs per copy).
        max_copies: the scalable target's ``MaxCapacity`` (``max_instances *
            copies_per_instance``); its ``MinCapacity`` is 0.
        copy_concurrency: the most streams one copy decodes together by default (the
            preset's ``max_rolling_batch_size``: vLLM's ``max_num_seqs``; TGI batches up to
            its token budget); more requests queue inside the copy. The capacity sweep
            measures where time to first token degrades, which is usually lower.
    """

    min_instances: int
    max_instances: int
    accelerators_per_copy: int
    memory_per_copy_mb: int
    copies_per_instance: int
    max_copies: int
    copy_concurrency: int

    def describe(self) -> str:
        """Return the settings as a few lines for a notebook."""
        return (
            f"instances: {self.min_instances} to {self.max_instances} "
            f"(ManagedInstanceScaling)\n"
            f"one copy: {self.accelerators_per_copy} GPU(s), {self.memory_per_copy_mb:,} MB "
            f"host memory, up to {self.copy_concurrency} streams decoded together\n"
            f"copies: 0 to {self.max_copies} ({self.copies_per_instance} per instance)"
        )


def scaling_settings(preset: Preset, *, max_instances: int | None = None) -> ScalingSettings:
    """Return the inference-component scaling settings of ``preset``.

    One copy needs all the GPUs the preset shards the model over, so an instance of the
    preset's type holds ``instance GPUs // num_gpus`` copies (one, for the six Llama 2
    presets); each copy reserves :data:`MEMORY_PER_COPY_MB` of host memory (SageMaker's
    schedulable pool per instance is well below the host's memory).

    Args:
        preset: a validated preset.
        max_instances: the ``ManagedInstanceScaling`` maximum (default: 4 for 7B, else 2).

    Raises:
        PresetError: when the preset does not validate, or ``max_instances`` < 1.
    """
    preset.validate()
    instance = preset.instance
    chosen = max_instances if max_instances is not None else _MAX_INSTANCES.get(preset.size, 2)
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        raise PresetError(f"max_instances must be a whole number >= 1, not {chosen!r}: an "
                          "endpoint scales between 0 and at least one instance.")
    per_instance = max(1, instance.gpus // max(1, preset.num_gpus))
    return ScalingSettings(
        min_instances=0,
        max_instances=chosen,
        accelerators_per_copy=preset.num_gpus,
        memory_per_copy_mb=MEMORY_PER_COPY_MB,
        copies_per_instance=per_instance,
        max_copies=chosen * per_instance,
        copy_concurrency=preset.max_rolling_batch_size,
    )
