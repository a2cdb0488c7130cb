"""Exception types of the helper package, each carrying the fix in its message.

Every failure a recipe can meet maps to one class here, through one mapper per source:

* :func:`stream_error_from_botocore` -- botocore's ``EventStreamError`` raised while a
  response stream is iterated (SageMaker's ``ModelStreamError`` / ``InternalStreamFailure``).
* :func:`stream_error_from_container` -- an error event written by the container itself
  (TGI ``{"error", "error_type"}``, LMI ``finish_reason: "error"`` or ``{"error", "code"}``).
* :func:`invocation_error_from_client_error` -- a ``ClientError`` raised *before* the
  stream starts (``ModelError`` 424, ``ValidationError``, throttling, ...).

The client core (prompts, streaming, metrics) imports only this module, so all of them can be
copied into another project together.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CleanupError",
    "ContainerStreamError",
    "DeploymentError",
    "EndpointFailedError",
    "EndpointNotFoundError",
    "EndpointWaitTimeout",
    "IncompleteStreamError",
    "InferenceComponentFailedError",
    "InternalStreamFailure",
    "InvocationError",
    "ModelFactsError",
    "ModelInvocationError",
    "ModelStreamError",
    "NoCapacityError",
    "PayloadError",
    "PresetError",
    "RecipeError",
    "RecipeStateError",
    "StreamError",
    "StreamTimeoutError",
    "ThrottledError",
    "UnsupportedModelError",
    "invocation_error_from_client_error",
    "log_group_url",
    "stream_error_from_botocore",
    "stream_error_from_container",
]


class RecipeError(Exception):
    """Base class of every exception this package raises on purpose."""


# --------------------------------------------------------------------------- streams


class StreamError(RecipeError):
    """A response stream failed part-way.

    Attributes:
        partial_text: the text received before the failure (never ``None``; may be empty).
        error_code: the machine-readable code when the source gave one (SageMaker's
            ``ErrorCode``, TGI's ``error_type``, LMI's ``code``), else ``None``.
    """

    default_fix = (
        "Check the endpoint's CloudWatch logs (/aws/sagemaker/Endpoints/<endpoint-name>) for "
        "the container's own error, then retry the request."
    )

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        error_code: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.reason = message
        self.partial_text = partial_text
        self.error_code = error_code
        self.fix = self.default_fix if fix is None else fix
        received = f" ({len(partial_text)} characters were received before it failed)"
        super().__init__(f"{message}{received}. {self.fix}".strip())

    def with_partial_text(self, partial_text: str) -> StreamError:
        """Return a copy of this error whose ``partial_text`` is ``partial_text``."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        StreamError.__init__(
            clone, self.reason, partial_text=partial_text, error_code=self.error_code, fix=self.fix
        )
        return clone


class ModelStreamError(StreamError):
    """SageMaker's ``ModelStreamError`` event: the model container broke the stream.

    ``error_code`` is ``ModelInvocationTimeExceeded`` or ``StreamBroken``.
    """

    def __init__(self, message: str, *, partial_text: str = "", error_code: str | None = None,
                 fix: str | None = None) -> None:
        if fix is None:
            if error_code == "ModelInvocationTimeExceeded":
                fix = (
                    "The container took longer than SageMaker allows for one streamed "
                    "invocation: ask for fewer tokens (max_new_tokens) or split the request."
                )
            elif error_code == "StreamBroken":
                fix = StreamError.default_fix
            else:
                # botocore keeps only Code and Message of an event-stream exception, so the
                # ErrorCode is usually unknown here: name both causes.
                fix = (
                    "If the answer was long, the container may have exceeded SageMaker's time "
                    "for one streamed invocation (ModelInvocationTimeExceeded): ask for fewer "
                    "tokens (max_new_tokens). Otherwise the stream broke (StreamBroken): "
                    + StreamError.default_fix
                )
        super().__init__(message, partial_text=partial_text, error_code=error_code, fix=fix)


class InternalStreamFailure(StreamError):
    """SageMaker's ``InternalStreamFailure`` event: the service itself broke the stream."""

    default_fix = "This is a transient SageMaker-side failure: retry the request."


class ContainerStreamError(StreamError):
    """The serving container reported an error inside the stream (TGI or LMI error event)."""


class IncompleteStreamError(StreamError):
    """The stream ended before its last document was complete (connection dropped)."""

    default_fix = (
        "The connection closed mid-answer. Retry the request; if it keeps happening, check "
        "the endpoint's CloudWatch logs for a container restart."
    )


class StreamTimeoutError(StreamError):
    """No bytes arrived within the read timeout while a stream was open."""

    default_fix = (
        "The endpoint stopped sending. Retry, or raise the read timeout "
        "(common.runtime_client(read_timeout=...)) if long pauses are expected."
    )


_SAGEMAKER_STREAM_ERRORS: dict[str, type[StreamError]] = {
    "ModelStreamError": ModelStreamError,
    "InternalStreamFailure": InternalStreamFailure,
}


def stream_error_from_botocore(exc: Exception, partial_text: str = "") -> StreamError:
    """Map botocore's ``EventStreamError`` (or a read timeout) to a :class:`StreamError`.

    aiobotocore raises botocore's ``EventStreamError`` too; its transport's failures --
    aiohttp's ``ClientPayloadError``, ``ServerDisconnectedError``,
    other ``ClientConnectionError`` types, and timeouts (``asyncio.TimeoutError``, aiohttp's
    ``SocketTimeoutError``) -- map like urllib3's: a timeout to
    :class:`StreamTimeoutError`, a broken connection to :class:`IncompleteStreamError`.

    Args:
        exc: the exception raised while iterating a ``response["Body"]`` event stream.
        partial_text: the text decoded before the failure.

    Returns:
        The matching :class:`StreamError` subclass; the caller raises it ``from exc``.
    """
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = error.get("Code") or ""
    message = error.get("Message") or str(exc)
    sub_code = response.get("ErrorCode") if isinstance(response, dict) else None
    cls = _SAGEMAKER_STREAM_ERRORS.get(code)
    if cls is not None:
        return cls(f"{code}: {message}", partial_text=partial_text, error_code=sub_code or code)
    name = type(exc).__name__
    # Matched by the names in the class's MRO, so that neither botocore, urllib3 nor aiohttp
    # (aiobotocore's transport) is imported here; asyncio.TimeoutError is TimeoutError.
    lineage = {cls.__name__ for cls in type(exc).__mro__}
    if any("Timeout" in each for each in lineage):
        return StreamTimeoutError(
            f"read timed out: {exc or name}", partial_text=partial_text,
            error_code="ReadTimeout",
        )
    if lineage & _BROKEN_CONNECTION:
        return IncompleteStreamError(
            f"connection broken mid-stream: {name}: {exc}", partial_text=partial_text,
            error_code="ConnectionBroken",
        )
    return StreamError(f"{code or name}: {message}", partial_text=partial_text,
                       error_code=code or None)


_BROKEN_CONNECTION = frozenset({
    # botocore / urllib3 / http.client (boto3's transport)
    "ProtocolError", "IncompleteRead", "ResponseStreamingError", "ChunkedEncodingError",
    # aiohttp (aiobotocore's transport): a body cut short, a server that hung up, a reset
    "ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError",
})


def stream_error_from_container(
    payload: dict[str, Any], partial_text: str = "", *, container: str = "container"
) -> ContainerStreamError:
    """Map a container's in-stream error document to a :class:`ContainerStreamError`.

    Args:
        payload: the parsed JSON error event. TGI: ``{"error", "error_type"}``; LMI:
            ``{"error", "code"}`` or a token line whose ``details.finish_reason`` is
            ``"error"``.
        partial_text: the text decoded before the error.
        container: a word for the message (``"TGI"``, ``"LMI"``).
    """
    details = payload.get("details") if isinstance(payload.get("details"), dict) else {}
    error = payload.get("error")
    if isinstance(error, dict):
        # LMI's vLLM async handler passes vLLM's own error object through:
        # {"error": {"message", "type", "param", "code"}}.
        message = error.get("message") or str(error)
        code = error.get("code") or error.get("type")
    else:
        message = error or payload.get("message") or details.get("error_msg")
        code = payload.get("error_type") or payload.get("code") or details.get("finish_reason")
    if message is None:
        message = "generation failed (finish_reason=error)"
    fixes = {
        "overloaded": "The container is at capacity: retry with backoff or add instances.",
        "validation": "The request was rejected: check the prompt length and parameters "
                      "against the preset's MAX_INPUT_TOKENS / MAX_TOTAL_TOKENS.",
        "incomplete_generation": "Generation stopped early; retry the request.",
    }
    fix = fixes.get(str(code))
    return ContainerStreamError(
        f"{container} reported an error mid-stream: {message}",
        partial_text=partial_text,
        error_code=None if code is None else str(code),
        fix=fix,
    )


# --------------------------------------------------------------------------- invocations


class InvocationError(RecipeError):
    """An endpoint invocation failed before any of the answer arrived."""

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        self.error_code = error_code
        super().__init__(message)


class ModelInvocationError(InvocationError):
    """SageMaker's ``ModelError`` (HTTP 424): the container answered with an error status.

    Attributes:
        original_status_code: the container's own HTTP status.
        log_stream_arn: the CloudWatch log stream that holds the container's output.
    """

    def __init__(self, message: str, *, original_status_code: int | None = None,
                 log_stream_arn: str | None = None) -> None:
        self.original_status_code = original_status_code
        self.log_stream_arn = log_stream_arn
        where = f" Read the container's log: {log_stream_arn}" if log_stream_arn else (
            " Read the container's log in CloudWatch (/aws/sagemaker/Endpoints/<name>).")
        super().__init__(
            f"The model container answered {original_status_code}: {message}.{where}",
            error_code="ModelError",
        )


class EndpointNotFoundError(InvocationError):
    """The endpoint does not exist (or is not ``InService``) in this account and region."""


class ThrottledError(InvocationError):
    """The endpoint kept throttling (or was unavailable) after every retry."""


NO_CAPACITY_TEXT = "has no capacity to process this request"
"""The words of SageMaker's ``ValidationError`` for an inference component at zero copies."""
COMPONENT_HEADER_TEXT = "inference component name header is required"
"""The words of SageMaker's ``ValidationError`` for a missing ``InferenceComponentName``."""
COMPONENT_HEADER_REFUSED_TEXT = "inference component name header is not allowed"
"""The words of SageMaker's ``ValidationError`` for ``InferenceComponentName`` on an endpoint
that hosts no inference components."""


class NoCapacityError(InvocationError):
    """An inference component has no copy to serve the request (it scaled in to zero).

    Attributes:
        inference_component: the component's name (``None`` when not known).
    """

    def __init__(self, message: str, *, inference_component: str | None = None) -> None:
        self.inference_component = inference_component
        self.sagemaker_message = message
        name = f" {inference_component!r}" if inference_component else ""
        super().__init__(
            f"{message} -- The inference component{name} is at zero copies. Either wait for "
            "a copy: call invoke_stream(..., wait_for_capacity=SECONDS) (a CloudWatch alarm on "
            "NoCapacityInvocationFailures with a step-scaling policy adds one; see the scale "
            "notebook's autoscaling section), or add one yourself with "
            "sagemaker_client.update_inference_component_runtime_config("
            "InferenceComponentName=..., DesiredRuntimeConfig={'CopyCount': 1}).",
            error_code="NoCapacity",
        )


class PayloadError(RecipeError, ValueError):
    """A request body, parameter or header is not acceptable; the message says the fix."""


# --------------------------------------------------------------------------- deployment


class PresetError(RecipeError, ValueError):
    """A deployment preset is inconsistent (GPUs, memory, token budgets)."""


class UnsupportedModelError(PresetError):
    """The pinned container version does not serve the model's architecture.

    Attributes:
        container: ``"tgi"`` or ``"lmi"``.
        model_type / architecture: what ``config.json`` says (what the container looks up).
        served_by: the container versions that do serve it, in words (may be empty).
    """

    def __init__(self, message: str, *, container: str, model_type: str | None,
                 architecture: str | None, served_by: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.container = container
        self.model_type = model_type
        self.architecture = architecture
        self.served_by = served_by


class ModelFactsError(RecipeError, ValueError):
    """A fact about a Hub model could not be read (a file, why, and the flag that gives it).

    Attributes:
        model_id: the Hugging Face model id.
        filename: the file that could not be read (``config.json``...), or ``None``.
        reason: why, in a few words.
        flag: the ``python -m common.notebooks new`` flag that supplies the fact by hand, or
            ``None`` when there is none.
    """

    def __init__(self, message: str, *, model_id: str = "", filename: str | None = None,
                 reason: str = "", flag: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.filename = filename
        self.reason = reason
        self.flag = flag


class DeploymentError(RecipeError):
    """Creating or waiting for an endpoint failed."""


def log_group_url(log_group: str, region: str) -> str:
    """Return the CloudWatch console page of a log group in ``region``.

    Example: ``log_group_url("/aws/sagemaker/Endpoints/ep", "us-east-1")``.
    """
    encoded = log_group.replace("/", "$252F")
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logsV2:log-groups/log-group/{encoded}")


def _endpoint_log(endpoint_name: str, region: str | None) -> str:
    group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    if not region:
        return f"the CloudWatch log group {group}"
    return f"{log_group_url(group, region)} (log group {group})"


def _default_clean_up(endpoint_name: str) -> str:
    return (f"common.delete_endpoint_resources({endpoint_name!r}) deletes the endpoint, its "
            "configuration and its model")


class EndpointFailedError(DeploymentError):
    """The endpoint went to ``Failed``; ``failure_reason`` holds SageMaker's reason.

    Attributes:
        endpoint_name / failure_reason: the endpoint and SageMaker's ``FailureReason``.
        log_url: where the container's log is (the CloudWatch console page, or the log
            group's path when the region is not known).
        clean_up: what deletes what this run created (a cell, a call or a command).
    """

    def __init__(self, endpoint_name: str, failure_reason: str | None, *,
                 region: str | None = None, clean_up: str | None = None) -> None:
        self.endpoint_name = endpoint_name
        self.failure_reason = failure_reason or "(SageMaker gave no FailureReason)"
        self.log_url = _endpoint_log(endpoint_name, region)
        self.clean_up = clean_up or _default_clean_up(endpoint_name)
        super().__init__(
            f"Endpoint {endpoint_name!r} failed: {self.failure_reason}\n"
            f"- The container's log: {self.log_url} (empty when no instance started, e.g. "
            "for a capacity or quota failure).\n"
            f"- Delete what this run created: {self.clean_up}. A failed endpoint does not "
            "bill, but its configuration, model and uploads stay until deleted.\n"
            "- Then fix the cause (the preset, the instance type, the quota) and deploy again."
        )


class InferenceComponentFailedError(DeploymentError):
    """An inference component went to ``Failed``; ``failure_reason`` holds SageMaker's reason."""

    def __init__(self, name: str, failure_reason: str | None) -> None:
        self.inference_component = name
        self.failure_reason = failure_reason or "(SageMaker gave no FailureReason)"
        super().__init__(
            f"Inference component {name!r} failed: {self.failure_reason}. Read its log in "
            f"CloudWatch (/aws/sagemaker/InferenceComponents/{name}), check that its compute "
            "requirements (accelerators, memory) fit one instance of the endpoint's type, "
            "delete it (see the clean-up cell) and create it again."
        )


class EndpointWaitTimeout(DeploymentError):
    """The endpoint did not reach ``InService`` within the wait's timeout.

    Attributes:
        endpoint_name / status / waited_s: the endpoint, its last status, the seconds waited.
        log_url / clean_up: as :class:`EndpointFailedError`.
    """

    def __init__(self, endpoint_name: str, status: str, waited_s: float, *,
                 region: str | None = None, clean_up: str | None = None) -> None:
        self.endpoint_name = endpoint_name
        self.status = status
        self.waited_s = waited_s
        self.log_url = _endpoint_log(endpoint_name, region)
        self.clean_up = clean_up or _default_clean_up(endpoint_name)
        super().__init__(
            f"Endpoint {endpoint_name!r} is still {status!r} after {waited_s:.0f} s. It goes "
            "on starting, and bills by the hour once it is InService.\n"
            f"- Check the container's log in CloudWatch for slow weight downloads or start-up "
            f"errors: {self.log_url}; and your service quota for the instance type.\n"
            f"- To keep waiting, run the wait again (common.wait_for_endpoint({endpoint_name!r}, "
            "timeout_s=...)).\n"
            f"- To give up, delete what this run created: {self.clean_up}. SageMaker refuses "
            "to delete an endpoint while it is Creating, so the clean-up waits until it is "
            "InService or Failed and then deletes it."
        )


class RecipeStateError(DeploymentError):
    """What a notebook restored with ``%store -r`` is missing, another recipe's, or names an
    endpoint that is not ready; the message says which notebook (or cell) to run."""


class CleanupError(DeploymentError):
    """Some resources could not be deleted; ``failures`` lists ``(resource, reason)``."""

    def __init__(self, failures: list[tuple[str, str]], done: list[str] | None = None) -> None:
        self.failures = list(failures)
        self.done = list(done or [])
        lines = "\n".join(f"- {what}: {why}" for what, why in self.failures)
        super().__init__(
            f"{len(self.failures)} resource(s) could not be deleted (the rest were):\n{lines}\n"
            "Fix the cause (often a missing permission) and run the clean-up again: what is "
            "already gone is skipped."
        )


_THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException",
                     "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure"}


def invocation_error_from_client_error(exc: Exception, endpoint_name: str = "") -> RecipeError:
    """Map a botocore ``ClientError`` raised by an invoke call to this package's types.

    Args:
        exc: the ``botocore.exceptions.ClientError``.
        endpoint_name: named in the message.

    Returns:
        :class:`ModelInvocationError`, :class:`EndpointNotFoundError`,
        :class:`ThrottledError`, :class:`NoCapacityError` (an inference component at zero
        copies), :class:`PayloadError` or :class:`InvocationError`.
    """
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", str(exc))
    if code == "ModelError":
        status = response.get("OriginalStatusCode")
        return ModelInvocationError(
            message,
            original_status_code=int(status) if status is not None else None,
            log_stream_arn=response.get("LogStreamArn"),
        )
    if code == "ValidationError" and NO_CAPACITY_TEXT in message.lower():
        return NoCapacityError(message)
    if code == "ValidationError" and COMPONENT_HEADER_TEXT in message.lower():
        return InvocationError(
            f"{message}. Pass the component's name: invoke_stream(..., inference_component="
            "NAME), or InferenceComponentName=NAME on the boto3 call.",
            error_code=code,
        )
    if code == "ValidationError" and COMPONENT_HEADER_REFUSED_TEXT in message.lower():
        return InvocationError(
            f"{message}. Endpoint {endpoint_name!r} serves a model directly, not inference "
            "components: leave inference_component (InferenceComponentName) out.",
            error_code=code,
        )
    if code == "ValidationError" and ("not found" in message.lower()
                                      or "could not find" in message.lower()):
        return EndpointNotFoundError(
            f"{message}. Check the endpoint name {endpoint_name!r} and the region, and that "
            "the deploy notebook finished (the endpoint must be InService).",
            error_code=code,
        )
    if code == "ValidationError":
        return PayloadError(f"SageMaker rejected the request: {message}")
    if code in _THROTTLING_CODES:
        return ThrottledError(
            f"{code}: {message}. The endpoint is busy: retry later, lower the concurrency, "
            "or add instances (InitialInstanceCount / auto scaling).",
            error_code=code,
        )
    return InvocationError(f"{code or type(exc).__name__}: {message}", error_code=code or None)


# --------------------------------------------------------------------------- pre-flight


class PreflightError(DeploymentError):
    """The pre-flight checks found problems before anything was created.

    Attributes:
        failures: the failed checks (``common.preflight.CheckResult``), each with its fix.
        report: the whole ``common.preflight.PreflightReport`` (passed and not-checked too).
    """

    def __init__(self, report: Any) -> None:
        self.report = report
        self.failures = list(report.failures)
        count = len(self.failures)
        lines = [f"Pre-flight found {count} problem{'s' if count != 1 else ''}; nothing was "
                 "created. Fix all of them, then run the pre-flight cell again:"]
        for number, result in enumerate(self.failures, start=1):
            lines.append(f"{number}. {result.check}: {result.detail}")
            lines.append(f"   Fix: {result.fix}")
        unchecked = list(report.not_checked)
        if unchecked:
            lines.append("Not checked (check these yourself): " + "; ".join(
                f"{result.check} ({result.detail})" for result in unchecked))
        super().__init__("\n".join(lines))


__all__.append("PreflightError")
