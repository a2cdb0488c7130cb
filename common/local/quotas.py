"""Service Quotas for SageMaker in the stand-in, and ``CreateEndpoint`` refusing past a quota.

moto 5.2.5's ``service-quotas`` knows only the ``vpc`` service and only
``ListAWSDefaultServiceQuotas`` / ``GetServiceQuota``. :class:`QuotaBook` holds the SageMaker
endpoint quotas of the stand-in's account -- one per instance type, named as SageMaker names
them (``"ml.g5.12xlarge for endpoint usage"``) -- and :func:`install` patches, for as long as
the control plane runs (a control-plane extension: reversible patches):

* ``ListServiceQuotas`` / ``GetServiceQuota`` (the account's applied values -- a quota with no
  applied value is left out of the list and not found by code, as the service model's
  documentation says: "If the applied quota value is not available for a quota, the quota is
  not retrieved"), ``ListAWSDefaultServiceQuotas`` / ``GetAWSDefaultServiceQuota`` (AWS's
  defaults, every quota) and
  ``RequestServiceQuotaIncrease`` (recorded, ``PENDING``; it changes nothing, as a real
  request changes nothing until AWS approves it) for service code ``sagemaker``;
* SageMaker ``CreateEndpoint``: when the new endpoint's instances plus those the account's
  endpoints hold already (:func:`instances_in_use`: an inference-component endpoint holds the
  instances it runs now, others their configured count) exceed the quota (the applied value,
  else AWS's default), it fails with ``ResourceLimitExceeded`` and the text SageMaker gives
  (aws-samples/aws-genai-llm-chatbot#244, awsdocs/amazon-sagemaker-developer-guide#70). The
  same count stops managed instance scaling (:class:`QuotaBook.refusal`, called by the
  component model before it starts an instance).

Values: AWS's default for GPU endpoint instances is 0 in a new account (the issue this
answers; the SageMaker quotas page lists most ``ml.g*``/``ml.p*`` endpoint quotas at 0), so
:data:`AWS_DEFAULT_VALUE` is 0 for them. The stand-in's account has been granted
:data:`APPLIED_VALUE` (100) of each, so that the recipes and test suites that keep many
endpoints never meet it; ``--quota TYPE=N`` sets one (0 to see the failure) and
``--quota TYPE=default`` leaves the type without an applied value (AWS's default applies, and
``ListServiceQuotas`` omits it). The CPU types have only AWS's default.
The quota codes are made up (a stable hash of the name, ``L-`` and 8 hex digits): real
codes differ per quota and the recipes match quotas by name.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "APPLIED_VALUE",
    "AWS_DEFAULT_VALUE",
    "QuotaBook",
    "endpoint_quota_name",
    "install",
    "instances_in_use",
    "parse_quota",
    "quota_code",
    "resource_limit_message",
]

APPLIED_VALUE = 100.0
"""What the stand-in's account may run of each instance type, unless ``--quota`` says."""

AWS_DEFAULT_VALUE = 0.0
"""AWS's default endpoint quota for a GPU instance type in a new account."""

_CPU_DEFAULTS = {"ml.t2.medium": 2.0, "ml.m5.large": 2.0, "ml.m5.xlarge": 2.0,
                 "ml.c5.xlarge": 2.0}


def endpoint_quota_name(instance_type: str) -> str:
    """Return SageMaker's quota name for an instance type's endpoints."""
    return f"{instance_type} for endpoint usage"


def quota_code(name: str) -> str:
    """Return the stand-in's (made-up, stable) quota code of a quota name."""
    return "L-" + hashlib.sha1(name.encode()).hexdigest()[:8].upper()


def resource_limit_message(instance_type: str, limit: float, used: float,
                           delta: float) -> str:
    """Return SageMaker's ``ResourceLimitExceeded`` text for an endpoint quota."""
    return (f"The account-level service limit '{endpoint_quota_name(instance_type)}' is "
            f"{limit:g} Instances, with current utilization of {used:g} Instances and a "
            f"request delta of {delta:g} Instances. Please use AWS Service Quotas to request "
            "an increase for this quota. If AWS Service Quotas is not available, contact AWS "
            "support to request an increase for this quota.")


def parse_quota(text: str) -> tuple[str, float | None]:
    """Parse ``ml.g5.12xlarge=0`` into ``("ml.g5.12xlarge", 0.0)``, and
    ``ml.g5.12xlarge=default`` into ``("ml.g5.12xlarge", None)`` (no applied value).

    Raises:
        ValueError: the text is not ``ml.TYPE=N`` (a number N >= 0) or ``ml.TYPE=default``.
    """
    name, sep, value = str(text).partition("=")
    name = name.strip()
    if sep and name.startswith("ml.") and value.strip() == "default":
        return name, None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not name.startswith("ml.") or number < 0:
        raise ValueError(f"expected INSTANCE_TYPE=N or INSTANCE_TYPE=default (e.g. "
                         f"ml.g5.12xlarge=0), got {text!r}")
    return name, number


class QuotaBook:
    """The stand-in account's SageMaker endpoint quotas (thread-safe).

    Args:
        instance_types: the instance types that get a quota (an applied value of
            :data:`APPLIED_VALUE`).
        overrides: ``{instance_type: applied value, or None for none}``; a type not in
            ``instance_types`` is added.
        region: the region in the quota ARNs.
        account_id: the account in the quota ARNs.
    """

    def __init__(self, instance_types: Iterable[str],
                 overrides: Mapping[str, float | None] = (), *, region: str = "us-east-1",
                 account_id: str = "123456789012") -> None:
        self.region = region
        self.account_id = account_id
        self._lock = threading.Lock()
        self._applied: dict[str, float | None] = {}
        self._default: dict[str, float] = {}
        for name in sorted({*instance_types, *_CPU_DEFAULTS}):
            self._default[name] = _CPU_DEFAULTS.get(name, AWS_DEFAULT_VALUE)
            self._applied[name] = None if name in _CPU_DEFAULTS else APPLIED_VALUE
        for name, value in dict(overrides).items():
            self.set(name, value)
        self.readable = True
        self.increase_requests: list[dict[str, Any]] = []

    def set(self, instance_type: str, value: float | None) -> None:
        """Set the applied endpoint quota of ``instance_type`` (``None``: no applied value,
        so AWS's default applies)."""
        with self._lock:
            self._default.setdefault(instance_type, AWS_DEFAULT_VALUE)
            self._applied[instance_type] = None if value is None else float(value)

    def applied(self, instance_type: str) -> float | None:
        """The applied quota of ``instance_type``, or ``None`` when it has none."""
        with self._lock:
            return self._applied.get(instance_type)

    def limit(self, instance_type: str) -> float | None:
        """The quota in force: the applied value, else AWS's default; ``None`` for a type
        without a quota."""
        with self._lock:
            applied = self._applied.get(instance_type)
            return applied if applied is not None else self._default.get(instance_type)

    def refusal(self, instance_type: str, used: float, delta: float) -> str | None:
        """SageMaker's ``ResourceLimitExceeded`` text when ``used + delta`` instances of
        ``instance_type`` pass the quota in force, else ``None``."""
        limit = self.limit(instance_type)
        if limit is None or used + delta <= limit:
            return None
        return resource_limit_message(instance_type, limit, used, delta)

    def quotas(self, *, default: bool = False) -> list[dict[str, Any]]:
        """Every quota as a Service Quotas ``ServiceQuota`` structure: AWS's defaults, or the
        applied values (quotas without one left out)."""
        with self._lock:
            values = dict(self._default if default else self._applied)
        return [self._quota(name, value) for name, value in values.items()
                if value is not None]

    def _quota(self, instance_type: str, value: float) -> dict[str, Any]:
        name = endpoint_quota_name(instance_type)
        code = quota_code(name)
        return {
            "ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker",
            "QuotaArn": f"arn:aws:servicequotas:{self.region}:{self.account_id}:sagemaker/{code}",
            "QuotaCode": code, "QuotaName": name, "Value": value, "Unit": "None",
            "Adjustable": True, "GlobalQuota": False,
        }

    def find(self, code: str, *, default: bool = False) -> dict[str, Any] | None:
        """The quota whose code is ``code``, or ``None``."""
        return next((q for q in self.quotas(default=default) if q["QuotaCode"] == code), None)


# --------------------------------------------------------------------------- moto patches


def instances_in_use(backend: Any, instance_type: str, *,
                     fleet_size: Callable[[str, str, str], int | None] | None = None,
                     exclude: str | None = None) -> float:
    """Return the instances of ``instance_type`` the endpoints of a SageMaker backend hold.

    Every endpoint but a ``Failed`` one (and ``exclude``) counts: an endpoint for inference
    components with the instances it runs or starts now (``fleet_size(account, region,
    endpoint)``), any other with its configuration's instance counts.
    """
    used = 0.0
    for name, endpoint in backend.endpoints.items():
        if name == exclude or endpoint.endpoint_status == "Failed":
            continue
        size = fleet_size(backend.account_id, backend.region_name, name) if fleet_size else None
        counts = _endpoint_instances(backend, endpoint.endpoint_config_name)
        if size is not None:
            used += size if instance_type in counts else 0
        else:
            used += counts.get(instance_type, 0)
    return used


def _endpoint_instances(backend: Any, config_name: str) -> dict[str, float]:
    config = backend.endpoint_configs.get(config_name)
    counts: dict[str, float] = {}
    for variant in (config.production_variants if config is not None else []):
        instance_type = variant.get("InstanceType")
        if instance_type:
            counts[instance_type] = counts.get(instance_type, 0) + float(
                variant.get("InitialInstanceCount") or 1)
    return counts


def install(patch: Callable[[object, str, object], None], book: QuotaBook, *,
            fleet_size: Callable[[str, str, str], int | None] | None = None) -> None:
    """Patch moto's Service Quotas and SageMaker ``CreateEndpoint`` with ``book``.

    A control-plane extension: ``ControlPlane(extensions=[lambda plane, patch:
    install(patch, book)])``; list it after extensions that patch ``create_endpoint`` too, so
    that the quota check runs first.

    Args:
        patch: the control plane's reversible patch function (``patch(owner, name, value)``,
            undone when the control plane stops).
        book: the quotas.
        fleet_size: ``fleet_size(account, region, endpoint)`` -> the instances an endpoint for
            inference components runs now, ``None`` for other endpoints (the component model's
            :meth:`~common.local.components.ComponentManager.fleet_size`).
    """
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker import models
    from moto.sagemaker.exceptions import SagemakerClientError
    from moto.servicequotas.responses import ServiceQuotasResponse

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"

    def no_such_resource() -> JsonRESTError:
        return JsonRESTError("NoSuchResourceException",
                             "The request failed because the specified service does not exist.")

    def params(response: Any) -> dict[str, Any]:
        return json.loads(response.body or "{}")

    def readable() -> None:
        if not book.readable:
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: arn:aws:sts::{book.account_id}:assumed-role/local/notebook is not "
                "authorized to perform: servicequotas:ListServiceQuotas")

    original_list_defaults = ServiceQuotasResponse.list_aws_default_service_quotas
    original_get = ServiceQuotasResponse.get_service_quota

    def list_service_quotas(response: Any) -> str:
        request = params(response)
        if request.get("ServiceCode") != "sagemaker":
            raise no_such_resource()
        readable()
        return json.dumps({"Quotas": book.quotas()})

    def list_aws_default_service_quotas(response: Any) -> str:
        if params(response).get("ServiceCode") != "sagemaker":
            return original_list_defaults(response)
        readable()
        return json.dumps({"Quotas": book.quotas(default=True)})

    def get_quota(response: Any, *, default: bool) -> str:
        request = params(response)
        if request.get("ServiceCode") != "sagemaker":
            if default:
                raise no_such_resource()
            return original_get(response)
        readable()
        quota = book.find(str(request.get("QuotaCode")), default=default)
        if quota is None:
            raise no_such_resource()
        return json.dumps({"Quota": quota})

    def request_service_quota_increase(response: Any) -> str:
        request = params(response)
        quota = (book.find(str(request.get("QuotaCode")))
                 if request.get("ServiceCode") == "sagemaker" else None)
        if quota is None:
            raise no_such_resource()
        requested = {
            "Id": f"local-{len(book.increase_requests) + 1}", "ServiceCode": "sagemaker",
            "QuotaCode": quota["QuotaCode"], "QuotaName": quota["QuotaName"],
            "DesiredValue": float(request.get("DesiredValue", 0)), "Status": "PENDING",
            "QuotaArn": quota["QuotaArn"],
        }
        book.increase_requests.append(requested)
        return json.dumps({"RequestedQuota": requested})

    patch(ServiceQuotasResponse, "list_service_quotas", list_service_quotas)
    patch(ServiceQuotasResponse, "list_aws_default_service_quotas",
                list_aws_default_service_quotas)
    patch(ServiceQuotasResponse, "get_service_quota",
                lambda response: get_quota(response, default=False))
    patch(ServiceQuotasResponse, "get_aws_default_service_quota",
                lambda response: get_quota(response, default=True))
    patch(ServiceQuotasResponse, "request_service_quota_increase",
                request_service_quota_increase)

    backend_cls = models.SageMakerModelBackend
    create_endpoint = backend_cls.__dict__["create_endpoint"]

    def create_endpoint_within_quota(backend: Any, endpoint_name: str,
                                     endpoint_config_name: str, tags: Any) -> Any:
        wanted = _endpoint_instances(backend, endpoint_config_name)
        for instance_type, delta in wanted.items():
            used = instances_in_use(backend, instance_type, fleet_size=fleet_size,
                                    exclude=endpoint_name)
            refusal = book.refusal(instance_type, used, delta)
            if refusal:
                raise ResourceLimitExceeded(refusal)
        return create_endpoint(backend, endpoint_name, endpoint_config_name, tags)

    patch(backend_cls, "create_endpoint", create_endpoint_within_quota)
