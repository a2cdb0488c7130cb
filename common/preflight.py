"""Pre-flight checks: fail in seconds, before anything is created, instead of after a long wait.

:func:`preflight` checks what would otherwise stop a deploy part-way -- a quota shortfall
fails ``CreateEndpoint`` at once, but after the weight copy and the model; a gated model
fails only at the end of the endpoint's 10 to 30 minute start; a full disk halfway through a
download -- and reports every problem at once with its fix:

* **Instance quota** -- Service Quotas, service code ``sagemaker``, the quota named
  ``"<instance type> for endpoint usage"``: its applied value from ``ListServiceQuotas``; a quota
  that has no applied value is left out of that list, so then its code and AWS's default come
  from ``ListAWSDefaultServiceQuotas`` and ``GetServiceQuota`` by code gives the applied value
  if there is one. It is compared with the instances the account's endpoints hold now
  (``DescribeEndpoint``'s ``CurrentInstanceCount``, or ``DesiredInstanceCount`` while more are
  starting; every status but ``Failed``; an endpoint scaled to zero holds none) plus the new
  endpoint's -- for a scale recipe, its *maximum*. SageMaker's default for most GPU instance
  types is 0 in a new account.
* **Model access** -- ``HfApi.auth_check`` on the gated model: a missing token, or a token
  whose account has not accepted the licence, fails here instead of inside the container.
* **Notebook disk** -- ``shutil.disk_usage`` of the staging folder against what the chosen way
  of moving the weights needs: the largest file for the one-file-at-a-time copy
  (:func:`common.weights.copy_weights_to_s3`), the whole model for a snapshot download, nothing
  when the container downloads from the Hub itself.
* **Execution role** -- ``iam.get_role``: the trust policy lets ``sagemaker.amazonaws.com``
  assume it; and, when the weights go through S3, ``iam:SimulatePrincipalPolicy`` says whether
  its policies (inline, attached, the permissions boundary; ``NotAction``/``NotResource`` and
  conditions included) allow reading and writing the artifacts bucket.

A check that cannot be made (no permission to read quotas, no connection to the Hub) is
reported as *not checked* with the reason -- never as passed. The report shows as a table
(HTML in Jupyter, text elsewhere); :class:`~common.errors.PreflightError` lists every failure.
"""

from __future__ import annotations

import fnmatch
import html
import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from common.endpoints import NOTEBOOK_METADATA_FILE, default_bucket
from common.errors import DeploymentError, PreflightError
from common.weights import format_bytes, list_weight_files

__all__ = [
    "FAILED",
    "NOT_CHECKED",
    "PASSED",
    "WEIGHTS_COPY",
    "WEIGHTS_HUB",
    "WEIGHTS_S3",
    "WEIGHTS_SNAPSHOT",
    "CheckResult",
    "PreflightReport",
    "preflight",
    "quota_console_url",
]

PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"

WEIGHTS_COPY = "copy"
"""LMI: the notebook copies the weights to S3 one file at a time (disk: the largest file)."""
WEIGHTS_SNAPSHOT = "snapshot"
"""LMI: the notebook downloads the whole snapshot, then uploads it (disk: the whole model)."""
WEIGHTS_HUB = "hub"
"""The container downloads the weights from the Hub itself (TGI; LMI with ``HF_MODEL_ID``)."""
WEIGHTS_S3 = "s3"
"""The LMI notebooks' ``WEIGHTS = "s3"``: the same as :data:`WEIGHTS_COPY`."""

_WEIGHT_MODES = (WEIGHTS_COPY, WEIGHTS_SNAPSHOT, WEIGHTS_HUB)
_SHARD_ESTIMATE_BYTES = 10 * 10**9  # the Llama 2 repositories shard at 10 GB
_DISK_MARGIN = 1.05  # 5 % for the download's metadata and the file system's own use
_HOLDS_NO_INSTANCES = ("Failed",)
"""Endpoint statuses whose instances do not count against the quota (every other status of
botocore's ``EndpointStatus`` -- ``OutOfService``, ``Creating``, ``Updating``,
``SystemUpdating``, ``RollingBack``, ``InService``, ``Deleting``, ``UpdateRollbackFailed`` --
holds its instances)."""


@dataclass(frozen=True)
class CheckResult:
    """One pre-flight check.

    Attributes:
        check: what was checked, e.g. ``"Instance quota"``.
        status: ``"passed"``, ``"failed"`` or ``"not checked"``.
        detail: what was found (for ``not checked``: why it could not be checked).
        fix: for a failure, exactly what to do; empty otherwise.
    """

    check: str
    status: str
    detail: str
    fix: str = ""


_TEXT_WIDTH = 110
"""Where the plain-text table wraps a detail or a fix (Jupyter shows the HTML table whole)."""


def _wrapped(text: str, first: str, indent: str) -> list[str]:
    """``first + text`` wrapped at spaces to :data:`_TEXT_WIDTH`, later lines after ``indent``."""
    return textwrap.wrap(text, _TEXT_WIDTH, initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


@dataclass(frozen=True)
class PreflightReport:
    """Every check's result, shown as a table (HTML in Jupyter, text elsewhere)."""

    results: tuple[CheckResult, ...]

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.status == FAILED]

    @property
    def not_checked(self) -> list[CheckResult]:
        """The checks that could not be made."""
        return [r for r in self.results if r.status == NOT_CHECKED]

    @property
    def ok(self) -> bool:
        """True when nothing failed (checks that could not be made are not failures)."""
        return not self.failures

    def raise_for_failures(self) -> PreflightReport:
        """Return ``self``, or raise :class:`PreflightError` listing every failure."""
        if self.failures:
            raise PreflightError(self)
        return self

    def __str__(self) -> str:
        width = max(len(r.check) for r in self.results)
        indent = " " * (width + 15)
        lines = []
        for r in self.results:
            lines += _wrapped(r.detail, f"{r.check:<{width}}  {r.status.upper():<11}  ", indent)
            if r.fix:
                lines += _wrapped(r.fix, f"{indent}Fix: ", indent + "     ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        colours = {PASSED: "#1a7f37", FAILED: "#cf222e", NOT_CHECKED: "#9a6700"}
        rows = "".join(
            "<tr>"
            f"<th style='text-align:left'>{html.escape(r.check)}</th>"
            f"<td style='text-align:left;color:{colours.get(r.status, 'inherit')}'>"
            f"<b>{html.escape(r.status)}</b></td>"
            f"<td style='text-align:left'>{html.escape(r.detail)}"
            + (f"<br><b>Fix:</b> {html.escape(r.fix)}" if r.fix else "")
            + "</td></tr>"
            for r in self.results)
        return ("<table class='preflight'><tr><th>check</th><th>result</th>"
                f"<th>details and fix</th></tr>{rows}</table>")


# --------------------------------------------------------------------------- helpers


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors of the HTTP client huggingface_hub uses (httpx2 in 2.x, else httpx)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]
    return (httpx.TransportError, OSError)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


def _aws_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def quota_console_url(region: str, quota_code: str | None = None) -> str:
    """Return the Service Quotas console page of SageMaker's quotas (or of one quota)."""
    base = (f"https://{region}.console.aws.amazon.com/servicequotas/home/services/"
            "sagemaker/quotas")
    return f"{base}/{quota_code}" if quota_code else base


# --------------------------------------------------------------------------- quota


def _endpoint_instances_in_use(sagemaker: Any, instance_type: str) -> tuple[float, list[str]]:
    """(instances of ``instance_type`` the account's endpoints hold now, endpoints that could
    not be counted).

    Each variant counts with ``DescribeEndpoint``'s ``CurrentInstanceCount`` -- or its
    ``DesiredInstanceCount`` when that is higher (instances still starting hold quota too); an
    endpoint scaled to zero holds 0 -- and, while the endpoint is being created and reports
    neither, its configuration's ``InitialInstanceCount``; the configuration says which
    variants run ``instance_type``.
    """
    used, unknown = 0.0, []
    for page in sagemaker.get_paginator("list_endpoints").paginate():
        for endpoint in page.get("Endpoints", []):
            if endpoint.get("EndpointStatus") in _HOLDS_NO_INSTANCES:
                continue
            name = endpoint["EndpointName"]
            try:
                described = sagemaker.describe_endpoint(EndpointName=name)
                config = sagemaker.describe_endpoint_config(
                    EndpointConfigName=described["EndpointConfigName"])
            except _aws_errors():  # deleted meanwhile, or its configuration was deleted
                unknown.append(name)
                continue
            if described.get("EndpointStatus") in _HOLDS_NO_INSTANCES:
                continue
            current = {v.get("VariantName"): v for v in described.get("ProductionVariants") or []}
            for variant in config.get("ProductionVariants", []):
                if variant.get("InstanceType") != instance_type:
                    continue
                summary = current.get(variant.get("VariantName"), {})
                counts = [float(summary[key]) for key in ("CurrentInstanceCount",
                                                          "DesiredInstanceCount")
                          if summary.get(key) is not None]
                used += max(counts) if counts else float(variant.get("InitialInstanceCount")
                                                         or 0)
    return used, unknown


def _quota_named(quotas: Any, operation: str, name: str) -> dict[str, Any] | None:
    for page in quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
        found = next((q for q in page.get("Quotas", []) if q.get("QuotaName") == name), None)
        if found is not None:
            return found
    return None


def _read_quota(session: Any, region: str, name: str) -> tuple[dict[str, Any] | None, str]:
    """(the quota in force, where its value comes from): the applied value
    (``ListServiceQuotas``; ``GetServiceQuota`` by code for one that list leaves out), else
    AWS's default (``ListAWSDefaultServiceQuotas``). ``None`` when the quota does not exist.

    Raises:
        botocore errors: a call was refused or failed (the caller reports "not checked").
    """
    from botocore.exceptions import ClientError

    quotas = session.client("service-quotas", region_name=region)
    found = _quota_named(quotas, "list_service_quotas", name)
    if found is not None:
        return found, "applied"
    default = _quota_named(quotas, "list_aws_default_service_quotas", name)
    if default is None:
        return None, ""
    try:
        applied = quotas.get_service_quota(ServiceCode="sagemaker",
                                           QuotaCode=default["QuotaCode"])["Quota"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchResourceException":
            raise
        return default, "AWS default (no applied value)"
    return applied, "applied"


def check_quota(session: Any, region: str, instance_type: str,
                instance_count: int = 1) -> CheckResult:
    """Check the account's endpoint quota for ``instance_type`` (see :func:`preflight`).

    ``instance_count`` is the most instances the new endpoint will run (a scale recipe's
    maximum, not its first instance).
    """
    check = "Instance quota"
    name = f"{instance_type} for endpoint usage"
    errors = _aws_errors()
    try:
        found, source = _read_quota(session, region, name)
    except errors as exc:
        return CheckResult(check, NOT_CHECKED,
                           f"could not read Service Quotas for SageMaker in {region} "
                           f"({_error_code(exc)}: {exc}); the role needs "
                           "servicequotas:ListServiceQuotas, ListAWSDefaultServiceQuotas and "
                           f"GetServiceQuota. Check '{name}' yourself at "
                           f"{quota_console_url(region)}")
    if found is None:
        return CheckResult(check, NOT_CHECKED,
                           f"Service Quotas lists no quota named '{name}' in {region}: the "
                           f"instance type may not exist there; see {quota_console_url(region)}")
    limit = float(found.get("Value", 0))
    code = found.get("QuotaCode")
    usage_note = ""
    try:
        used, unknown = _endpoint_instances_in_use(
            session.client("sagemaker", region_name=region), instance_type)
        if unknown:
            usage_note = (f" (not counted: {len(unknown)} endpoint(s) whose configuration "
                          f"could not be read, e.g. {unknown[0]})")
    except errors as exc:
        used = 0.0
        usage_note = f" (the instances already in use could not be counted: {_error_code(exc)})"
    needed = used + instance_count
    value = f"{limit:g}" + ("" if source == "applied" else f" ({source})")
    detail = (f"'{name}' is {value} in {region}; endpoints already hold {used:g}, this one "
              f"needs up to {instance_count}{usage_note}")
    if needed <= limit:
        return CheckResult(check, PASSED, detail)
    fix = (f"Request an increase of '{name}' (quota code {code}) to at least {needed:g} in "
           f"{region}: {quota_console_url(region, code)} -> 'Request increase at account "
           f"level', or run boto3.client('service-quotas', region_name='{region}')"
           f".request_service_quota_increase(ServiceCode='sagemaker', QuotaCode='{code}', "
           f"DesiredValue={needed:g}). Increases can take hours to days; meanwhile pick an "
           "instance type you have quota for (dataclasses.replace(preset, instance_type=..., "
           "num_gpus=...)), lower the number of instances the endpoint may run, or delete "
           "endpoints you no longer need.")
    return CheckResult(check, FAILED, detail, fix)


# --------------------------------------------------------------------------- model access


def check_model_access(model_id: str, hf_token: str | None, *,
                       endpoint: str | None = None) -> CheckResult:
    """Check that ``hf_token`` may download the (gated) model (see :func:`preflight`)."""
    check = "Model access"
    page = f"https://huggingface.co/{model_id}"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    token = (hf_token or "").strip()
    if not token:
        from huggingface_hub import get_token

        token = get_token() or ""
    no_token = CheckResult(
        check, FAILED, f"no Hugging Face token: {model_id} is gated and cannot be "
        "downloaded without one",
        f"Create a read token at https://huggingface.co/settings/tokens with the account "
        f"that accepted the licence on {page}, then export HF_TOKEN before starting Jupyter "
        "or paste it when the notebook asks.")
    try:
        HfApi(endpoint=endpoint).auth_check(model_id, token=token or False)
        if not token:
            return CheckResult(check, PASSED, f"{model_id} is public: no token needed")
    except GatedRepoError as exc:
        if not token:
            return no_token
        message = getattr(exc, "server_message", "") or str(exc).splitlines()[-1]
        return CheckResult(
            check, FAILED, f"the token's account may not download {model_id}: {message}",
            f"Open {page} logged in as the token's account, accept the model's licence "
            "(Meta's, for Llama) and submit the form (access is granted after a review, "
            "usually within an hour); then run this cell again. Or use a token of an account "
            "that has access.")
    except RepositoryNotFoundError as exc:
        if not token:  # the Hub answers 401 for a gated or private repository without a token
            return no_token
        return CheckResult(
            check, FAILED, f"the Hub answers that {model_id} does not exist or this token "
            f"cannot see it ({str(exc).splitlines()[0]})",
            f"Check the model id ({page}) and that the token is valid and has the 'read' "
            "role (https://huggingface.co/settings/tokens).")
    except OfflineModeIsEnabled:
        return CheckResult(check, NOT_CHECKED, "HF_HUB_OFFLINE is set: huggingface_hub "
                           "sends no request in offline mode, so access could not be asked")
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return CheckResult(
                check, FAILED, f"the Hub refused the token ({str(exc).splitlines()[0]})",
                "The token is invalid or revoked: create a new read token at "
                "https://huggingface.co/settings/tokens and set HF_TOKEN to it.")
        return CheckResult(check, NOT_CHECKED, f"the Hub could not be asked ({exc})")
    except _transport_errors() as exc:  # no connection, a proxy in the way, a timeout
        return CheckResult(check, NOT_CHECKED,
                           f"the Hub could not be reached ({type(exc).__name__}: {exc})")
    return CheckResult(check, PASSED, f"the token may download {model_id}")


# --------------------------------------------------------------------------- disk


def _weight_sizes(preset: Any, token: str | None, endpoint: str | None, *,
                  ask_hub: bool = True) -> tuple[int, int, str]:
    """(total, largest file, where the numbers come from)."""
    total = int(preset.weights_gib * 1024**3)
    estimate = (total, min(total, _SHARD_ESTIMATE_BYTES),
                f"estimated from the preset's {preset.params_billion:g} B parameters")
    if not ask_hub:  # the access check failed or could not reach the Hub: do not wait again
        return estimate[0], estimate[1], estimate[2] + ": the Hub's file list is out of reach"
    from huggingface_hub.errors import HfHubHTTPError

    try:
        files = list_weight_files(preset.model_id, token=token or None, endpoint=endpoint)
    except (HfHubHTTPError, *_transport_errors()) as exc:  # no access, no connection
        return (estimate[0], estimate[1],
                f"{estimate[2]}: the Hub's file list could not be read, {type(exc).__name__}")
    if not files:
        return 0, 0, "the Hub lists no weight files"
    return (sum(f.size for f in files), max(f.size for f in files),
            f"{len(files)} files on the Hub")


def _existing_folder(path: str) -> str:
    """``path``, or its nearest ancestor that exists (the copy creates the folder itself)."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _same_volume(path: str, other: str) -> bool:
    try:
        return os.stat(path).st_dev == os.stat(other).st_dev
    except OSError:
        return False


def _disk_fix(staging_dir: str, needed: int, *, on_home: bool, in_studio: bool,
              home: str) -> list[str]:
    """The ways to make room, for the volume that holds ``staging_dir``."""
    space = max(5, int(-(-needed * 1.2 // 1e9)) + 1)  # GB, with room to spare
    resize = (f"give the space at least {space} GB of storage (SageMaker Studio: stop the "
              "space, Edit space -> Storage (GB), start it again; Studio allows a few resizes "
              "a day)")
    if on_home and in_studio:
        return [f"{staging_dir} is on the space's own volume (your home folder): {resize}",
                f"or free space in {home}"]
    if in_studio:
        return [f"{staging_dir} is on the space's container storage, which Studio cannot "
                "resize (and a restart empties): stage on the space's volume instead -- "
                "STAGING_DIR = Path.home() / 'llama-2-recipes-staging' -- and " + resize]
    return [f"free space on the disk that holds {staging_dir}",
            "or set STAGING_DIR to a folder on a disk with "
            f"{format_bytes(needed)} free"]


def check_disk(preset: Any, weights: str, *, staging_dir: str,
               disk_free: Callable[[str], int], hf_token: str | None = None,
               endpoint: str | None = None, ask_hub: bool = True, home: str | None = None,
               in_studio: bool | None = None) -> CheckResult:
    """Check the free disk of the folder the copy writes to against what ``weights`` needs.

    ``staging_dir`` is measured where it will be (its nearest existing folder when it does not
    exist yet), and the fix matches its volume: in SageMaker Studio the home folder is the
    space's own, resizable volume, while other folders (the temporary folder) are on the
    container's storage, which the reader cannot resize. ``home`` and ``in_studio`` default
    to ``Path.home()`` and whether Studio's metadata file exists (see :func:`preflight`).
    """
    check = "Notebook disk"
    if weights == WEIGHTS_HUB:
        who = "TGI" if preset.container == "tgi" else "LMI (HF_MODEL_ID)"
        return CheckResult(check, PASSED, f"no local copy: {who} downloads the weights inside "
                                          "the endpoint")
    measured = _existing_folder(staging_dir)
    try:
        free = int(disk_free(measured))
    except OSError as exc:
        return CheckResult(check, NOT_CHECKED, f"could not read the free space of "
                                               f"{measured}: {exc}")
    total, largest, source = _weight_sizes(preset, hf_token, endpoint, ask_hub=ask_hub)
    needed = int((largest if weights == WEIGHTS_COPY else total) * _DISK_MARGIN)
    what = ("the largest file (one file at a time)" if weights == WEIGHTS_COPY
            else "the whole model (snapshot download)")
    home = home or os.path.expanduser("~")
    studio = os.path.exists(NOTEBOOK_METADATA_FILE) if in_studio is None else in_studio
    on_home = _same_volume(measured, home)
    volume = "the home folder's volume" if on_home else "not the home folder's volume"
    detail = (f"{format_bytes(free)} free in {staging_dir} ({volume}); the copy needs "
              f"{format_bytes(needed)} for {what}; model {format_bytes(total)}, largest file "
              f"{format_bytes(largest)} ({source})")
    if free >= needed:
        return CheckResult(check, PASSED, detail)
    options = _disk_fix(staging_dir, needed, on_home=on_home, in_studio=studio, home=home)
    if weights == WEIGHTS_SNAPSHOT:
        options.append(f"copy one file at a time with common.copy_weights_to_s3 (needs "
                       f"{format_bytes(largest * _DISK_MARGIN)})")
    options.append("or skip the local copy: WEIGHTS = 'hub' lets LMI load the weights from the "
                   f"Hub itself (option.model_id / HF_MODEL_ID = '{preset.model_id}' and "
                   "HF_TOKEN; the endpoint needs internet access); its pre-flight is "
                   "preflight(..., weights='hub')")
    return CheckResult(check, FAILED, detail, "; ".join(options) + ".")


# --------------------------------------------------------------------------- role


def _documents(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(unquote(value))
    return dict(value or {})


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _trusts_sagemaker(document: dict[str, Any]) -> bool:
    for statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        actions = _as_list(statement.get("Action"))
        if not any(fnmatch.fnmatch("sts:assumerole", a.lower()) for a in actions):
            continue
        principal = statement.get("Principal")
        if principal == "*":
            return True
        if isinstance(principal, dict) and "sagemaker.amazonaws.com" in _as_list(
                principal.get("Service")):
            return True
    return False


def _simulate(iam: Any, role_arn: str, actions: list[str], resource: str
              ) -> list[dict[str, Any]]:
    """``iam:SimulatePrincipalPolicy`` of ``actions`` on ``resource`` for the role (every
    page)."""
    results: list[dict[str, Any]] = []
    for page in iam.get_paginator("simulate_principal_policy").paginate(
            PolicySourceArn=role_arn, ActionNames=actions, ResourceArns=[resource]):
        results += page.get("EvaluationResults", [])
    return results


def _trust_policy_fix(role_name: str) -> str:
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    return (f"Let SageMaker assume the role: aws iam update-assume-role-policy --role-name "
            f"{role_name} --policy-document '{policy}' (IAM console: Roles -> {role_name} -> "
            "Trust relationships), or use a SageMaker execution role.")


def check_role(session: Any, role_arn: str | None, *, bucket: str | None = None,
               prefix: str = "") -> list[CheckResult]:
    """Check the execution role's trust policy and, with ``bucket``, its S3 access."""
    results = []
    if not role_arn:
        return [CheckResult("Execution role", FAILED, "no execution role was found",
                            "Create a role SageMaker can assume (trust principal "
                            "sagemaker.amazonaws.com) with AmazonSageMakerFullAccess and set "
                            "SAGEMAKER_EXECUTION_ROLE_ARN to its ARN.")]
    role_name = role_arn.rsplit("/", 1)[-1]
    errors = _aws_errors()
    iam = session.client("iam")
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except errors as exc:
        if _error_code(exc) == "NoSuchEntity":
            return [CheckResult("Execution role", FAILED, f"the role {role_arn} does not exist",
                                "Create it (trust principal sagemaker.amazonaws.com, policy "
                                "AmazonSageMakerFullAccess) or set SAGEMAKER_EXECUTION_ROLE_ARN "
                                "to an existing SageMaker execution role.")]
        return [CheckResult("Execution role", NOT_CHECKED,
                            f"could not read the role {role_name} ({_error_code(exc)}); "
                            "needs iam:GetRole")]
    if _trusts_sagemaker(_documents(role.get("AssumeRolePolicyDocument"))):
        results.append(CheckResult("Execution role", PASSED,
                                   f"SageMaker may assume {role_name}"))
    else:
        results.append(CheckResult(
            "Execution role", FAILED,
            f"the trust policy of {role_name} does not let sagemaker.amazonaws.com assume it "
            "(CreateModel would fail: 'Could not assume role')", _trust_policy_fix(role_name)))
    if bucket is None:
        return results
    check = "S3 access"
    key = f"{prefix.strip('/')}/model.safetensors" if prefix.strip("/") else "model.safetensors"
    try:
        evaluated = (_simulate(iam, role_arn, ["s3:GetObject", "s3:PutObject"],
                               f"arn:aws:s3:::{bucket}/{key}")
                     + _simulate(iam, role_arn, ["s3:ListBucket"], f"arn:aws:s3:::{bucket}"))
    except errors as exc:
        results.append(CheckResult(check, NOT_CHECKED,
                                   f"could not simulate the policies of {role_name} "
                                   f"({_error_code(exc)}); needs iam:SimulatePrincipalPolicy on "
                                   "the role. Its S3 access is not known: the endpoint may "
                                   f"fail to read s3://{bucket}/"))
        return results
    missing = [r["EvalActionName"] for r in evaluated if r.get("EvalDecision") != "allowed"]
    unknown_keys = sorted({k for r in evaluated for k in r.get("MissingContextValues") or []})
    denied = [r["EvalActionName"] for r in evaluated
              if r.get("EvalDecision") == "explicitDeny"]
    if unknown_keys and not denied:
        results_text = ("allows them" if not missing else
                        f"does not allow {', '.join(missing)} without them")
        results.append(CheckResult(
            check, NOT_CHECKED,
            f"the policies of {role_name} depend on condition keys the simulation cannot know "
            f"({', '.join(unknown_keys)}); iam:SimulatePrincipalPolicy {results_text}, so its "
            f"access to s3://{bucket}/ is not known"))
        return results
    if not missing:
        results.append(CheckResult(check, PASSED,
                                   f"{role_name} may read and write s3://{bucket}/ "
                                   "(iam:SimulatePrincipalPolicy: its policies and permissions "
                                   "boundary; bucket policies and SCPs not included)"))
        return results
    how = (f"explicitly denied: {', '.join(denied)}; " if denied else "")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]})
    results.append(CheckResult(
        check, FAILED, f"the policies of {role_name} do not allow {', '.join(missing)} on "
        f"s3://{bucket}/ ({how}iam:SimulatePrincipalPolicy; the endpoint could not read the "
        "weights)",
        f"Attach AmazonSageMakerFullAccess (it covers buckets whose name contains "
        f"'sagemaker') or add: aws iam put-role-policy --role-name {role_name} --policy-name "
        f"llama2-recipes-artifacts --policy-document '{policy}'"))
    return results


# --------------------------------------------------------------------------- preflight


def _show(report: PreflightReport) -> None:
    from common.display import in_jupyter_kernel

    if in_jupyter_kernel():
        from IPython.display import display

        display(report)
    else:
        print(report)


def preflight(
    preset: Any,
    *,
    region: str | None = None,
    session: Any = None,
    role: str | None = None,
    hf_token: str | None = None,
    weights: str | None = None,
    bucket: str | None = None,
    s3_prefix: str = "",
    instance_count: int = 1,
    staging_dir: str | os.PathLike[str] | None = None,
    disk_free: Callable[[str], int] | None = None,
    hub_endpoint: str | None = None,
    show: bool = True,
) -> PreflightReport:
    """Check quota, model access, disk and role before anything is created.

    Args:
        preset: the deployment preset (:class:`common.Preset`).
        region: the AWS region (default: the session's).
        session: a ``boto3.Session`` or a SageMaker SDK ``Session`` (default: a new
            ``boto3.Session()``).
        role: the execution role ARN (default: :func:`common.resolve_execution_role`).
        hf_token: the Hugging Face token the deploy will use (default: huggingface_hub's:
            ``HF_TOKEN`` or the saved login).
        weights: how the weights reach the endpoint: ``"copy"`` (LMI default: one file at a
            time to S3; ``"s3"`` says the same), ``"snapshot"`` (the whole snapshot on disk,
            then S3) or ``"hub"`` (the container downloads them; TGI's only way).
        bucket: the S3 bucket of the artifacts (default: SageMaker's default bucket,
            ``sagemaker-<region>-<account>``); only checked when the weights go through S3.
        s3_prefix: the key prefix the artifacts go under.
        instance_count: the most instances the endpoint will run: 1 for a deploy recipe,
            ``scaling.max_instances`` for an endpoint that scales (its quota must allow the
            maximum, or scale-out stops there).
        staging_dir: where the copy stages files -- pass the same folder as to
            :func:`common.copy_weights_to_s3` (default: the temporary folder, its default).
            Its volume is measured, and the fix names what enlarges that volume.
        disk_free: ``disk_free(path) -> bytes`` (default: ``shutil.disk_usage(path).free``).
        hub_endpoint: the Hub's URL (default: huggingface_hub's, ``HF_ENDPOINT``).
        show: display the table (HTML in Jupyter, text elsewhere).

    Returns:
        The :class:`PreflightReport` when nothing failed (some checks may be "not checked").

    Raises:
        PreflightError: listing every failed check with its fix, after showing the table.
        ValueError: for an unknown ``weights`` value.
    """
    import boto3

    mode = weights or (WEIGHTS_HUB if preset.container == "tgi" else WEIGHTS_COPY)
    mode = WEIGHTS_COPY if mode == WEIGHTS_S3 else mode
    if mode not in _WEIGHT_MODES:
        raise ValueError(f"weights must be one of {', '.join(_WEIGHT_MODES)}; got {weights!r}")
    if preset.container == "tgi" and mode != WEIGHTS_HUB:
        raise ValueError("TGI downloads the weights inside the endpoint: use weights='hub'")
    boto_session = getattr(session, "boto_session", session) or boto3.Session()
    region = region or boto_session.region_name
    access = check_model_access(preset.model_id, hf_token, endpoint=hub_endpoint)
    results: list[CheckResult] = [
        check_quota(boto_session, region, preset.instance_type, instance_count),
        access,
        check_disk(preset, mode, staging_dir=str(staging_dir or tempfile.gettempdir()),
                   disk_free=disk_free or (lambda path: shutil.disk_usage(path).free),
                   hf_token=hf_token, endpoint=hub_endpoint,
                   ask_hub=access.status == PASSED),
    ]
    role_arn = role
    if role_arn is None:
        from common.endpoints import resolve_execution_role

        try:
            role_arn = resolve_execution_role(boto_session)
        except DeploymentError as exc:
            results.append(CheckResult("Execution role", FAILED, "no execution role was found",
                                       str(exc)))
    if role_arn is not None:
        if mode != WEIGHTS_HUB and bucket is None:
            try:
                bucket = default_bucket(boto_session, region)
            except _aws_errors() as exc:
                results.append(CheckResult("S3 access", NOT_CHECKED,
                                           f"could not find the account for the default "
                                           f"bucket ({_error_code(exc)})"))
        results += check_role(boto_session, role_arn,
                              bucket=bucket if mode != WEIGHTS_HUB else None, prefix=s3_prefix)
    report = PreflightReport(tuple(results))
    if show:
        _show(report)
    return report.raise_for_failures()
