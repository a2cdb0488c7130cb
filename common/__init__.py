"""Helpers shared by the Llama 2 streaming recipe notebooks.

The client core -- prompts, stream decoding, errors, metrics -- needs only the standard
library (and botocore's exceptions, imported lazily); presets, endpoints, the live display and
the load tool build on it. ``common.local`` (the SageMaker stand-in) is not imported here.
"""

from common.chat_view import ChatView, show_chat
from common.conversation import Conversation, PreparedTurn, TokenCounter, token_counter
from common.display import StreamResult, plot_latency_comparison, show_stream
from common.endpoints import (
    approx_token_count,
    build_payload,
    delete_endpoint_resources,
    invoke,
    invoke_stream,
    resolve_execution_role,
    runtime_client,
    validate_payload,
    wait_for_endpoint,
)
from common.errors import (
    ContainerStreamError,
    DeploymentError,
    EndpointFailedError,
    EndpointNotFoundError,
    EndpointWaitTimeout,
    IncompleteStreamError,
    InternalStreamFailure,
    InvocationError,
    ModelInvocationError,
    ModelStreamError,
    PayloadError,
    PresetError,
    RecipeError,
    StreamError,
    StreamTimeoutError,
    ThrottledError,
)
from common.metrics import MeasuredStream, StreamMetrics, measure, percentile
from common.presets import (
    INSTANCE_TYPES,
    PRESETS,
    InstanceType,
    Preset,
    custom_preset,
    get_preset,
    image_uri,
    instance_info,
    render_serving_properties,
)
from common.prompts import build_llama2_prompt, build_llama3_prompt, parse_llama2_prompt
from common.streaming import LineIterator, Token, TokenStream, iter_text, iter_tokens

__all__ = [
    "INSTANCE_TYPES",
    "PRESETS",
    "ChatView",
    "ContainerStreamError",
    "Conversation",
    "DeploymentError",
    "EndpointFailedError",
    "EndpointNotFoundError",
    "EndpointWaitTimeout",
    "IncompleteStreamError",
    "InstanceType",
    "InternalStreamFailure",
    "InvocationError",
    "LineIterator",
    "MeasuredStream",
    "ModelInvocationError",
    "ModelStreamError",
    "PayloadError",
    "PreparedTurn",
    "Preset",
    "PresetError",
    "RecipeError",
    "StreamError",
    "StreamMetrics",
    "StreamResult",
    "StreamTimeoutError",
    "ThrottledError",
    "Token",
    "TokenCounter",
    "TokenStream",
    "approx_token_count",
    "build_llama2_prompt",
    "build_llama3_prompt",
    "build_payload",
    "custom_preset",
    "delete_endpoint_resources",
    "get_preset",
    "image_uri",
    "instance_info",
    "invoke",
    "invoke_stream",
    "iter_text",
    "iter_tokens",
    "measure",
    "parse_llama2_prompt",
    "percentile",
    "plot_latency_comparison",
    "render_serving_properties",
    "resolve_execution_role",
    "runtime_client",
    "show_chat",
    "show_stream",
    "token_counter",
    "validate_payload",
    "wait_for_endpoint",
]
