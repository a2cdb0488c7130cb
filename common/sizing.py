"""Pick the instance and the token limits of a model from its facts.

:func:`size_deployment` takes a :class:`~common.model_facts.ModelFacts` and a container and
returns a :class:`Sizing`: the cheapest instance of :data:`~common.presets.INSTANCE_TYPES`
whose GPUs hold the fp16/bf16 weights within :data:`~common.presets.GPU_MEMORY_HEADROOM`,
whose GPU count divides the attention and KV heads, and whose KV cache holds
:data:`FULL_REQUESTS` full requests of at least :data:`MIN_TOTAL_TOKENS` tokens; then
``MAX_TOTAL_TOKENS`` (``max_model_len``) from what that KV cache holds, capped by the model's
``max_position_embeddings``::

    KV bytes per token = 2 (K, V) x layers x KV heads x head dim x 2 bytes
    KV cache           = 90 % of the GPUs' memory - weights - 1 GiB per GPU
    MAX_TOTAL_TOKENS   = min(positions, KV cache / bytes per token / 4, rounded down to 256)

So Llama 3.1 8B (131,072 positions, 128 KiB per token) on one 24 GiB A10G gets about 11,000
tokens per request, not 131,072.

A mixture of experts (Llama 4 Scout, Maverick) needs every expert on the GPUs -- the weights
are the safetensors index's total (Scout: about 109B parameters, though its id names the 17B
active per token) -- while its KV cache follows the language model's layers and KV heads
(``text_config``), as for a dense model. A multimodal model's vision tower counts in the
weights too; the recipes serve it for text chat.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import PresetError
from common.model_facts import ModelFacts
from common.presets import (
    ACTIVATION_RESERVE_GIB,
    CONTAINERS,
    GPU_MEMORY_HEADROOM,
    GPU_MEMORY_UTILIZATION,
    INSTANCE_TYPES,
    LMI_VERSION,
    TGI_VERSION,
    InstanceType,
    Preset,
    instance_info,
)

__all__ = [
    "FULL_REQUESTS",
    "MIN_TOTAL_TOKENS",
    "Sizing",
    "size_deployment",
    "token_limits",
]

FULL_REQUESTS = 4
"""How many requests of ``MAX_TOTAL_TOKENS`` tokens the KV cache must hold at once."""

MIN_TOTAL_TOKENS = 2048
"""The shortest ``MAX_TOTAL_TOKENS`` worth deploying (an instance that holds less is skipped)."""

_GIB = 1024**3
_ROUND = 256


@dataclass(frozen=True)
class Sizing:
    """The instance and token limits chosen for a model, with the arithmetic behind them.

    Attributes:
        facts: the model's facts.
        container: ``"tgi"`` or ``"lmi"``.
        instance: the chosen instance type.
        kv_cache_bytes: GPU bytes left for the KV cache.
        kv_cache_tokens: tokens that cache holds (all requests together).
        preset: the validated :class:`~common.presets.Preset`.
        overridden: whether the instance type was given rather than chosen.
    """

    facts: ModelFacts
    container: str
    instance: InstanceType
    kv_cache_bytes: int
    kv_cache_tokens: int
    preset: Preset
    overridden: bool = False

    @property
    def max_total_tokens(self) -> int:
        """``MAX_TOTAL_TOKENS`` / ``max_model_len``."""
        return self.preset.max_total_tokens

    def explain(self) -> str:
        """Return the choice and its KV-cache arithmetic as a few printable lines."""
        f, i, p = self.facts, self.instance, self.preset
        how = "given with --instance-type" if self.overridden else "the cheapest that fits"
        cap = ("the model's max_position_embeddings"
               if p.max_total_tokens == f.max_position_embeddings
               else f"what the KV cache holds for {FULL_REQUESTS} full requests")
        size = f"{f.params_billion:.2f} B parameters"
        if f.is_moe:
            size += (f" in all, {f.active_params_billion:.2f} B active per token: "
                     f"{f.num_experts} experts per MoE layer, {f.experts_per_token} per token, "
                     "every expert on the GPUs")
        if f.multimodal:
            size += "; vision tower included, served for text chat"
        return "\n".join([
            f"Model: {f.model_id} ({size}; {f.dtype}; weights {p.weights_gib:.1f} GiB from "
            f"{f.weights_source})",
            f"Instance: {i.name}, {i.gpus} x NVIDIA {i.gpu_model} "
            f"({i.gpu_memory_gib_per_gpu:g} GiB each) -- {how}; {i.gpus} GPU(s) divide "
            f"{f.num_attention_heads} attention and {f.num_kv_heads} KV heads",
            f"KV cache per token: 2 x {f.num_layers} layers x {f.num_kv_heads} KV heads x "
            f"{f.head_dim} head dim x 2 bytes = {f.kv_bytes_per_token:,} bytes "
            f"({f.kv_bytes_per_token / 1024:g} KiB)",
            f"KV cache: {GPU_MEMORY_UTILIZATION:.0%} x {i.total_gpu_memory_gib:g} GiB - "
            f"{p.weights_gib:.1f} GiB weights - {ACTIVATION_RESERVE_GIB:g} GiB x {i.gpus} "
            f"GPU(s) = {self.kv_cache_bytes / _GIB:.1f} GiB = {self.kv_cache_tokens:,} tokens",
            f"MAX_TOTAL_TOKENS (max_model_len): {p.max_total_tokens:,} -- capped by {cap} "
            f"(max_position_embeddings = {f.max_position_embeddings:,})",
            f"MAX_INPUT_TOKENS: {p.max_input_tokens:,}; MAX_BATCH_PREFILL_TOKENS: "
            f"{p.max_batch_prefill_tokens:,}; max_new_tokens per request: {p.max_new_tokens}",
        ])


def token_limits(max_total_tokens: int) -> dict[str, int]:
    """Return consistent :class:`Preset` token fields for a ``MAX_TOTAL_TOKENS``: a quarter
    (at most 4,096) left for the answer, prefill budget >= one full prompt, and
    ``max_new_tokens`` at most 512."""
    max_input = max_total_tokens - min(max_total_tokens // 4, 4096)
    return {"max_total_tokens": max_total_tokens, "max_input_tokens": max_input,
            "max_batch_prefill_tokens": max(max_input, min(4096, max_total_tokens)),
            "max_new_tokens": min(512, max_total_tokens - max_input)}


def _preset(facts: ModelFacts, container: str, instance: InstanceType,
            kv_tokens: int) -> Preset:
    per_request = kv_tokens // FULL_REQUESTS // _ROUND * _ROUND
    limits = token_limits(min(facts.max_position_embeddings, per_request))
    params = facts.params_billion
    health = 900 if params <= 10 else 1500 if params <= 20 else 3000
    return Preset(
        model_id=facts.model_id,
        size=f"{params:.3g}b",
        container=container,
        instance_type=instance.name,
        num_gpus=instance.gpus,
        params_billion=round(params, 2),
        container_version=TGI_VERSION if container == "tgi" else LMI_VERSION,
        **limits,
        dtype="bf16" if facts.dtype == "bfloat16" else "fp16",
        health_check_timeout_s=health,
        download_timeout_s=min(health, 2400),
        num_attention_heads=facts.num_attention_heads,
        num_kv_heads=facts.num_kv_heads,
        kv_bytes_per_token=facts.kv_bytes_per_token,
        max_position_embeddings=facts.max_position_embeddings,
        revision=facts.revision,
    )


def _why_not(facts: ModelFacts, instance: InstanceType, weights_gib: float) -> str | None:
    """Why ``instance`` cannot serve the model, or ``None`` when it can."""
    usable = instance.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)
    if weights_gib > usable:
        return (f"the {weights_gib:.1f} GiB of weights exceed {1 - GPU_MEMORY_HEADROOM:.0%} of "
                f"its {instance.total_gpu_memory_gib:g} GiB of GPU memory")
    for heads, what in ((facts.num_attention_heads, "attention"), (facts.num_kv_heads, "KV")):
        if heads % instance.gpus:
            return f"its {instance.gpus} GPUs do not divide the {heads} {what} heads"
    return None


def size_deployment(facts: ModelFacts, container: str, *,
                    instance_type: str | None = None) -> Sizing:
    """Choose the instance and token limits for ``facts`` on ``container``.

    Args:
        facts: from :func:`common.model_facts.read_model_facts`.
        container: ``"tgi"`` or ``"lmi"``.
        instance_type: use this instance instead of choosing one (``--instance-type``).

    Returns:
        The :class:`Sizing`, whose ``preset`` has passed :meth:`Preset.validate`.

    Raises:
        PresetError: an unknown container or instance type; an ``instance_type`` that cannot
            serve the model (the message says why: weights, heads, KV cache); or no instance
            of the table that can.
    """
    if container not in CONTAINERS:
        raise PresetError(f"container is {container!r}: use 'tgi' or 'lmi'.")
    weights_gib = facts.weight_bytes / _GIB
    if instance_type is not None:
        instance = instance_info(instance_type)
        reason = _why_not(facts, instance, weights_gib)
        preset = _preset(facts, container, instance,
                         _kv_tokens(facts, instance, weights_gib))
        if reason is not None or preset.max_total_tokens < 1:
            preset.validate()  # raises with every problem and its fix
            raise PresetError(f"{instance.name} cannot serve {facts.model_id}: {reason}.")
        preset.validate()
        return _sizing(facts, container, instance, weights_gib, preset, overridden=True)
    candidates = []
    skipped = []
    for instance in INSTANCE_TYPES.values():
        reason = _why_not(facts, instance, weights_gib)
        kv_tokens = _kv_tokens(facts, instance, weights_gib)
        if reason is None and kv_tokens // FULL_REQUESTS < min(MIN_TOTAL_TOKENS,
                                                                facts.max_position_embeddings):
            reason = (f"its KV cache holds {kv_tokens:,} tokens, fewer than {FULL_REQUESTS} "
                      f"requests of {MIN_TOTAL_TOKENS:,}")
        if reason is None and instance.approx_usd_per_hour is not None:
            candidates.append(instance)
        else:
            skipped.append(f"{instance.name}: {reason or 'no price known'}")
    if not candidates:
        raise PresetError(
            f"No instance of common.presets.INSTANCE_TYPES can serve {facts.model_id} "
            f"({weights_gib:.1f} GiB of weights): " + "; ".join(skipped)
            + ". Add a bigger instance type to INSTANCE_TYPES, or use a quantized model.")
    instance = min(candidates, key=lambda i: (i.approx_usd_per_hour, i.gpus))
    preset = _preset(facts, container, instance, _kv_tokens(facts, instance, weights_gib))
    preset.validate()
    return _sizing(facts, container, instance, weights_gib, preset, overridden=False)


def _kv_tokens(facts: ModelFacts, instance: InstanceType, weights_gib: float) -> int:
    usable = instance.total_gpu_memory_gib * GPU_MEMORY_UTILIZATION
    free = usable - weights_gib - ACTIVATION_RESERVE_GIB * instance.gpus
    return max(0, int(free * _GIB)) // facts.kv_bytes_per_token


def _sizing(facts: ModelFacts, container: str, instance: InstanceType, weights_gib: float,
            preset: Preset, *, overridden: bool) -> Sizing:
    cache = preset.kv_cache_bytes(instance)
    return Sizing(facts=facts, container=container, instance=instance, kv_cache_bytes=cache,
                  kv_cache_tokens=cache // facts.kv_bytes_per_token, preset=preset,
                  overridden=overridden)
