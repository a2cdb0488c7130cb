"""Helpers shared by the Llama 2 streaming recipe notebooks.

The client core -- prompts, stream decoding, errors, metrics -- needs only the standard
library (and botocore's exceptions, imported lazily); presets, endpoints, the live display and
the load tool build on it. The async helpers (``ainvoke_stream``, ``async_runtime_client``)
import aiobotocore only when called. ``common.local`` (the SageMaker stand-in) is not imported here.

Every public name below is loaded when it is first used (PEP 562 module ``__getattr__``), so
``import common`` -- and ``python -m common.bench``, which imports this package first --
costs only the modules a caller touches: a load tool process never imports ipywidgets,
jinja2, the presets or the pre-flight. The names, and what ``from common import X``,
``common.X`` and ``dir(common)`` give, are the same as with eager imports; a submodule is
reached as an attribute too (``import common`` then ``common.streaming``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Where each public name lives: its module, then the names it gives the package.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "common.aio": ("ainvoke", "ainvoke_stream", "async_runtime_client"),
    "common.capacity": ("IdleCost", "TargetChoice", "capacity_rows", "capacity_table",
                        "choose_target", "cost_per_million_tokens", "idle_cost_per_day",
                        "plot_capacity"),
    "common.chat_view": ("ChatView", "show_chat"),
    "common.conversation": ("Conversation", "PreparedTurn", "TokenCounter", "token_counter"),
    "common.display": ("StreamResult", "plot_latency_comparison", "show_stream"),
    "common.endpoints": ("approx_token_count", "build_payload", "delete_endpoint_resources",
                         "invoke", "invoke_stream", "resolve_execution_role", "runtime_client",
                         "validate_payload", "wait_for_endpoint"),
    "common.errors": ("CleanupError", "ContainerStreamError", "DeploymentError",
                      "EndpointFailedError",
                      "EndpointNotFoundError", "EndpointWaitTimeout", "IncompleteStreamError",
                      "InferenceComponentFailedError", "InternalStreamFailure",
                      "InvocationError", "ModelFactsError", "ModelInvocationError",
                      "ModelStreamError", "NoCapacityError", "PayloadError", "PreflightError",
                      "PresetError", "RecipeError", "RecipeStateError", "StreamError",
                      "StreamTimeoutError", "ThrottledError"),
    "common.gpu_drivers": ("inference_ami_version",),
    "common.metrics": ("MeasuredStream", "StreamMetrics", "measure", "percentile"),
    "common.model_facts": ("ModelFacts", "prompt_builder_for", "read_model_facts"),
    "common.preflight": ("CheckResult", "PreflightReport", "preflight"),
    "common.presets": ("INSTANCE_TYPES", "PRESETS", "InstanceType", "Preset",
                       "ScalingSettings", "custom_preset", "get_preset", "image_uri",
                       "instance_info", "render_serving_properties", "scaling_settings"),
    "common.prompts": ("PromptBuilder", "build_llama2_prompt", "build_llama3_prompt",
                       "build_prompt", "parse_llama2_prompt"),
    "common.recipe_state": ("check_recipe_endpoint",),
    "common.scaling": ("BackgroundLoad", "ScalingState", "ScalingTimeline",
                       "delete_scaling_resources", "read_scaling_state",
                       "wait_for_inference_component", "watch_scaling"),
    "common.sizing": ("Sizing", "size_deployment"),
    "common.tags": ("RecipeTags", "recipe_tags"),
    "common.streaming": ("END_TOKENS", "AsyncTokenStream", "LineIterator", "StreamDecoder",
                         "Token", "TokenStream", "aiter_text", "aiter_tokens", "iter_text",
                         "iter_tokens"),
    "common.weights": ("WEIGHT_PATTERNS", "CopyResult", "copy_weights_to_s3",
                       "list_weight_files", "run_prefix", "weights_prefix"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule) on first use; then it is a plain attribute."""
    home = _HOME.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later look-ups find it without this function
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the submodule exists but something it imports does not
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: importing ``common.preflight`` (the submodule) must not
    replace ``common.preflight`` (the function it exports), as it would by default once
    the package no longer imports that submodule itself."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
