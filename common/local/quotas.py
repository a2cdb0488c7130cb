"""Service Quotas for SageMaker in the stand-in, and ``CreateEndpoint`` refusing past a quota.

moto 5.2.5's ``service-quotas`` knows only the ``vpc`` service and only
``ListAWSDefaultServiceQuotas`` / ``GetServiceQuota``. :class:`QuotaBook` holds the SageMaker
endpoint quotas of the stand-in's account -- one per instance type, named as SageMaker names
them (``"ml.g5.12xlarge for endpoint usage"``) -- and :func:`install` patches, for as long as
the control plane runs (a control-plane extension: reversible patches):

* ``ListServiceQuotas`` / ``GetServiceQuota`` (the account's applied values),
  ``ListAWSDefaultServiceQuotas`` / ``GetAWSDefaultServiceQuota`` (AWS's defaults) and
  ``RequestServiceQuotaIncrease`` (recorded, ``PENDING``; it changes nothing, as a real
  request changes nothing until AWS approves it) for service code ``sagemaker``;
* SageMaker ``CreateEndpoint``: when the new endpoint's instances plus those of the endpoints
  that exist already exceed the applied quota, it fails with ``ResourceLimitExceeded`` and the
  text SageMaker gives (aws-samples/aws-genai-llm-chatbot#244,
  awsdocs/amazon-sagemaker-developer-guide#70).

Values: AWS's default for GPU endpoint instances is 0 in a new account (the issue this
answers; the SageMaker quotas page lists most ``ml.g*``/``ml.p*`` endpoint quotas at 0), so
:data:`AWS_DEFAULT_VALUE` is 0 for them. The stand-in's account has been granted
:data:`APPLIED_VALUE` (100) of each, so that the recipes and test suites that keep many
endpoints never meet it; ``--quota TYPE=N`` sets one (0 to see the failure).
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


def parse_quota(text: str) -> tuple[str, float]:
    """Parse ``ml.g5.12xlarge=0`` into ``("ml.g5.12xlarge", 0.0)``.

    Raises:
        ValueError: the text is not ``ml.TYPE=N`` with a number N >= 0.
    """
    name, sep, value = str(text).partition("=")
    name = name.strip()
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not name.startswith("ml.") or number < 0:
        raise ValueError(f"expected INSTANCE_TYPE=N (e.g. ml.g5.12xlarge=0), got {text!r}")
    return name, number


class QuotaBook:
    """The stand-in account's SageMaker endpoint quotas (thread-safe).

    Args:
        instance_types: the instance types that get a quota.
        overrides: ``{instance_type: applied value}``; a type not in ``instance_types`` is
            added.
        region: the region in the quota ARNs.
        account_id: the account in the quota ARNs.
    """

    def __init__(self, instance_types: Iterable[str], overrides: Mapping[str, float] = (),
                 *, region: str = "us-east-1", account_id: str = "123456789012") -> None:
        self.region = region
        self.account_id = account_id
        self._lock = threading.Lock()
        self._applied: dict[str, float] = {}
        self._default: dict[str, float] = {}
        for name in sorted({*instance_types, *_CPU_DEFAULTS}):
            self._default[name] = _CPU_DEFAULTS.get(name, AWS_DEFAULT_VALUE)
            self._applied[name] = max(self._default[name], APPLIED_VALUE)
        for name, value in dict(overrides).items():
            self.set(name, value)
        self.readable = True
        self.increase_requests: list[dict[str, Any]] = []

    def set(self, instance_type: str, value: float) -> None:
        """Set the applied endpoint quota of ``instance_type``."""
        with self._lock:
            self._default.setdefault(instance_type, AWS_DEFAULT_VALUE)
            self._applied[instance_type] = float(value)

    def applied(self, instance_type: str) -> float | None:
        """The applied quota of ``instance_type``, or ``None`` when it has none."""
        with self._lock:
            return self._applied.get(instance_type)

    def quotas(self, *, default: bool = False) -> list[dict[str, Any]]:
        """Every quota as a Service Quotas ``ServiceQuota`` structure."""
        with self._lock:
            values = dict(self._default if default else self._applied)
        return [self._quota(name, value) for name, value in values.items()]

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


def _endpoint_instances(backend: Any, config_name: str) -> dict[str, float]:
    config = backend.endpoint_configs.get(config_name)
    counts: dict[str, float] = {}
    for variant in (config.production_variants if config is not None else []):
        instance_type = variant.get("InstanceType")
        if instance_type:
            counts[instance_type] = counts.get(instance_type, 0) + float(
                variant.get("InitialInstanceCount") or 1)
    return counts


def install(patch: Callable[[object, str, object], None], book: QuotaBook) -> None:
    """Patch moto's Service Quotas and SageMaker ``CreateEndpoint`` with ``book``.

    A control-plane extension: ``ControlPlane(extensions=[lambda plane, patch:
    install(patch, book)])``; list it after extensions that patch ``create_endpoint`` too, so
    that the quota check runs first.

    Args:
        patch: the control plane's reversible patch function (``patch(owner, name, value)``,
            undone when the control plane stops).
        book: the quotas.
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
            limit = book.applied(instance_type)
            if limit is None:
                continue
            used = sum(
                _endpoint_instances(backend, endpoint.endpoint_config_name).get(instance_type, 0)
                for name, endpoint in backend.endpoints.items()
                if name != endpoint_name and endpoint.endpoint_status not in ("Failed",))
            if used + delta > limit:
                raise ResourceLimitExceeded(
                    resource_limit_message(instance_type, limit, used, delta))
        return create_endpoint(backend, endpoint_name, endpoint_config_name, tags)

    patch(backend_cls, "create_endpoint", create_endpoint_within_quota)
