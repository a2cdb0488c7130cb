"""How the serving containers read a request body and frame their output.

The runtime server picks a container from the endpoint's image URI
(:func:`container_for_image`), parses the body as that container would
(:func:`parse_request`, as strict as the real one), and then feeds every generated token to an
:class:`OutputSession`, which returns the exact bytes the container writes.

**TGI** (``huggingface-pytorch-tgi-inference``; read in text-generation-inference v3.3.6,
``router/src/lib.rs``, ``server.rs``, ``sagemaker.rs``, ``validation.rs``, ``chat.rs``):

* ``/invocations`` takes ``{"inputs", "parameters", "stream"}`` or a chat body with
  ``messages`` (an untagged enum: anything else is a 422 deserialisation error).
* Parameter fields are typed (a wrong type is a 422); unknown fields are ignored (serde,
  no ``deny_unknown_fields``) -- so ``stop_sequences`` is silently ignored: TGI reads ``stop``.
* ``max_new_tokens`` when absent: 20 up to v1.0, 100 from v1.1 to v2.x, and from v3.0
  "as many as fit": ``MAX_TOTAL_TOKENS`` minus the prompt's tokens (``validation.rs``).
* ``return_full_text`` defaults to true on this route for ``text-generation`` models such as
  Llama 2 chat (``compat_return_full_text``).
* Validation errors (``temperature <= 0``, ``top_p`` outside (0, 1), more than 4 ``stop``
  sequences, too many tokens) are HTTP 422 ``{"error", "error_type": "validation"}`` -- but
  with ``"stream": true`` TGI has already answered 200 and sends them as an SSE event.
* Streaming: SSE ``data: {...}`` events (``data:`` without the space before v2.1), index from
  1, the last with ``generated_text`` (and ``details`` when asked); no ``[DONE]``. Chat:
  ``chat.completion.chunk`` events ending ``data: [DONE]``.

**LMI** (``djl-inference`` >= 0.35, vLLM async mode; read in djl-serving 0.36.0-lmi27
``djl_python/lmi_vllm/request_response_utils.py``, ``vllm_async_service.py``,
``async_utils.py`` and ``engines/python/.../Request.java``):

* ``inputs`` -> vLLM completion: ``max_new_tokens`` -> ``max_tokens`` (default **30**),
  ``return_full_text`` -> echo, ``do_sample: false`` -> temperature 0, every other parameter
  passed to vLLM, which ignores unknown ones (``stop_sequences`` does nothing: use ``stop``).
* ``"stream": true`` streams ``application/jsonlines``: TGI-shaped lines
  ``{"index": 0, "token": {"id", "text", "logprob"}, "generated_text", "details"}`` (``index``
  is vLLM's choice index, always 0), then an empty line for vLLM's usage chunk and one for
  ``[DONE]``. ``details`` only when ``parameters.details`` is true.
* Without it: one ``{"generated_text": ...}`` document.
* Errors before the stream: HTTP status ``code`` with ``{"code", "error"}``; parsing failures
  are 424 "Input parsing failed: ...", vLLM's own checks 400. A failure mid-stream is vLLM's
  error chunk ``{"error": {"message", "type", "param", "code"}}`` on its own line.
* ``messages`` -> vLLM chat completion: ``chat.completion.chunk`` objects as json lines and an
  empty line for ``[DONE]``.

Prompt token counts are approximate (about 4 bytes a token): the stand-in has no tokenizer.
Not emulated: LMI's legacy handlers (images before 0.35, or ``OPTION_ROLLING_BATCH`` set),
which stream other formats -- every ``djl-inference`` image is answered in the async format --
and either container's ``{"prompt": ...}`` completions payload (answered 501).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from common.local.backends import GeneratedToken, GenerationRequest

__all__ = [
    "LMI",
    "TGI",
    "ContainerRejected",
    "ContainerSpec",
    "OutputSession",
    "ParsedRequest",
    "approx_tokens",
    "container_for_image",
    "open_session",
    "parse_request",
]

TGI = "tgi"
LMI = "lmi"

_TGI_IMAGE = re.compile(r"huggingface-pytorch-tgi-inference")
_TGI_VERSION = re.compile(r"tgi(\d+)\.(\d+)\.(\d+)")
_LMI_IMAGE = re.compile(r"djl-inference")
_LMI_VERSION = re.compile(r":(\d+)\.(\d+)\.(\d+)")
_TGI_MAX_STOP_SEQUENCES = 4
_DEFAULT_CONTEXT = 4096  # Llama 2's max_position_embeddings


@dataclass(frozen=True)
class ContainerSpec:
    """Which container an image runs.

    Attributes:
        kind: :data:`TGI` or :data:`LMI`.
        version: the TGI version (``(3, 3, 6)``) or DJL Serving version (``(0, 38, 0)``)
            read from the image tag, ``None`` when the tag does not say.
        image: the image URI.
    """

    kind: str
    version: tuple[int, ...] | None
    image: str

    def at_least(self, *version: int) -> bool:
        """Whether the image is this version or newer (an unknown version counts as new)."""
        return self.version is None or self.version >= version


def container_for_image(image: str) -> ContainerSpec | None:
    """Return the container an image URI runs, or ``None`` when the stand-in cannot emulate it.

    ``...huggingface-pytorch-tgi-inference:2.7.0-tgi3.3.6-gpu-...`` is TGI 3.3.6;
    ``...djl-inference:0.38.0-lmi29.0.0-cu130`` is LMI (DJL Serving 0.38.0).
    """
    if _TGI_IMAGE.search(image):
        match = _TGI_VERSION.search(image)
        return ContainerSpec(TGI, tuple(map(int, match.groups())) if match else None, image)
    if _LMI_IMAGE.search(image):
        match = _LMI_VERSION.search(image)
        return ContainerSpec(LMI, tuple(map(int, match.groups())) if match else None, image)
    return None


class ContainerRejected(Exception):
    """The container answered the request with an error status instead of generating.

    The runtime turns it into SageMaker's ``ModelError`` (424, with ``OriginalStatusCode``
    ``status`` and ``OriginalMessage`` the body) -- unless ``stream_body`` is set and the
    request streams: then the container had already answered 200 and ``stream_body`` is what
    it streamed (TGI's validation errors).

    Attributes:
        status: the container's HTTP status.
        body: the container's response body.
        content_type: its content type.
        stream_body: the bytes streamed instead, for a streaming request; else ``None``.
    """

    def __init__(self, status: int, body: bytes, content_type: str = "application/json",
                 stream_body: bytes | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.stream_body = stream_body
        super().__init__(f"container answered {status}: {body.decode('utf-8', 'replace')}")


@dataclass
class ParsedRequest:
    """A request body as the container understood it.

    Attributes:
        spec: the container.
        api: ``"generate"`` (an ``inputs`` body) or ``"chat"`` (a ``messages`` body).
        stream: whether the container streams its answer (``"stream": true``).
        generation: what the model is asked (prompt or messages, and sampling parameters).
        prompt: the text the model reads (``inputs``, or the rendered conversation).
        input_tokens: the prompt's approximate token count.
        max_new_tokens: the generation budget the container enforces.
        stop: stop sequences the container enforces.
        details: whether the answer carries ``details``.
        return_full_text: whether ``generated_text`` starts with the prompt.
        seed: the seed the container reports.
        model_id: the model name the container reports (``HF_MODEL_ID``).
        include_usage: chat streaming: send a usage chunk (``stream_options``).
        ignored: parameter names the container accepted but ignores.
    """

    spec: ContainerSpec
    api: str
    stream: bool
    generation: GenerationRequest
    prompt: str
    input_tokens: int
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    details: bool = False
    return_full_text: bool = False
    seed: int | None = None
    model_id: str = ""
    include_usage: bool = False
    ignored: list[str] = field(default_factory=list)


def approx_tokens(text: str) -> int:
    """Approximate a Llama 2 token count: about 4 UTF-8 bytes a token, plus BOS."""
    return 1 + math.ceil(len(text.encode("utf-8")) / 4)


def _json(obj: Any, *, compact: bool = True) -> str:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(obj, ensure_ascii=False, separators=separators)


def _int_env(environment: dict[str, str], *names: str) -> int | None:
    for name in names:
        value = environment.get(name)
        if value is not None and str(value).strip().isdigit():
            return int(value)
    return None


# --------------------------------------------------------------------------- parsing


def parse_request(spec: ContainerSpec, body: bytes,
                  environment: dict[str, str] | None = None) -> ParsedRequest:
    """Parse a request body as the container ``spec`` would.

    Args:
        spec: the endpoint's container.
        body: the raw request body.
        environment: the model's container environment (``MAX_TOTAL_TOKENS``,
            ``HF_MODEL_ID``, ``OPTION_MAX_MODEL_LEN``, ``MESSAGES_API_ENABLED``...).

    Returns:
        The :class:`ParsedRequest`.

    Raises:
        ContainerRejected: the container would answer with an error status (or, for TGI
            streaming, with an in-stream error event).
    """
    environment = dict(environment or {})
    if spec.kind == TGI:
        parsed = _parse_tgi(spec, body, environment)
    else:
        parsed = _parse_lmi(spec, body, environment)
    parsed.generation.model_id = parsed.model_id  # the backend ends with the model's end token
    return parsed


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and part.get("type", "text") == "text")
    return content


def _render_chat(messages: list[dict[str, Any]], model_id: str | None = None,
                 container: str = LMI) -> str:
    """Render messages with the served model's chat template, as the container's tokenizer
    would (with the BOS text): the template the container finds in the model's files
    (:func:`common.local.served_model.render_chat`), else the Llama 2 layout."""
    from common.local.served_model import render_chat

    plain = [{**m, "content": _content_text(m.get("content"))} if isinstance(m, dict) else m
             for m in messages]
    return render_chat(plain, model_id, "tgi" if container == TGI else "lmi")


# ----------------------------------------------------------------- TGI


class _TgiTypeError(Exception):
    pass


def _tgi_reject(status: int, message: str, error_type: str, *, stream: bool,
                prefix: str) -> ContainerRejected:
    document = _json({"error": message, "error_type": error_type})
    return ContainerRejected(
        status, document.encode(), "application/json",
        stream_body=f"{prefix}{document}\n\n".encode() if stream else None,
    )


def _tgi_deserialise_error(detail: str) -> ContainerRejected:
    text = f"Failed to deserialize the JSON body into the target type: {detail}"
    return ContainerRejected(422, text.encode(), "text/plain; charset=utf-8")


def _tgi_typed(params: dict[str, Any], name: str, kind: str) -> Any:
    """Read one typed field the way serde would (None/absent -> None)."""
    value = params.get(name)
    if value is None:
        return None
    ok = {
        "uint": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "strlist": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        raise _TgiTypeError(f"parameters.{name}: invalid type: {type(value).__name__} "
                            f"`{value!r}`, expected {kind}")
    return value


_TGI_PARAMETERS = {
    "best_of": "uint", "temperature": "float", "repetition_penalty": "float",
    "frequency_penalty": "float", "top_k": "int", "top_p": "float", "typical_p": "float",
    "do_sample": "bool", "max_new_tokens": "uint", "return_full_text": "bool",
    "stop": "strlist", "truncate": "uint", "watermark": "bool", "details": "bool",
    "decoder_input_details": "bool", "seed": "uint", "top_n_tokens": "uint",
    "adapter_id": "str",
}


def _tgi_default_max_new_tokens(spec: ContainerSpec) -> int | None:
    if not spec.at_least(1, 1):
        return 20
    if not spec.at_least(3, 0):
        return 100
    return None  # v3: as many as fit in MAX_TOTAL_TOKENS


def _parse_tgi(spec: ContainerSpec, body: bytes, env: dict[str, str]) -> ParsedRequest:
    prefix = "data: " if spec.at_least(2, 1) else "data:"
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        text = f"Failed to parse the request body as JSON: {exc}"
        raise ContainerRejected(400, text.encode(), "text/plain; charset=utf-8") from exc
    if not isinstance(payload, dict):
        raise _tgi_deserialise_error("data did not match any variant of untagged enum "
                                     "SagemakerRequest")
    chat_ok = spec.at_least(2, 4) or env.get("MESSAGES_API_ENABLED", "").lower() == "true"
    if "inputs" in payload:
        return _parse_tgi_generate(spec, payload, env, prefix)
    if "messages" in payload and chat_ok:
        return _parse_tgi_chat(spec, payload, env)
    if "prompt" in payload and spec.at_least(2, 4):
        raise ContainerRejected(
            501, b"The local stand-in does not emulate TGI's completions payload "
                 b"({\"prompt\": ...}); send {\"inputs\": ...} or {\"messages\": ...}.",
            "text/plain; charset=utf-8")
    if not spec.at_least(2, 4):
        raise _tgi_deserialise_error("missing field `inputs`")
    raise _tgi_deserialise_error("data did not match any variant of untagged enum "
                                 "SagemakerRequest")


def _tgi_limits(env: dict[str, str]) -> tuple[int, int]:
    total = _int_env(env, "MAX_TOTAL_TOKENS") or _DEFAULT_CONTEXT
    max_input = _int_env(env, "MAX_INPUT_TOKENS", "MAX_INPUT_LENGTH") or total - 1
    return max_input, total


def _tgi_budget(spec: ContainerSpec, env: dict[str, str], input_tokens: int,
                requested: int | None, *, stream: bool, prefix: str) -> int:
    max_input, total = _tgi_limits(env)
    max_new = requested if requested is not None else _tgi_default_max_new_tokens(spec)
    if max_new is None:
        max_new = max(total - input_tokens, 0)
    if input_tokens + max_new > total:
        raise _tgi_reject(422, "Input validation error: `inputs` tokens + `max_new_tokens` "
                          f"must be <= {total}. Given: {input_tokens} `inputs` tokens and "
                          f"{max_new} `max_new_tokens`", "validation",
                          stream=stream, prefix=prefix)
    if input_tokens > max_input:
        raise _tgi_reject(422, f"Input validation error: `inputs` must have less than "
                          f"{max_input} tokens. Given: {input_tokens}", "validation",
                          stream=stream, prefix=prefix)
    return max_new


def _parse_tgi_generate(spec: ContainerSpec, payload: dict[str, Any], env: dict[str, str],
                        prefix: str) -> ParsedRequest:
    inputs = payload.get("inputs")
    stream = payload.get("stream", False)
    if not isinstance(inputs, str):
        raise _tgi_deserialise_error("inputs: invalid type, expected a string")
    if not isinstance(stream, bool):
        raise _tgi_deserialise_error("stream: invalid type, expected a boolean")
    has_parameters = payload.get("parameters") is not None
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise _tgi_deserialise_error("parameters: invalid type, expected struct "
                                     "GenerateParameters")
    try:
        values = {name: _tgi_typed(params, name, kind) for name, kind in _TGI_PARAMETERS.items()}
    except _TgiTypeError as exc:
        raise _tgi_deserialise_error(str(exc)) from exc
    ignored = sorted(set(params) - set(_TGI_PARAMETERS) - {"grammar"})

    def invalid(message: str) -> ContainerRejected:
        return _tgi_reject(422, f"Input validation error: {message}", "validation",
                           stream=stream, prefix=prefix)

    temperature, top_p, top_k = values["temperature"], values["top_p"], values["top_k"]
    if temperature is not None and temperature <= 0:
        raise invalid("`temperature` must be strictly positive")
    if values["repetition_penalty"] is not None and values["repetition_penalty"] <= 0:
        raise invalid("`repetition_penalty` must be strictly positive")
    penalty = values["frequency_penalty"]
    if penalty is not None and not -2.0 <= penalty <= 2.0:
        raise invalid("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if top_p is not None and not 0.0 < top_p < 1.0:
        raise invalid("`top_p` must be > 0.0 and < 1.0")
    if values["typical_p"] is not None and not 0.0 < values["typical_p"] < 1.0:
        raise invalid("`typical_p` must be > 0.0 and < 1.0")
    if top_k is not None and top_k <= 0:
        raise invalid("`top_k` must be strictly positive")
    if values["max_new_tokens"] == 0:
        raise invalid("`max_new_tokens` must be strictly positive")
    stop = values["stop"] or []
    if len(stop) > _TGI_MAX_STOP_SEQUENCES:
        raise invalid(f"`stop` supports up to {_TGI_MAX_STOP_SEQUENCES} stop sequences. "
                      f"Given: {len(stop)}")
    if not inputs:
        raise invalid("`inputs` cannot be empty")
    if stream and values["decoder_input_details"]:
        raise invalid("`decoder_input_details` == true is not supported when streaming tokens")
    input_tokens = approx_tokens(inputs)
    max_new = _tgi_budget(spec, env, input_tokens, values["max_new_tokens"], stream=stream,
                          prefix=prefix)
    # default_parameters() (no "parameters" at all) samples; serde's default for the field
    # when "parameters" is present does not.
    do_sample = values["do_sample"] if values["do_sample"] is not None else not has_parameters
    sampling = do_sample or temperature is not None or top_k is not None or top_p is not None
    seed = values["seed"]
    if sampling and seed is None:
        seed = random.getrandbits(63)
    return_full_text = values["return_full_text"]
    if return_full_text is None:
        return_full_text = True  # compat route, pipeline_tag "text-generation"
    return ParsedRequest(
        spec=spec, api="generate", stream=stream,
        generation=GenerationRequest(
            prompt=inputs, messages=None, max_new_tokens=max_new, stop=list(stop),
            temperature=temperature, top_p=top_p, top_k=top_k, do_sample=bool(sampling),
            repetition_penalty=values["repetition_penalty"], seed=values["seed"],
        ),
        prompt=inputs, input_tokens=input_tokens, max_new_tokens=max_new, stop=list(stop),
        details=bool(values["details"]), return_full_text=return_full_text,
        seed=seed if sampling else None, model_id=env.get("HF_MODEL_ID", "tgi"),
        ignored=ignored,
    )


def _check_messages(messages: Any) -> list[dict[str, Any]] | None:
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str | list) for m in messages
    ):
        return None
    return messages


def _parse_tgi_chat(spec: ContainerSpec, payload: dict[str, Any],
                    env: dict[str, str]) -> ParsedRequest:
    messages = _check_messages(payload.get("messages"))
    if messages is None:
        raise _tgi_deserialise_error("messages: invalid type, expected a sequence of "
                                     "{role, content} messages")
    stream = payload.get("stream", False)
    try:
        max_tokens = _tgi_typed(payload, "max_tokens", "uint")
        if max_tokens is None:
            max_tokens = _tgi_typed(payload, "max_completion_tokens", "uint")
        temperature = _tgi_typed(payload, "temperature", "float")
        top_p = _tgi_typed(payload, "top_p", "float")
        seed = _tgi_typed(payload, "seed", "uint")
        stop = _tgi_typed(payload, "stop", "strlist") or []
        if not isinstance(stream, bool):
            raise _TgiTypeError("stream: invalid type, expected a boolean")
    except _TgiTypeError as exc:
        raise _tgi_deserialise_error(str(exc)) from exc
    options = payload.get("stream_options") or {}
    try:
        prompt = _render_chat(messages, env.get("HF_MODEL_ID"), TGI)
    except ValueError as exc:
        document = _json({"error": f"Template error: {exc}", "error_type": "template_error"})
        raise ContainerRejected(422, document.encode()) from exc
    input_tokens = approx_tokens(prompt)
    max_new = _tgi_budget(spec, env, input_tokens, max_tokens, stream=False, prefix="")
    do_sample = not (temperature is not None and temperature == 0.0)
    return ParsedRequest(
        spec=spec, api="chat", stream=stream,
        generation=GenerationRequest(
            prompt=prompt, messages=messages, max_new_tokens=max_new, stop=list(stop),
            temperature=temperature if do_sample else None, top_p=top_p,
            do_sample=do_sample, seed=seed,
        ),
        prompt=prompt, input_tokens=input_tokens, max_new_tokens=max_new, stop=list(stop),
        details=True, seed=seed, model_id=env.get("HF_MODEL_ID", "tgi"),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
    )


# ----------------------------------------------------------------- LMI


def _lmi_error(status: int, message: str) -> ContainerRejected:
    return ContainerRejected(status, _json({"code": status, "error": message}).encode())


def _lax(value: Any, kind: str, name: str) -> Any:
    """Pydantic's lax coercion for the few types the stand-in reads."""
    if value is None:
        return None
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | str) and str(value).lower() in {
                    "0", "1", "true", "false", "yes", "no", "on", "off"}:
                return str(value).lower() in {"1", "true", "yes", "on"}
            raise ValueError
        if isinstance(value, bool) and kind != "bool":
            return int(value) if kind == "int" else float(value)
        if kind == "int":
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, int | float) or number != int(number):
                raise ValueError
            return int(number)
        if kind == "float":
            return float(value)
        if kind == "stop":
            if isinstance(value, str):
                return [value]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise _lmi_error(424, f"Input parsing failed: 1 validation error for request\n{name}\n"
                         f"  Input should be a valid {kind}, got {value!r}") from exc
    raise AssertionError(kind)


# vLLM request fields the stand-in reads; any other parameter is accepted and ignored
# (vLLM's OpenAIBaseModel allows and logs extra fields).
_LMI_KNOWN = {
    "temperature": "float", "top_p": "float", "top_k": "int", "seed": "int", "stop": "stop",
    "repetition_penalty": "float", "max_tokens": "int", "echo": "bool",
}
_TOP_N_TOKENS_REFUSED = (
    "parameters.top_n_tokens becomes vLLM's n in LMI 0.36.0 (djl-serving "
    "lmi_vllm/request_response_utils.py, convert_lmi_schema_to_completion_request): n "
    "completions interleaved in one stream. The local stand-in refuses it so that a recipe "
    "that sends it fails here rather than streaming mixed answers on SageMaker; remove it "
    "(parameters.details gives each token's logprob)."
)
_VLLM_PASSTHROUGH = {
    "frequency_penalty", "presence_penalty", "min_p", "min_tokens", "ignore_eos",
    "stop_token_ids", "n", "best_of", "logprobs", "skip_special_tokens", "truncate_prompt_tokens",
    "include_stop_str_in_output", "logit_bias", "user", "length_penalty", "use_beam_search",
    "spaces_between_special_tokens", "prompt_logprobs", "bad_words", "response_format",
    "guided_json", "guided_regex", "guided_choice", "structured_outputs", "allowed_token_ids",
    "return_tokens_as_token_ids", "stream_options", "model", "suffix", "priority",
    "add_special_tokens", "max_completion_tokens", "tools", "tool_choice", "top_logprobs",
    "parallel_tool_calls", "chat_template", "chat_template_kwargs", "add_generation_prompt",
    "continue_final_message", "documents", "echo", "request_id",
}


def _vllm_check(sampling: dict[str, Any]) -> None:
    """vLLM's SamplingParams checks: a failure is its 400 ErrorResponse before the stream."""
    checks = [
        (sampling.get("temperature") is not None and sampling["temperature"] < 0,
         f"temperature must be non-negative, got {sampling.get('temperature')}."),
        (sampling.get("top_p") is not None and not 0 < sampling["top_p"] <= 1,
         f"top_p must be in (0, 1], got {sampling.get('top_p')}."),
        (sampling.get("top_k") is not None and sampling["top_k"] < -1,
         f"top_k must be 0 (disable), or at least 1, got {sampling.get('top_k')}."),
        (sampling.get("repetition_penalty") is not None and sampling["repetition_penalty"] <= 0,
         "repetition_penalty must be greater than zero, got "
         f"{sampling.get('repetition_penalty')}."),
        (sampling.get("max_tokens") is not None and sampling["max_tokens"] < 1,
         f"max_tokens must be at least 1, got {sampling.get('max_tokens')}."),
    ]
    for failed, message in checks:
        if failed:
            raise _lmi_error(400, message)


def _lmi_budget(env: dict[str, str], input_tokens: int, max_tokens: int | None) -> int:
    context = _int_env(env, "OPTION_MAX_MODEL_LEN") or _DEFAULT_CONTEXT
    if max_tokens is None:
        return max(context - input_tokens, 1)
    if input_tokens + max_tokens > context:
        raise _lmi_error(
            400, f"This model's maximum context length is {context} tokens. However, you "
                 f"requested {input_tokens + max_tokens} tokens ({input_tokens} in the "
                 f"messages, {max_tokens} in the completion). Please reduce the length of the "
                 "messages or completion.")
    return max_tokens


def _parse_lmi(spec: ContainerSpec, body: bytes, env: dict[str, str]) -> ParsedRequest:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _lmi_error(424, f"Input parsing failed: {exc}") from exc
    if not isinstance(payload, dict):
        raise _lmi_error(424, "Input parsing failed: the request body must be a JSON object")
    model_id = env.get("HF_MODEL_ID") or env.get("OPTION_MODEL_ID") or "lmi"
    if "prompt" in payload:
        raise ContainerRejected(
            501, _json({"code": 501, "error": "The local stand-in does not emulate LMI's "
                        "completions payload ({\"prompt\": ...}); send {\"inputs\": ...} or "
                        "{\"messages\": ...}."}).encode())
    if "inputs" in payload:
        return _parse_lmi_generate(spec, payload, env, model_id)
    if "messages" in payload:
        return _parse_lmi_chat(spec, payload, env, model_id)
    raise _lmi_error(424, "Input parsing failed: invalid payload. must contain prompt, inputs, "
                          "or messages")


def _parse_lmi_generate(spec: ContainerSpec, payload: dict[str, Any], env: dict[str, str],
                        model_id: str) -> ParsedRequest:
    inputs = payload["inputs"]
    if not isinstance(inputs, str):
        raise _lmi_error(424, "Input parsing failed: the local stand-in accepts one string "
                              "as `inputs`")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _lmi_error(424, f"Input parsing failed: 'parameters' must be an object, got "
                              f"{type(parameters).__name__}")
    params = dict(parameters)
    if "top_n_tokens" in params:
        raise _lmi_error(400, _TOP_N_TOKENS_REFUSED)
    stream = _lax(payload.get("stream", False), "bool", "stream")
    max_tokens = _lax(params.pop("max_new_tokens", 30), "int", "max_tokens")
    echo = _lax(params.pop("return_full_text", False), "bool", "echo")
    details = bool(_lax(params.pop("details", False), "bool", "details"))
    do_sample = params.pop("do_sample", None)
    for name in ("truncate", "ignore_eos_token", "decoder_input_details"):
        params.pop(name, None)
    if do_sample is not None and not _lax(do_sample, "bool", "do_sample"):
        params["temperature"] = 0.0
    sampling = {name: _lax(params.get(name), kind, name) for name, kind in _LMI_KNOWN.items()
                if name in params}
    sampling["max_tokens"] = max_tokens
    ignored = sorted(set(params) - set(_LMI_KNOWN) - _VLLM_PASSTHROUGH)
    _vllm_check(sampling)
    input_tokens = approx_tokens(inputs)
    max_new = _lmi_budget(env, input_tokens, max_tokens)
    temperature = sampling.get("temperature")
    sample = temperature is None or temperature > 0
    return ParsedRequest(
        spec=spec, api="generate", stream=bool(stream),
        generation=GenerationRequest(
            prompt=inputs, messages=None, max_new_tokens=max_new,
            stop=list(sampling.get("stop") or []), temperature=temperature,
            top_p=sampling.get("top_p"), top_k=sampling.get("top_k"), do_sample=sample,
            repetition_penalty=sampling.get("repetition_penalty"), seed=sampling.get("seed"),
        ),
        prompt=inputs, input_tokens=input_tokens, max_new_tokens=max_new,
        stop=list(sampling.get("stop") or []), details=details,
        return_full_text=bool(echo), seed=sampling.get("seed"), model_id=model_id,
        ignored=ignored,
    )


def _parse_lmi_chat(spec: ContainerSpec, payload: dict[str, Any], env: dict[str, str],
                    model_id: str) -> ParsedRequest:
    messages = _check_messages(payload.get("messages"))
    if messages is None:
        raise _lmi_error(424, "Input parsing failed: 1 validation error for "
                              "ChatCompletionRequest\nmessages\n  Input should be a valid list "
                              "of {role, content} messages")
    stream = _lax(payload.get("stream", False), "bool", "stream")
    max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens"))
    sampling = {name: _lax(payload.get(name), kind, name) for name, kind in _LMI_KNOWN.items()
                if name in payload and name != "max_tokens"}
    sampling["max_tokens"] = _lax(max_tokens, "int", "max_tokens")
    _vllm_check(sampling)
    try:
        prompt = _render_chat(messages, model_id, LMI)
    except ValueError as exc:
        raise _lmi_error(400, f"Chat template error: {exc}") from exc
    input_tokens = approx_tokens(prompt)
    max_new = _lmi_budget(env, input_tokens, sampling["max_tokens"])
    temperature = sampling.get("temperature")
    options = payload.get("stream_options") or {}
    ignored = sorted(set(payload) - set(_LMI_KNOWN) - _VLLM_PASSTHROUGH
                     - {"messages", "stream", "max_tokens"})
    return ParsedRequest(
        spec=spec, api="chat", stream=bool(stream),
        generation=GenerationRequest(
            prompt=prompt, messages=messages, max_new_tokens=max_new,
            stop=list(sampling.get("stop") or []), temperature=temperature,
            top_p=sampling.get("top_p"), top_k=sampling.get("top_k"),
            do_sample=temperature is None or temperature > 0,
            repetition_penalty=sampling.get("repetition_penalty"), seed=sampling.get("seed"),
        ),
        prompt=prompt, input_tokens=input_tokens, max_new_tokens=max_new,
        stop=list(sampling.get("stop") or []), seed=sampling.get("seed"), model_id=model_id,
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        ignored=ignored,
    )


# --------------------------------------------------------------------------- output


class OutputSession:
    """Turns generated tokens into the bytes one container writes for one request.

    Use: :meth:`start` once, :meth:`push` for every token until it reports the end, then
    :meth:`end`. :meth:`error` writes the container's own in-stream error event instead;
    :meth:`incomplete` is what the container writes when the model stopped without finishing.
    For a request without ``"stream": true`` every call returns ``b""`` except :meth:`end`,
    which returns the one JSON document.

    Attributes:
        request: the parsed request.
        content_type: the response's content type.
        count: tokens pushed so far.
        text: the generated text so far (non-special tokens, stop sequence handling applied).
        finish_reason: the container's finish reason once finished, else ``None``.
    """

    content_type = "application/json"

    def __init__(self, request: ParsedRequest) -> None:
        self.request = request
        self.count = 0
        self.text = ""
        self.tokens: list[GeneratedToken] = []
        self.finish_reason: str | None = None
        self.stop_reason: str | None = None
        self.created = int(time.time())

    # -- the finish rules every container shares
    def _accept(self, token: GeneratedToken) -> tuple[str, str | None]:
        """Account for ``token``; return (the text it adds, the finish reason or None)."""
        self.count += 1
        self.tokens.append(token)
        if token.special:
            return "", self._eos_reason
        piece = token.text
        before = len(self.text)
        self.text += piece
        finish = None
        for stop in self.request.stop:
            if stop and self._stopped(stop, before):
                finish = self._stop_reason
                self.stop_reason = stop
                break
        if finish is None and self.count >= self.request.max_new_tokens:
            finish = "length"
        return self.text[before:], finish

    _eos_reason = "eos_token"
    _stop_reason = "stop_sequence"

    def _stopped(self, stop: str, before: int) -> bool:
        return self.text.endswith(stop)  # TGI: StopSequenceCriteria, regex f"{stop}$"

    def start(self) -> bytes:
        """Bytes written before the first token."""
        return b""

    def push(self, token: GeneratedToken) -> tuple[bytes, bool]:
        """Account for one token; return (bytes to write now, whether the answer is finished).

        Raises:
            RuntimeError: a token is pushed after the end.
        """
        if self.finish_reason is not None:
            raise RuntimeError("push() after the answer finished")
        piece, finish = self._accept(token)
        self.finish_reason = finish
        if not self.request.stream:
            return b"", finish is not None
        return self._frame(token, piece, finish), finish is not None

    def end(self) -> bytes:
        """Bytes written after the last token (the whole document when not streaming)."""
        if not self.request.stream:
            return self._document()
        return self._trailer()

    def error(self, message: str) -> bytes:
        """The container's in-stream error event (streaming requests only).

        Raises:
            ContainerRejected: for a non-streaming request, whose container answers with an
                error status instead.
        """
        raise NotImplementedError

    def incomplete(self) -> bytes:
        """What the container writes when generation stopped without finishing."""
        return self.error("Incomplete generation stream")

    # -- per container
    def _frame(self, token: GeneratedToken, piece: str, finish: str | None) -> bytes:
        raise NotImplementedError

    def _trailer(self) -> bytes:
        return b""

    def _document(self) -> bytes:
        raise NotImplementedError

    def _full_text(self) -> str:
        return (self.request.prompt if self.request.return_full_text else "") + self.text

    def _usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.request.input_tokens, "completion_tokens": self.count,
                "total_tokens": self.request.input_tokens + self.count}


class _TgiGenerate(OutputSession):
    def __init__(self, request: ParsedRequest) -> None:
        super().__init__(request)
        self.prefix = "data: " if request.spec.at_least(2, 1) else "data:"
        self.content_type = "text/event-stream" if request.stream else "application/json"

    def _event(self, obj: Any) -> bytes:
        return f"{self.prefix}{_json(obj)}\n\n".encode()

    def _details(self) -> dict[str, Any]:
        return {"finish_reason": self.finish_reason, "generated_tokens": self.count,
                "seed": self.request.seed, "input_length": self.request.input_tokens}

    def _frame(self, token: GeneratedToken, piece: str, finish: str | None) -> bytes:
        last = finish is not None
        return self._event({
            "index": self.count,
            "token": {"id": token.id, "text": token.text, "logprob": token.logprob,
                      "special": token.special},
            "generated_text": self._full_text() if last else None,
            "details": self._details() if last and self.request.details else None,
        })

    def _document(self) -> bytes:
        answer: dict[str, Any] = {"generated_text": self._full_text()}
        if self.request.details:
            answer["details"] = {
                "finish_reason": self.finish_reason, "generated_tokens": self.count,
                "seed": self.request.seed, "prefill": [],
                "tokens": [{"id": t.id, "text": t.text, "logprob": t.logprob,
                            "special": t.special} for t in self.tokens],
            }
        return _json([answer]).encode()

    def error(self, message: str) -> bytes:
        text = f"Request failed during generation: {message}"
        if not self.request.stream:
            raise _tgi_reject(424, text, "generation", stream=False, prefix="")
        return self._event({"error": text, "error_type": "generation"})

    def incomplete(self) -> bytes:
        if not self.request.stream:
            raise _tgi_reject(500, "Incomplete generation", "incomplete_generation",
                              stream=False, prefix="")
        return self._event({"error": "Incomplete generation stream",
                            "error_type": "incomplete_generation"})


_TGI_CHAT_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


class _TgiChat(_TgiGenerate):
    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        return self._event({
            "object": "chat.completion.chunk", "id": "", "created": self.created,
            "model": self.request.model_id, "system_fingerprint": self._fingerprint(),
            "choices": choices, "usage": usage,
        })

    def _fingerprint(self) -> str:
        version = ".".join(map(str, self.request.spec.version or (3, 3, 6)))
        return f"{version}-native"

    def _frame(self, token: GeneratedToken, piece: str, finish: str | None) -> bytes:
        content = "" if token.special else token.text
        out = self._chunk([{
            "index": 0, "delta": {"role": "assistant", "content": content}, "logprobs": None,
            "finish_reason": _TGI_CHAT_FINISH.get(finish or "") if finish else None,
        }], None)
        if finish and self.request.include_usage:
            out += self._chunk([], self._usage())
        return out

    def _trailer(self) -> bytes:
        return f"{self.prefix}[DONE]\n\n".encode()

    def _document(self) -> bytes:
        return _json({
            "object": "chat.completion", "id": "", "created": self.created,
            "model": self.request.model_id, "system_fingerprint": self._fingerprint(),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text},
                         "logprobs": None,
                         "finish_reason": _TGI_CHAT_FINISH.get(self.finish_reason or "",
                                                               "length")}],
            "usage": self._usage(),
        }).encode()

    def error(self, message: str) -> bytes:
        text = f"Request failed during generation: {message}"
        if not self.request.stream:
            raise _tgi_reject(424, text, "generation", stream=False, prefix="")
        return (self._event({"error": {"message": text, "http_status_code": 422}})
                + self._trailer())

    def incomplete(self) -> bytes:
        return self.error("Incomplete generation stream")


class _LmiGenerate(OutputSession):
    _eos_reason = "stop"
    _stop_reason = "stop"

    def __init__(self, request: ParsedRequest) -> None:
        super().__init__(request)
        self.content_type = "application/jsonlines" if request.stream else "application/json"

    def _stopped(self, stop: str, before: int) -> bool:
        # vLLM searches the new text for the stop string and cuts the output before it.
        found = self.text.find(stop, max(0, before - len(stop) + 1))
        if found < 0:
            return False
        self.text = self.text[:found]
        return True

    def _line(self, obj: Any) -> bytes:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode()

    def _frame(self, token: GeneratedToken, piece: str, finish: str | None) -> bytes:
        text = "" if token.special else piece
        line: dict[str, Any] = {
            "index": 0,
            "token": {"id": token.id, "text": text, "logprob": token.logprob},
            "generated_text": None, "details": None,
        }
        if finish is not None:
            line["generated_text"] = self._full_text()
            if self.request.details:
                line["details"] = {"finish_reason": finish, "seed": self.request.seed,
                                   "generated_tokens": self.count,
                                   "input_length": self.request.input_tokens}
        return self._line(line)

    def _trailer(self) -> bytes:
        return b"\n\n"  # vLLM's usage chunk and [DONE], each an empty line

    def _document(self) -> bytes:
        answer: dict[str, Any] = {"generated_text": self._full_text()}
        if self.request.details:
            answer["details"] = {
                # request_response_utils.py reports vLLM's stop_reason here: the matched stop
                # string, or null when the answer ended on EOS or length.
                "finish_reason": self.stop_reason, "generated_tokens": self.count,
                "seed": self.request.seed, "prefill": [],
                "tokens": [{"id": t.id, "text": "" if t.special else t.text,
                            "logprob": t.logprob} for t in self.tokens],
            }
        return self._line(answer)

    def error(self, message: str) -> bytes:
        if not self.request.stream:
            raise _lmi_error(500, message)
        return self._line({"error": {"message": message, "type": "InternalServerError",
                                     "param": None, "code": 500}})


class _LmiChat(_LmiGenerate):
    def __init__(self, request: ParsedRequest) -> None:
        super().__init__(request)
        self.id = f"chatcmpl-{uuid.uuid4().hex}"

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
               ) -> bytes:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk",
                                 "created": self.created, "model": self.request.model_id,
                                 "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return (_json(chunk) + "\n").encode()

    def start(self) -> bytes:
        if not self.request.stream:
            return b""
        return self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])

    def _frame(self, token: GeneratedToken, piece: str, finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": "" if token.special
                                                         else piece},
                                  "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = self.stop_reason
        out = self._chunk([choice])
        if finish is not None and self.request.include_usage:
            out += self._chunk([], self._usage())
        return out

    def _trailer(self) -> bytes:
        return b"\n"  # [DONE]

    def _document(self) -> bytes:
        return (_json({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.request.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text,
                                                 "tool_calls": []},
                         "logprobs": None, "finish_reason": self.finish_reason or "length",
                         "stop_reason": self.stop_reason}],
            "usage": self._usage(), "prompt_logprobs": None,
        }) + "\n").encode()


def open_session(request: ParsedRequest) -> OutputSession:
    """Return the :class:`OutputSession` that frames ``request``'s answer."""
    if request.spec.kind == TGI:
        return (_TgiChat if request.api == "chat" else _TgiGenerate)(request)
    return (_LmiChat if request.api == "chat" else _LmiGenerate)(request)
