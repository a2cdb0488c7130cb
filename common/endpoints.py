"""Calling and managing SageMaker endpoints: clients, payload checks, invoke, wait, clean up.

The notebooks show the SageMaker calls themselves; these helpers carry what is easy to get
wrong around them: a read timeout so that a stalled stream fails instead of hanging; retries
that never replay a half-streamed answer; payload checks with the fix in the message; a wait
loop with a live progress line; an idempotent clean-up; and finding the execution role.

Sources: the ``sagemaker-runtime`` service model in botocore (body at most 6,291,456 bytes,
``CustomAttributes`` at most 1,024 ASCII characters, ``ModelError`` with
``OriginalStatusCode`` / ``LogStreamArn``); TGI v3.3.6 ``router/src/lib.rs``
(``GenerateParameters``, ``ChatRequest``) and ``router/src/server.rs`` (``compat_generate``:
``return_full_text`` defaults to true for text-generation models on ``/invocations``);
djl-serving ``0.36.0-lmi27-dlc`` ``djl_python/lmi_vllm/request_response_utils.py``
(``convert_lmi_schema_to_completion_request``: ``max_new_tokens`` defaults to 30, other
parameters pass through to vLLM's ``CompletionRequest``) and
``serving/docs/lmi/user_guides/lmi_input_output_schema.md``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from common.errors import (
    DeploymentError,
    EndpointFailedError,
    EndpointWaitTimeout,
    InvocationError,
    NoCapacityError,
    PayloadError,
    ThrottledError,
    invocation_error_from_client_error,
)
from common.progress import ProgressLine, format_elapsed

if TYPE_CHECKING:
    from common.presets import Preset
    from common.streaming import TokenStream

__all__ = [
    "DEFAULT_READ_TIMEOUT_S",
    "EXECUTION_ROLE_ENV_VAR",
    "FALLBACK_ROLE_NAME",
    "LMI_CHAT_FIELDS",
    "LMI_PARAMETERS",
    "MAX_BODY_BYTES",
    "MAX_CUSTOM_ATTRIBUTES",
    "TGI_CHAT_FIELDS",
    "TGI_PARAMETERS",
    "approx_token_count",
    "build_payload",
    "delete_endpoint",
    "delete_endpoint_resources",
    "delete_if_exists",
    "delete_s3_prefix",
    "invoke",
    "invoke_stream",
    "is_not_found",
    "resolve_execution_role",
    "runtime_client",
    "validate_payload",
    "wait_for_endpoint",
]

MAX_BODY_BYTES = 6_291_456
"""SageMaker's limit on an invocation's request body (6 MiB)."""
MAX_CUSTOM_ATTRIBUTES = 1024
"""SageMaker's limit on the ``CustomAttributes`` header (ASCII characters)."""
DEFAULT_READ_TIMEOUT_S = 60.0
"""Default read timeout of :func:`runtime_client`: a stream that sends nothing for this long
raises :class:`~common.errors.StreamTimeoutError`. TGI sends a keep-alive comment after 15 s
of silence, and SageMaker itself expects a container to answer within 60 s."""
EXECUTION_ROLE_ENV_VAR = "SAGEMAKER_EXECUTION_ROLE_ARN"
FALLBACK_ROLE_NAME = "sagemaker_execution_role"
NOTEBOOK_METADATA_FILE = "/opt/ml/metadata/resource-metadata.json"
"""The file SageMaker writes into Studio spaces and notebook instances (its ``ResourceArn``
names where the code runs)."""

# --------------------------------------------------------------------------- parameters

TGI_PARAMETERS = frozenset({
    # TGI v3.3.6 router/src/lib.rs GenerateParameters. TGI ignores unknown names silently.
    "adapter_id", "best_of", "decoder_input_details", "details", "do_sample",
    "frequency_penalty", "grammar", "max_new_tokens", "repetition_penalty", "return_full_text",
    "seed", "stop", "temperature", "top_k", "top_n_tokens", "top_p", "truncate", "typical_p",
    "watermark",
})
"""The ``parameters`` TGI's generate route reads."""

LMI_PARAMETERS = frozenset({
    # LMI's TGI-style names, mapped by convert_lmi_schema_to_completion_request (0.36.0) ...
    "decoder_input_details", "details", "do_sample", "ignore_eos_token", "max_new_tokens",
    "return_full_text", "truncate",
    # (not top_n_tokens: that function maps it to vLLM's ``n``, several completions
    # interleaved in one stream -- see _LMI_TOP_N_TOKENS)
    # ... and vLLM sampling parameters passed through to CompletionRequest (the ones
    # lmi_input_output_schema.md lists for vLLM, less those that change the stream's shape:
    # n, best_of, num_beams, logprobs, prompt_logprobs).
    "frequency_penalty", "include_stop_str_in_output", "length_penalty", "min_p", "min_tokens",
    "presence_penalty", "repetition_penalty", "seed", "skip_special_tokens",
    "spaces_between_special_tokens", "stop", "stop_token_ids", "temperature", "top_k", "top_p",
})
"""The ``parameters`` LMI 0.36.0's vLLM async handler reads; vLLM ignores other names."""

_LMI_TOP_N_TOKENS = (
    "parameters.top_n_tokens is not a TGI-style 'top n tokens' setting on LMI: LMI 0.36.0 "
    "(djl-serving lmi_vllm/request_response_utils.py, convert_lmi_schema_to_completion_request) "
    "passes it to vLLM as n, the number of completions, so the stream would interleave n "
    "answers token by token. Remove it; to see the likelihood of each generated token, set "
    "parameters.details to true (LMI then returns each token's logprob)."
)

TGI_CHAT_FIELDS = frozenset({
    # TGI v3.3.6 router/src/lib.rs ChatRequest.
    "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "messages", "model", "n",
    "presence_penalty", "response_format", "seed", "stop", "stream", "stream_options",
    "temperature", "tool_choice", "tool_prompt", "tools", "top_logprobs", "top_p",
})
"""The top-level fields of a Messages API body that TGI reads."""

LMI_CHAT_FIELDS = frozenset({
    # vLLM's ChatCompletionRequest (OpenAI fields plus vLLM's sampling extras).
    "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens",
    "messages", "model", "n", "parallel_tool_calls", "presence_penalty", "response_format",
    "seed", "stop", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user",
    "chat_template_kwargs", "ignore_eos", "include_stop_str_in_output", "min_p", "min_tokens",
    "repetition_penalty", "skip_special_tokens", "stop_token_ids", "top_k",
})
"""The top-level fields of a Messages API body that LMI (vLLM) reads."""

_GENERATE_FIELDS = frozenset({"inputs", "parameters", "stream"})
_CONTAINERS = ("tgi", "lmi", "auto")
_RETRYABLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                              "ServiceUnavailable", "ServiceUnavailableException"})
MESSAGE_OVERHEAD_TOKENS = 8
"""Tokens counted per chat message on top of its content: the ``[INST]`` / ``<<SYS>>`` tags
and role headers the chat template adds."""


# --------------------------------------------------------------------------- client


def runtime_client(
    region_name: str | None = None,
    *,
    session: Any = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    connect_timeout: float = 10.0,
    max_pool_connections: int = 10,
) -> Any:
    """Return a boto3 ``sagemaker-runtime`` client fit for streaming.

    Args:
        region_name: the AWS region (default: the session's).
        session: a ``boto3.Session`` or a SageMaker SDK ``Session`` (default: a new boto3
            session). ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` is honoured as boto3 does.
        read_timeout: seconds without a byte before a read fails (default
            :data:`DEFAULT_READ_TIMEOUT_S`, 60): a stalled stream raises
            :class:`~common.errors.StreamTimeoutError` within this time instead of hanging.
        connect_timeout: seconds to open the connection.
        max_pool_connections: connections kept open (botocore's default is 10); raise it
            to the number of streams a load test keeps open at once.

    Returns:
        The client, with botocore's retries switched off (``total_max_attempts=1``):
        :func:`invoke_stream` retries throttling itself, before the first byte only, so a
        half-streamed answer is never replayed silently.
    """
    import boto3
    from botocore.config import Config

    boto_session = _boto_session(session) if session is not None else boto3.Session()
    config = Config(read_timeout=read_timeout, connect_timeout=connect_timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    max_pool_connections=max_pool_connections)
    return boto_session.client("sagemaker-runtime", region_name=region_name, config=config)


def _boto_session(session: Any) -> Any:
    """Return the boto3 session of a SageMaker SDK ``Session``, or ``session`` itself."""
    return getattr(session, "boto_session", None) or session


# --------------------------------------------------------------------------- payloads


def approx_token_count(text: str) -> int:
    """Return a deliberately high estimate of Llama's token count for ``text``.

    Used when no tokenizer is at hand: one token per 3 ASCII characters, plus one token per
    UTF-8 byte of every other character. Llama's SentencePiece vocabulary averages about 4
    characters of English per token, so English comes out about a third high; characters
    outside the vocabulary fall back to one token per byte, which the second term covers.
    Pass ``count_tokens=`` to :func:`validate_payload` to use a real tokenizer instead.
    """
    ascii_chars = sum(1 for char in text if char.isascii())
    other_bytes = len(text.encode("utf-8", errors="replace")) - ascii_chars
    return math.ceil(ascii_chars / 3) + other_bytes


def build_payload(
    prompt_or_messages: str | list[dict[str, str]],
    *,
    container: str,
    max_new_tokens: int,
    stream: bool = True,
    **parameters: Any,
) -> dict[str, Any]:
    """Return a request body for TGI or LMI.

    A prompt string gives ``{"inputs", "parameters", "stream"}`` (for TGI with
    ``return_full_text: false``, since TGI's SageMaker route otherwise puts the prompt in
    front of a text-generation model's answer); a list of messages gives a Messages API body
    (``messages``, ``max_tokens`` and ``parameters`` at the top level).

    Args:
        prompt_or_messages: the rendered prompt, or OpenAI-style ``[{"role", "content"}]``.
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (checks parameters against both).
        max_new_tokens: the most tokens to generate (always sent: LMI stops after 30
            without it).
        stream: ``"stream"`` in the body (``True`` for ``invoke_stream``).
        **parameters: generation parameters, e.g. ``temperature=0.6, top_p=0.9``.

    Raises:
        PayloadError: as :func:`validate_payload` (unknown parameters, a bad prompt, ...).
    """
    if isinstance(prompt_or_messages, str):
        params: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if container == "tgi":
            params["return_full_text"] = False
        params.update(parameters)
        payload: dict[str, Any] = {"inputs": prompt_or_messages, "parameters": params,
                                   "stream": stream}
    else:
        payload = {"messages": list(prompt_or_messages), "max_tokens": max_new_tokens,
                   **parameters, "stream": stream}
    validate_payload(payload, container=container, streaming=stream)
    return payload


def _check_custom_attributes(custom_attributes: str | None) -> None:
    if custom_attributes is None:
        return
    if not isinstance(custom_attributes, str):
        raise PayloadError("CustomAttributes must be a string (it is sent as an HTTP header).")
    if len(custom_attributes) > MAX_CUSTOM_ATTRIBUTES:
        raise PayloadError(
            f"CustomAttributes is {len(custom_attributes)} characters; SageMaker accepts at "
            f"most {MAX_CUSTOM_ATTRIBUTES}. Shorten it, or move the data into the body."
        )
    if not custom_attributes.isascii():
        raise PayloadError(
            "CustomAttributes must be ASCII: SageMaker sends it as the "
            "X-Amzn-SageMaker-Custom-Attributes HTTP header. Percent-encode other characters "
            "(urllib.parse.quote) or move them into the body."
        )


def resolve_container(container: str | None, preset: Preset | None) -> str:
    """Return the container a request is for: ``"tgi"``, ``"lmi"``, or ``"auto"`` when
    neither ``container`` nor ``preset`` says (``None``/``"auto"`` take the preset's).

    Raises:
        PayloadError: ``container`` is not ``tgi``/``lmi``/``auto``, or names another
            container than ``preset``'s.
    """
    if container is None or container == "auto":
        resolved = preset.container if preset is not None else "auto"
    else:
        resolved = container
    if resolved not in _CONTAINERS:
        raise PayloadError(f"container is {container!r}: use 'tgi', 'lmi' or 'auto'.")
    if preset is not None and resolved != preset.container:
        raise PayloadError(
            f"container={resolved!r} but the preset is for {preset.container!r}: pass the "
            "preset of the endpoint you call, or leave container out."
        )
    return resolved


def _check_known(names: Iterable[str], known: frozenset[str], where: str, container: str) -> None:
    unknown = sorted(set(names) - known)
    if not unknown:
        return
    hints = []
    if "stop_sequences" in unknown:
        hints.append("use 'stop' (a list of strings), not 'stop_sequences'")
    if "max_new_tokens" in unknown and where.startswith("Messages"):
        hints.append("the Messages API calls it 'max_tokens'")
    if "ignore_eos" in unknown and "ignore_eos_token" in known:
        hints.append("LMI calls it 'ignore_eos_token'")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise PayloadError(
        f"Unknown {where} for {container.upper()}: {unknown}{hint}. The container would ignore "
        f"them silently. Known: {', '.join(sorted(known))}."
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PayloadError(f"{name} must be a positive whole number, not {value!r}.")
    return value


def _generate_request(payload: Mapping[str, Any], container: str) -> tuple[str, int]:
    """Check an ``inputs`` body; return (prompt, max_new_tokens)."""
    extra = sorted(set(payload) - _GENERATE_FIELDS)
    if extra:
        raise PayloadError(
            f"Unknown top-level fields {extra}: a generate body has only 'inputs', "
            "'parameters' and 'stream'. Put generation settings inside 'parameters'."
        )
    prompt = payload["inputs"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise PayloadError("'inputs' must be the prompt, a non-empty string.")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise PayloadError("'parameters' must be a JSON object (a dict).")
    if container == "lmi" and "top_n_tokens" in parameters:
        raise PayloadError(_LMI_TOP_N_TOKENS)
    known = {"tgi": TGI_PARAMETERS, "lmi": LMI_PARAMETERS}.get(
        container, TGI_PARAMETERS | LMI_PARAMETERS)
    _check_known(parameters, known, "parameters", container)
    if parameters.get("max_new_tokens") is None:
        raise PayloadError(
            "Set parameters.max_new_tokens: without it LMI generates only 30 tokens, and TGI "
            "generates until the preset's MAX_TOTAL_TOKENS."
        )
    return prompt, _positive_int(parameters["max_new_tokens"], "parameters.max_new_tokens")


def _chat_request(payload: Mapping[str, Any], container: str) -> tuple[str, int, int]:
    """Check a Messages API body; return (its text, max_tokens, number of messages)."""
    if "parameters" in payload:
        raise PayloadError(
            "A Messages API body takes its settings at the top level (max_tokens, temperature, "
            "...), not inside 'parameters'."
        )
    known = {"tgi": TGI_CHAT_FIELDS, "lmi": LMI_CHAT_FIELDS}.get(
        container, TGI_CHAT_FIELDS | LMI_CHAT_FIELDS)
    _check_known(payload, known, "Messages API fields", container)
    messages = payload["messages"]
    if not isinstance(messages, list) or not messages:
        raise PayloadError("'messages' must be a non-empty list of {role, content} objects.")
    texts = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise PayloadError(f"messages[{index}] must be an object with a 'role' string and "
                               f"'content'; got {message!r:.80}.")
        content = message.get("content")
        texts.append(content if isinstance(content, str) else json.dumps(content))
    limit = payload.get("max_tokens", payload.get("max_completion_tokens"))
    if limit is None:
        raise PayloadError(
            "Set max_tokens in a Messages API body: without it the container may generate up "
            "to the whole context, and the budget cannot be checked."
        )
    return "\n".join(texts), _positive_int(limit, "max_tokens"), len(messages)


def validate_payload(
    payload: Mapping[str, Any],
    preset: Preset | None = None,
    *,
    container: str | None = None,
    custom_attributes: str | None = None,
    streaming: bool | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> bytes:
    """Check a request body before it is sent; return it encoded as JSON bytes.

    Args:
        payload: a generate body (``inputs``, ``parameters``, ``stream``) or a Messages API
            body (``messages`` and its settings at the top level).
        preset: the endpoint's preset: gives the container and the token limits (without
            one, the token budget is not checked).
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (accept what either reads); default:
            the preset's, else ``"auto"``.
        custom_attributes: the ``CustomAttributes`` header that will go with it.
        streaming: ``True`` for ``InvokeEndpointWithResponseStream`` (the body must say
            ``"stream": true``), ``False`` for ``InvokeEndpoint`` (it must not), ``None`` to
            skip this check.
        count_tokens: counts a text's tokens (e.g. a tokenizer's ``len(tok.encode(text))``);
            default :func:`approx_token_count`.

    Returns:
        The body as UTF-8 JSON bytes.

    Raises:
        PayloadError: with the fix, for: a body over 6,291,456 bytes; ``CustomAttributes`` over
            1,024 characters or not ASCII; both or neither of ``inputs`` and ``messages``;
            ``"stream"`` not matching ``streaming``; no ``max_new_tokens`` (``max_tokens`` for
            messages; LMI defaults to 30); prompt tokens over the preset's
            ``max_input_tokens`` (TGI) or prompt + new tokens over its ``max_total_tokens``
            (counted approximately unless ``count_tokens`` is given); unknown parameters or
            fields for the container; ``top_n_tokens`` for LMI (it becomes vLLM's ``n``:
            several completions interleaved in one stream); a container that does not match
            the preset.
    """
    kind = resolve_container(container, preset)
    _check_custom_attributes(custom_attributes)
    if not isinstance(payload, Mapping):
        raise PayloadError(f"The payload must be a dict (sent as JSON), not "
                           f"{type(payload).__name__}.")
    has_inputs, has_messages = "inputs" in payload, "messages" in payload
    if has_inputs and has_messages:
        raise PayloadError("The payload has both 'inputs' and 'messages': send a prompt string "
                           "in 'inputs' or a conversation in 'messages', not both.")
    if not has_inputs and not has_messages:
        raise PayloadError("The payload needs 'inputs' (a prompt string) or 'messages' "
                           "(OpenAI-style chat messages).")
    stream_flag = payload.get("stream", False)
    if not isinstance(stream_flag, bool):
        raise PayloadError(f"'stream' must be true or false, not {stream_flag!r}.")
    if streaming and not stream_flag:
        raise PayloadError(
            'Add "stream": true to the body: TGI and LMI stream only when the body asks for '
            "it, and otherwise answer with one JSON document at the end."
        )
    if streaming is False and stream_flag:
        raise PayloadError('The body says "stream": true but is sent without streaming: '
                           'use invoke_stream, or set "stream": false.')
    if has_inputs:
        text, new_tokens = _generate_request(payload, kind)
        overhead = 0
    else:
        text, new_tokens, count = _chat_request(payload, kind)
        overhead = MESSAGE_OVERHEAD_TOKENS * count
    try:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"The payload cannot be sent as JSON: {exc}.") from exc
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(
            f"The body is {len(body):,} bytes; SageMaker accepts at most {MAX_BODY_BYTES:,} "
            "(6 MiB) per request. Shorten the prompt or the conversation."
        )
    if preset is not None:
        _check_budget(text, new_tokens, overhead, preset, count_tokens)
    return body


def _check_budget(text: str, new_tokens: int, overhead: int, preset: Preset,
                  count_tokens: Callable[[str], int] | None) -> None:
    counted = (count_tokens or approx_token_count)(text) + overhead
    how = "counted" if count_tokens else "estimated high, without a tokenizer"
    if preset.container == "tgi" and counted > preset.max_input_tokens:
        raise PayloadError(
            f"The prompt is about {counted} tokens ({how}), over the endpoint's "
            f"MAX_INPUT_TOKENS ({preset.max_input_tokens}): TGI would reject it. Shorten the "
            "prompt (drop early turns of the conversation), or pass count_tokens= a real "
            "tokenizer's count if the estimate is too high."
        )
    if counted + new_tokens > preset.max_total_tokens:
        room = preset.max_total_tokens - counted
        fix = (f"lower max_new_tokens to at most {room}" if room > 0
               else "shorten the prompt")
        raise PayloadError(
            f"The prompt (about {counted} tokens, {how}) plus max_new_tokens={new_tokens} is "
            f"over the endpoint's maximum of {preset.max_total_tokens} total tokens: {fix}, "
            "or pass count_tokens= a real tokenizer's count if the estimate is too high."
        )


# --------------------------------------------------------------------------- invoking


def _is_retryable(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _RETRYABLE_CODES or status in (429, 503)


def _call_with_retries(
    call: Callable[[], Any],
    endpoint_name: str,
    *,
    max_attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
    jitter: Callable[[], float],
) -> Any:
    """Run ``call``; retry throttling with exponential backoff and jitter; map errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    for attempt in range(1, max_attempts + 1):
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            pause = retry_pause(exc, attempt, endpoint_name, max_attempts=max_attempts,
                                backoff_s=backoff_s, jitter=jitter)
            sleep(pause)
    raise AssertionError("unreachable: the loop returns or raises")


def retry_pause(exc: Exception, attempt: int, endpoint_name: str, *, max_attempts: int,
                backoff_s: float, jitter: Callable[[], float]) -> float:
    """Return how long to wait (seconds) before retrying ``exc``, raised by attempt number
    ``attempt``: ``backoff_s * 2**(attempt-1) * (1 + jitter())`` for throttling (429/503) while
    attempts remain. Shared by the sync and async helpers.

    Raises:
        RecipeError: when ``exc`` is not retried: a ``ClientError`` mapped by
            :func:`~common.errors.invocation_error_from_client_error` (``ThrottledError``,
            ``NoCapacityError``, ``PayloadError``, ``InvocationError`` ...; a throttle after
            the last attempt says how many were made), or any other exception (a transport
            failure) as :class:`~common.errors.InvocationError` with the fix in the message.
    """
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        if _is_retryable(exc) and attempt < max_attempts:
            return backoff_s * 2 ** (attempt - 1) * (1 + jitter())
        error = invocation_error_from_client_error(exc, endpoint_name)
        if isinstance(error, ThrottledError):
            error = ThrottledError(f"{error} (gave up after {attempt} attempt"
                                   f"{'s' if attempt != 1 else ''})",
                                   error_code=error.error_code)
        raise error from exc
    raise InvocationError(
        f"{type(exc).__name__}: {exc}. Check the region and network (or "
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME), and raise runtime_client(read_timeout=...) "
        "if the endpoint takes long to start answering.",
        error_code=type(exc).__name__,
    ) from exc


def invocation_kwargs(endpoint_name: str, body: bytes, custom_attributes: str | None,
                      accept: str | None, inference_component: str | None = None
                      ) -> dict[str, Any]:
    """Return the keyword arguments of ``invoke_endpoint`` /
    ``invoke_endpoint_with_response_stream`` for this body (JSON content type; ``Accept``,
    ``CustomAttributes`` and ``InferenceComponentName`` only when given).

    Raises:
        PayloadError: ``inference_component`` is given but not a non-empty string.
    """
    kwargs: dict[str, Any] = {"EndpointName": endpoint_name, "Body": body,
                              "ContentType": "application/json"}
    if accept:
        kwargs["Accept"] = accept
    if custom_attributes:
        kwargs["CustomAttributes"] = custom_attributes
    if inference_component is not None:
        if not isinstance(inference_component, str) or not inference_component.strip():
            raise PayloadError("inference_component must be the component's name, a "
                               f"non-empty string; got {inference_component!r}.")
        kwargs["InferenceComponentName"] = inference_component
    return kwargs


CAPACITY_POLL_S = (1.0, 5.0)
"""First and longest pause between two tries while :func:`invoke_stream` waits for capacity
(each pause is 1.5 times the last); every try that meets "no capacity" also counts in
SageMaker's ``NoCapacityInvocationFailures`` metric, which is what the scale-out alarm reads."""


def growing_pauses(first: float, longest: float) -> Iterator[float]:
    """Yield pauses between polls: ``first`` seconds, then 1.5 times longer, at most ``longest``.

    A quick state change is seen quickly, and a long wait costs few calls. The iterator never
    ends and raises nothing.
    """
    pause = min(first, longest)
    while True:
        yield pause
        pause = min(pause * 1.5, longest)


def _call_with_capacity_wait(
    call: Callable[[], Any],
    inference_component: str | None,
    wait_for_capacity: float | None,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    out: TextIO | None,
) -> Any:
    """Run ``call``; on "no capacity", wait up to ``wait_for_capacity`` seconds for a copy.

    Without ``wait_for_capacity`` (``None``) the :class:`NoCapacityError` is raised at once,
    naming the component and the fix.
    """
    if wait_for_capacity is not None and (
            isinstance(wait_for_capacity, bool) or not isinstance(wait_for_capacity, (int, float))
            or wait_for_capacity < 0):
        raise ValueError(f"wait_for_capacity must be seconds >= 0 or None, not "
                         f"{wait_for_capacity!r}")
    if wait_for_capacity is None:
        try:
            return call()
        except NoCapacityError as exc:
            raise NoCapacityError(exc.sagemaker_message,
                                  inference_component=inference_component) from exc
    # Made at the first refusal: a call that finds a copy shows nothing and never asks the
    # display layer (IPython, ipywidgets) what it can show.
    line: ProgressLine | None = None
    started = clock()
    pauses = growing_pauses(*CAPACITY_POLL_S)
    tries = 0
    while True:
        tries += 1
        try:
            response = call()
        except NoCapacityError as exc:
            if line is None:
                line = ProgressLine(out, repeat_after_s=60.0, clock=clock)
            elapsed = clock() - started
            if elapsed >= wait_for_capacity:
                line.finish(f"no copy after {format_elapsed(elapsed)} ({tries} tries)")
                raise NoCapacityError(
                    f"Still no capacity after waiting {format_elapsed(elapsed)} ({tries} tries); "
                    f"SageMaker said: {exc.sagemaker_message}",
                    inference_component=inference_component) from exc
            if tries == 1:
                line.note(
                    f"No capacity: {inference_component or 'the component'} has no copy "
                    f"running (it scaled in to zero). Waiting up to {wait_for_capacity:.0f} s "
                    "while Application Auto Scaling starts one.")
            line.update(f"waiting for a copy: {format_elapsed(elapsed)} elapsed, {tries} "
                        f"tr{'ies' if tries != 1 else 'y'} so far", state="waiting")
            sleep(max(0.0, min(next(pauses), wait_for_capacity - elapsed)))
            continue
        if line is not None:
            line.finish(f"a copy is serving after {format_elapsed(clock() - started)} "
                        f"({tries} tries); streaming the answer.")
        return response


def invoke_stream(
    client: Any,
    endpoint_name: str,
    payload: Mapping[str, Any],
    *,
    container: str = "auto",
    preset: Preset | None = None,
    custom_attributes: str | None = None,
    accept: str | None = None,
    inference_component: str | None = None,
    stop_tokens: Iterable[str] = (),
    wait_for_capacity: float | None = None,
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
    out: TextIO | None = None,
) -> TokenStream:
    """Send ``payload`` with ``InvokeEndpointWithResponseStream``; return its token stream.

    The payload is checked with :func:`validate_payload` first. ``ThrottlingException``,
    ``ServiceUnavailable`` and HTTP 429/503 before the response starts are retried, up to
    ``max_attempts`` calls in all, after ``backoff_s * 2**(n-1) * (1 + jitter())`` seconds.
    Nothing is retried once the response has started: a failure mid-stream raises
    :class:`~common.errors.StreamError` from the returned stream, with the text received so
    far, and is never replayed silently.

    Args:
        client: a ``sagemaker-runtime`` client (:func:`runtime_client`).
        endpoint_name: the endpoint.
        payload: the request body (``"stream": true`` required).
        container: ``"tgi"``, ``"lmi"`` or ``"auto"`` (default: the preset's, else sniffed
            from the stream).
        preset: the endpoint's preset, to check the token budget.
        custom_attributes: the ``CustomAttributes`` header.
        accept: the ``Accept`` header; left out by default, since both containers choose the
            stream format from ``"stream"`` in the body.
        inference_component: the inference component to call (``InferenceComponentName``),
            required on an endpoint that hosts inference components.
        stop_tokens: extra end-of-answer token texts, as for :func:`common.iter_tokens`
            (the model's own, e.g. ``common.prompt_builder_for(model_id).stop_tokens``).
        wait_for_capacity: seconds to wait when the component has no copy (it scaled in to
            zero): the call says so, shows a progress line and tries again (pausing 1 s,
            then 1.5 times longer each time, at most 5 s) until a copy serves or the time
            is up. ``None`` (the default) raises :class:`~common.errors.NoCapacityError` at
            once.
        max_attempts / backoff_s / sleep / jitter: the retry policy (``sleep`` and ``jitter``
            are injectable for tests).
        clock / out: the clock of the capacity wait and where its progress goes (default
            ``sys.stdout``).

    Returns:
        ``common.streaming.iter_tokens(response["Body"], container, stop_tokens=...)``: a
        :class:`~common.streaming.TokenStream`.

    Raises:
        PayloadError: the payload fails :func:`validate_payload`.
        ModelInvocationError: the container answered with an error (``ModelError``, 424); the
            message names its status and the CloudWatch log stream.
        NoCapacityError: the inference component has no copy, and ``wait_for_capacity`` is
            ``None`` or ran out; the message says how to get a copy.
        EndpointNotFoundError, ThrottledError, InvocationError: other failures before the
            stream starts (an endpoint with inference components called without
            ``inference_component`` is an ``InvocationError`` that says to pass it).
        ValueError: ``wait_for_capacity`` is negative or not a number.
    """
    from common.streaming import iter_tokens

    kind = resolve_container(container, preset)
    body = validate_payload(payload, preset, container=kind, custom_attributes=custom_attributes,
                            streaming=True)
    kwargs = invocation_kwargs(endpoint_name, body, custom_attributes, accept, inference_component)
    response = _call_with_capacity_wait(
        lambda: _call_with_retries(
            lambda: client.invoke_endpoint_with_response_stream(**kwargs), endpoint_name,
            max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter),
        inference_component, wait_for_capacity, sleep=sleep, clock=clock, out=out)
    return iter_tokens(response["Body"], kind, stop_tokens=stop_tokens)


def invoke(
    client: Any,
    endpoint_name: str,
    payload: Mapping[str, Any],
    *,
    container: str = "auto",
    preset: Preset | None = None,
    custom_attributes: str | None = None,
    accept: str | None = "application/json",
    inference_component: str | None = None,
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> Any:
    """Send ``payload`` with ``InvokeEndpoint`` (no streaming); return the parsed JSON answer.

    Checks, retries and error mapping as :func:`invoke_stream`; the body must not say
    ``"stream": true``. TGI answers ``[{"generated_text": ...}]``, LMI
    ``{"generated_text": ...}``, the Messages API a ``chat.completion`` object.
    ``inference_component`` names the inference component to call (``InferenceComponentName``).

    Raises:
        PayloadError, ModelInvocationError, EndpointNotFoundError, ThrottledError,
            NoCapacityError: as :func:`invoke_stream` (without waiting for capacity).
        InvocationError: also when the answer is not JSON.
    """
    kind = resolve_container(container, preset)
    body = validate_payload(payload, preset, container=kind, custom_attributes=custom_attributes,
                            streaming=False)
    kwargs = invocation_kwargs(endpoint_name, body, custom_attributes, accept, inference_component)
    response = _call_with_capacity_wait(
        lambda: _call_with_retries(
            lambda: client.invoke_endpoint(**kwargs), endpoint_name,
            max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep, jitter=jitter),
        inference_component, None, sleep=sleep, clock=time.monotonic, out=None)
    return parse_json_answer(response["Body"].read(), response, endpoint_name)


def parse_json_answer(raw: bytes, response: Mapping[str, Any], endpoint_name: str) -> Any:
    """Return the decoded JSON of a non-streaming answer's body ``raw``.

    Raises:
        InvocationError: ``raw`` is not JSON (error code ``NotJson``); the message names
            ``response``'s content type.
    """
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvocationError(
            f"Endpoint {endpoint_name!r} answered with {response.get('ContentType', 'a body')} "
            f"that is not JSON: {raw[:200]!r}. Check that the body did not ask for a stream.",
            error_code="NotJson",
        ) from exc


# --------------------------------------------------------------------------- waiting


def client_or_default(client: Any, service: str) -> Any:
    """Return ``client`` when given, else a new ``boto3.client(service)`` (default session,
    region and credentials).

    Raises:
        ImportError: boto3 is not installed and no ``client`` was given.
        botocore.exceptions.NoRegionError: no region is configured for the new client.
    """
    if client is not None:
        return client
    import boto3

    return boto3.client(service)


def _error_code(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def is_not_found(exc: Exception) -> bool:
    """Return whether a botocore ``ClientError`` says the resource does not exist.

    SageMaker answers a missing resource with ``ValidationException`` "Could not find ...";
    S3 with ``NoSuchKey``/``NoSuchBucket``; IAM with ``NoSuchEntity``; Application Auto
    Scaling with ``ObjectNotFoundException``.
    """
    error = (getattr(exc, "response", None) or {}).get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).lower()
    if code in {"NoSuchKey", "NoSuchBucket", "NoSuchEntity", "ResourceNotFound",
                "ResourceNotFoundException", "ObjectNotFoundException"}:
        return True
    return code in {"ValidationException", "ValidationError"} and (
        "could not find" in message or "does not exist" in message)


def _region_of(client: Any) -> str | None:
    return getattr(getattr(client, "meta", None), "region_name", None)


def _clean_up_hint(client: Any, described: Mapping[str, Any]) -> str | None:
    """The ``python -m common.cleanup`` command for the endpoint's recipe and run, read from
    its tags; ``None`` (the errors' default call) when it has none or they cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from common.tags import resource_recipe_tags

    arn = described.get("EndpointArn")
    if not arn:
        return None
    try:
        tags = resource_recipe_tags(client, arn)
    except (ClientError, BotoCoreError):  # only the hint is lost: the error is raised anyway
        return None
    if tags is None:
        return None
    region = _region_of(client)
    where = f" --region {region}" if region else ""
    return (f"run the clean-up cell of the recipe's notebook, or in a terminal: python -m "
            f"common.cleanup --recipe {tags.recipe} --run {tags.run}{where} --delete (without "
            "--delete it only lists)")


def wait_for_endpoint(
    endpoint_name: str,
    *,
    sagemaker_client: Any = None,
    timeout_s: float = 3600,
    poll_s: float = 15,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
    clean_up: str | None = None,
) -> dict[str, Any]:
    """Poll ``DescribeEndpoint`` until the endpoint is ``InService``, showing the progress.

    The progress (:class:`common.progress.ProgressLine`) is the status and the elapsed time,
    e.g. ``llama-2-7b: Creating (elapsed 03:15)``: one line updating in place in Jupyter; in a
    terminal, a headless run or ``out``, a line per status change (and every 5 minutes of
    the same status), then the final one.

    Args:
        endpoint_name: the endpoint.
        sagemaker_client: a boto3 ``sagemaker`` client (default: a new one).
        timeout_s: give up after this many seconds (default one hour).
        poll_s: the longest pause between polls; the first is 1 s and each next one 1.5
            times longer, so an endpoint that is quick to come up is seen quickly.
        progress: show the progress line.
        clock / sleep: injectable for tests.
        out: write the progress here as plain lines (default: Jupyter's updating line, or
            ``sys.stdout``).
        clean_up: what deletes this run's resources, for the error's message (a cell, a call
            or a command). Default: the ``python -m common.cleanup`` command for the recipe
            and run in the endpoint's tags (:mod:`common.tags`), else a
            :func:`delete_endpoint_resources` call.

    Returns:
        The last ``DescribeEndpoint`` response (status ``InService``).

    Raises:
        EndpointFailedError: the endpoint went to ``Failed``; the message has SageMaker's
            ``FailureReason``, the CloudWatch log link and how to delete what the run created.
        EndpointWaitTimeout: still not ``InService`` after ``timeout_s``; says what to check,
            how to wait longer and how to delete what the run created.
        DeploymentError: the endpoint does not exist or is being deleted.
        botocore.exceptions.ClientError: any other failure of ``DescribeEndpoint``.
    """
    from botocore.exceptions import ClientError

    client = client_or_default(sagemaker_client, "sagemaker")
    line = ProgressLine(out, enabled=progress, clock=clock)
    started = clock()
    pauses = growing_pauses(1.0, poll_s)

    while True:
        try:
            described = client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as exc:
            if is_not_found(exc):
                line.finish(f"{endpoint_name}: not found")
                raise DeploymentError(
                    f"Endpoint {endpoint_name!r} does not exist in this account and region. "
                    "Check the name and the region, and that Endpoint.create ran."
                ) from exc
            raise
        status = str(described.get("EndpointStatus", "Unknown"))
        elapsed = clock() - started
        if status == "InService":
            line.finish(f"{endpoint_name}: InService after {format_elapsed(elapsed)}")
            return described
        if status == "Failed":
            line.finish(f"{endpoint_name}: Failed after {format_elapsed(elapsed)}")
            raise EndpointFailedError(
                endpoint_name, described.get("FailureReason"), region=_region_of(client),
                clean_up=clean_up or _clean_up_hint(client, described))
        if status == "Deleting":
            line.finish(f"{endpoint_name}: Deleting")
            raise DeploymentError(f"Endpoint {endpoint_name!r} is being deleted; deploy it "
                                  "again to use it.")
        if elapsed >= timeout_s:
            line.finish(f"{endpoint_name}: still {status} after {format_elapsed(elapsed)}")
            raise EndpointWaitTimeout(
                endpoint_name, status, elapsed, region=_region_of(client),
                clean_up=clean_up or _clean_up_hint(client, described))
        line.update(f"{endpoint_name}: {status} (elapsed {format_elapsed(elapsed)})", state=status)
        sleep(max(0.0, min(next(pauses), timeout_s - elapsed)))


# --------------------------------------------------------------------------- clean-up


def delete_if_exists(kind: str, name: str, call: Callable[[], Any]) -> str:
    """Run ``call`` (a delete); return ``"KIND NAME: deleted"``, or ``"... already gone"``
    when the service answers that the resource does not exist (:func:`is_not_found`).

    Raises:
        botocore.exceptions.ClientError: any other failure (e.g. AccessDenied).
    """
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        if is_not_found(exc):
            return f"{kind} {name}: already gone"
        raise
    return f"{kind} {name}: deleted"


_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")
"""Endpoint states in which SageMaker refuses ``DeleteEndpoint`` ("Cannot update in-progress
endpoint")."""


def _inspect(sm: Any, endpoint_name: str, endpoint_config_name: str | None,
             model_name: str | None) -> tuple[str | None, str | None, list[str]]:
    """Return (endpoint status or None if gone, config name, model names).

    Names not given are read from the endpoint and its config while those still exist.
    """
    from botocore.exceptions import ClientError

    status = None
    try:
        described = sm.describe_endpoint(EndpointName=endpoint_name)
        status = str(described.get("EndpointStatus", ""))
        if endpoint_config_name is None:
            endpoint_config_name = described.get("EndpointConfigName")
    except ClientError as exc:
        if not is_not_found(exc):
            raise
    models = [model_name] if model_name else []
    if model_name is None and endpoint_config_name:
        try:
            config = sm.describe_endpoint_config(EndpointConfigName=endpoint_config_name)
            models = [v["ModelName"] for v in config.get("ProductionVariants", [])
                      if v.get("ModelName")]
        except ClientError as exc:
            if not is_not_found(exc):
                raise
    return status, endpoint_config_name, models


def _status(sm: Any, endpoint_name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(sm.describe_endpoint(EndpointName=endpoint_name).get("EndpointStatus", ""))
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        return None


def delete_endpoint(
    endpoint_name: str,
    *,
    sagemaker_client: Any = None,
    wait_s: float = 3600,
    poll_s: float = 30,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> str:
    """Delete an endpoint, waiting first while SageMaker cannot delete it.

    SageMaker refuses ``DeleteEndpoint`` while the endpoint is ``Creating`` or ``Updating``
    ("Cannot update in-progress endpoint") -- an endpoint whose wait timed out is one -- and
    such an endpoint bills as soon as it is ``InService``. So this polls (1 s, then 1.5 times
    longer, at most ``poll_s``) until it is ``InService`` or ``Failed``, then deletes it. It
    does not wait for the deletion itself to finish.

    Args:
        endpoint_name: the endpoint.
        sagemaker_client: a boto3 ``sagemaker`` client (default: a new one).
        wait_s: the longest wait for an in-progress endpoint to settle.
        poll_s / clock / sleep: the polling (injectable for tests).
        out: where the waiting line goes (default ``sys.stdout``).

    Returns:
        ``"endpoint NAME: deleted"``, ``"... already gone"`` or ``"... already being deleted"``.

    Raises:
        DeploymentError: still in progress after ``wait_s`` (it may bill once it is up: run the
            clean-up again later).
        botocore.exceptions.ClientError: any other failure (e.g. AccessDenied).
    """
    sm = client_or_default(sagemaker_client, "sagemaker")
    return _delete_settled(sm, endpoint_name, _status(sm, endpoint_name), wait_s=wait_s,
                           poll_s=poll_s, clock=clock, sleep=sleep, out=out)


def _delete_settled(sm: Any, endpoint_name: str, status: str | None, *, wait_s: float,
                    poll_s: float, clock: Callable[[], float], sleep: Callable[[float], None],
                    out: TextIO | None) -> str:
    """:func:`delete_endpoint`'s loop, from a status just read (``None``: gone)."""
    line = ProgressLine(out, clock=clock)
    started = clock()
    pauses = growing_pauses(1.0, poll_s)
    waited = False
    while True:
        if status is None:
            result = f"endpoint {endpoint_name}: already gone"
            break
        if status == "Deleting":
            result = f"endpoint {endpoint_name}: already being deleted"
            break
        elapsed = clock() - started
        if status not in _IN_PROGRESS:
            result = delete_if_exists("endpoint", endpoint_name,
                                      lambda: sm.delete_endpoint(EndpointName=endpoint_name))
            break
        if elapsed >= wait_s:
            if waited:
                line.finish(f"endpoint {endpoint_name}: still {status} after "
                            f"{format_elapsed(elapsed)}")
            raise DeploymentError(
                f"Endpoint {endpoint_name!r} is still {status} after {format_elapsed(elapsed)}: "
                "SageMaker cannot delete it until it is InService or Failed, and it bills "
                "once it is InService. Run the clean-up again later (what is gone is skipped).")
        line.update(f"endpoint {endpoint_name} is {status}: SageMaker cannot delete it before it "
                    f"is InService or Failed; waiting ({format_elapsed(elapsed)})", state=status)
        waited = True
        sleep(max(0.0, min(next(pauses), wait_s - elapsed)))
        status = _status(sm, endpoint_name)
    if waited:
        waited_for = format_elapsed(clock() - started)
        line.finish(f"endpoint {endpoint_name}: {status or 'gone'} after {waited_for}")
    return result


def _split_s3_uri(s3_uri: str) -> tuple[str, str]:
    if not isinstance(s3_uri, str) or not s3_uri.startswith("s3://"):
        raise DeploymentError(f"s3_uri must look like s3://bucket/prefix/, not {s3_uri!r}.")
    bucket, _, prefix = s3_uri[len("s3://"):].partition("/")
    if not bucket or not prefix.strip("/"):
        raise DeploymentError(
            f"Refusing to delete every object of a bucket ({s3_uri!r}): give the prefix the "
            "recipe uploaded to, e.g. s3://bucket/llama-2-recipes/runs/<endpoint-name>/."
        )
    return bucket, prefix if prefix.endswith("/") else prefix + "/"


def delete_s3_prefix(s3_uri: str, *, s3_client: Any = None) -> str:
    """Delete every object under ``s3://bucket/prefix/`` (a missing ``/`` is added).

    Returns:
        ``"S3 prefix URI: deleted N objects"`` or ``"S3 prefix URI: already gone"``.

    Raises:
        DeploymentError: a URI without a prefix (never a whole bucket), or objects S3 would
            not delete.
        botocore.exceptions.ClientError: any other failure (e.g. AccessDenied).
    """
    from botocore.exceptions import ClientError

    bucket, prefix = _split_s3_uri(s3_uri)
    s3 = client_or_default(s3_client, "s3")
    where = f"s3://{bucket}/{prefix}"
    deleted = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                answer = s3.delete_objects(Bucket=bucket,
                                           Delete={"Objects": keys[start:start + 1000],
                                                   "Quiet": True})
                errors = answer.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise DeploymentError(
                        f"Could not delete {len(errors)} object(s) under {where}, e.g. "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}. Check "
                        "the role's s3:DeleteObject permission and run the clean-up again."
                    )
            deleted += len(keys)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchBucket":
            raise
        return f"S3 prefix {where}: already gone (no bucket {bucket})"
    if deleted:
        return f"S3 prefix {where}: deleted {deleted} object{'s' if deleted != 1 else ''}"
    return f"S3 prefix {where}: already gone"


def delete_endpoint_resources(
    endpoint_name: str,
    *,
    endpoint_config_name: str | None = None,
    model_name: str | None = None,
    s3_uri: str | None = None,
    keep_in_service: bool = False,
    sagemaker_client: Any = None,
    s3_client: Any = None,
    wait_s: float = 3600,
    poll_s: float = 30,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> list[str]:
    """Delete what a recipe created: endpoint, endpoint config, model and (LMI) S3 prefix.

    Idempotent: a resource that no longer exists (SageMaker's "Could not find ...", S3's
    ``NoSuchBucket`` or an empty prefix) is reported as already gone, and an endpoint that is
    already ``Deleting`` is left alone, so the clean-up cell can run twice. When
    ``endpoint_config_name`` or ``model_name`` is not given, it is read from the endpoint (and
    its config) while those still exist. An endpoint that is still ``Creating`` (a wait that
    timed out) cannot be deleted yet: :func:`delete_endpoint` waits until it is ``InService``
    or ``Failed``, then deletes it.

    Args:
        endpoint_name: the endpoint.
        endpoint_config_name: its endpoint configuration.
        model_name: its model.
        s3_uri: ``s3://bucket/prefix/`` whose every object is deleted (an LMI run's own
            uploads); a missing trailing ``/`` is added, so ``.../ep`` never matches ``.../ep2``.
        keep_in_service: delete nothing when the endpoint is ``InService`` (the deploy
            notebook's clean-up after a failure: a healthy endpoint belongs to the inference
            notebook); say so instead.
        sagemaker_client / s3_client: boto3 clients (default: new ones).
        wait_s / poll_s / clock / sleep / out: the wait for an in-progress endpoint, as
            :func:`delete_endpoint`.

    Returns:
        One line per resource, e.g. ``"endpoint llama-2-7b: deleted"`` or
        ``"model llama-2-7b: already gone"``.

    Raises:
        DeploymentError: for an ``s3_uri`` without a prefix, objects S3 would not delete, or
            an endpoint still in progress after ``wait_s``.
        botocore.exceptions.ClientError: for any other failure (e.g. AccessDenied).
    """
    if s3_uri is not None:
        _split_s3_uri(s3_uri)  # refuse a bad URI before anything is deleted
    sm = client_or_default(sagemaker_client, "sagemaker")
    status, config_name, models = _inspect(sm, endpoint_name, endpoint_config_name, model_name)
    if keep_in_service and status == "InService":
        return [f"endpoint {endpoint_name}: InService, kept -- it is healthy and billing; the "
                "inference notebook uses it, and its clean-up cell deletes it"]
    done = [_delete_settled(sm, endpoint_name, status, wait_s=wait_s, poll_s=poll_s,
                            clock=clock, sleep=sleep, out=out)]
    if config_name:
        done.append(delete_if_exists(
            "endpoint config", config_name,
            lambda: sm.delete_endpoint_config(EndpointConfigName=config_name)))
    else:
        done.append("endpoint config: unknown (the endpoint is gone; pass endpoint_config_name)")
    for name in models:
        done.append(delete_if_exists("model", name,
                                     lambda name=name: sm.delete_model(ModelName=name)))
    if not models:
        done.append("model: unknown (the endpoint config is gone; pass model_name)")
    if s3_uri is not None:
        done.append(delete_s3_prefix(s3_uri, s3_client=s3_client))
    return done


# --------------------------------------------------------------------------- the role


def _role_help(reason: str) -> str:
    return (
        f"No SageMaker execution role found: {reason}. The endpoint needs an IAM role that "
        "SageMaker can assume. Create one in the IAM console (Roles > Create role > AWS "
        "service > SageMaker), whose trust policy allows the principal "
        '{"Service": "sagemaker.amazonaws.com"} to sts:AssumeRole, with the '
        f"AmazonSageMakerFullAccess policy attached; name it {FALLBACK_ROLE_NAME!r}, or export "
        f"{EXECUTION_ROLE_ENV_VAR}=arn:aws:iam::<account>:role/<name> before starting Jupyter. "
        "(SageMaker Studio and notebook instances already run with one.)"
    )


def default_bucket(session: Any, region: str) -> str:
    """Return SageMaker's default bucket name for the account, ``sagemaker-<region>-<account>``
    (what the SDK's ``Session.default_bucket()`` uses), read with STS ``GetCallerIdentity``.

    Raises:
        botocore.exceptions.ClientError: as ``GetCallerIdentity`` raises it.
    """
    account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    return f"sagemaker-{region}-{account}"


def resolve_execution_role(
    session: Any = None,
    *,
    environ: Mapping[str, str] | None = None,
    metadata_file: str = NOTEBOOK_METADATA_FILE,
) -> str:
    """Return the ARN of the IAM role the endpoint will run as.

    In order:

    1. Inside SageMaker Studio or a notebook instance (``metadata_file`` exists): the SDK's
       ``sagemaker.core.helper.session_helper.get_execution_role``.
    2. The ``SAGEMAKER_EXECUTION_ROLE_ARN`` environment variable.
    3. The IAM role named ``sagemaker_execution_role`` (``iam.get_role``), as the original
       recipes fell back to.

    Args:
        session: a SageMaker SDK ``Session`` or a ``boto3.Session`` (default: new ones).
        environ: the environment to read (default ``os.environ``).
        metadata_file: the file SageMaker writes into Studio and notebook instances.

    Raises:
        DeploymentError: when none of these gives a role; the message says how to create one
            (console, trust principal ``sagemaker.amazonaws.com``, ``AmazonSageMakerFullAccess``)
            and how to set the environment variable; also when the IAM lookup itself fails
            (e.g. no credentials or no ``iam:GetRole`` permission).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    env = os.environ if environ is None else environ
    reasons = []
    if os.path.exists(metadata_file):
        from sagemaker.core.helper import session_helper

        sm_session = session if hasattr(session, "boto_session") else (
            session_helper.Session(boto_session=session) if session is not None
            else session_helper.Session())
        try:
            return str(session_helper.get_execution_role(sm_session))
        except ValueError as exc:  # the identity is a user, not a role
            reasons.append(f"SageMaker's get_execution_role: {exc}")
    role = env.get(EXECUTION_ROLE_ENV_VAR, "").strip()
    if role:
        if not role.startswith("arn:") or ":role/" not in role:
            raise DeploymentError(
                f"{EXECUTION_ROLE_ENV_VAR}={role!r} is not an IAM role ARN: set it to "
                "arn:aws:iam::<account>:role/<name>."
            )
        return role
    reasons.append(f"{EXECUTION_ROLE_ENV_VAR} is not set")
    import boto3

    boto_session = _boto_session(session) if session is not None else boto3.Session()
    try:
        answer = boto_session.client("iam").get_role(RoleName=FALLBACK_ROLE_NAME)
        return str(answer["Role"]["Arn"])
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise DeploymentError(_role_help(
                f"looking up the IAM role {FALLBACK_ROLE_NAME!r} failed ({_error_code(exc)}: "
                f"{exc})")) from exc
        reasons.append(f"there is no IAM role named {FALLBACK_ROLE_NAME!r}")
    except BotoCoreError as exc:
        raise DeploymentError(_role_help(
            f"looking up the IAM role {FALLBACK_ROLE_NAME!r} failed ({exc})")) from exc
    raise DeploymentError(_role_help("; ".join(reasons)))

