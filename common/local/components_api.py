"""SageMaker's inference-component API, patched into moto (the model is in ``components.py``).

Operations added to moto's SageMaker: ``CreateInferenceComponent``,
``DescribeInferenceComponent``, ``ListInferenceComponents``, ``UpdateInferenceComponent``,
``UpdateInferenceComponentRuntimeConfig``, ``DeleteInferenceComponent`` (request and
response members as in botocore's ``sagemaker`` service model). Fixes to moto's own: an
endpoint-config variant without ``ModelName`` is accepted (moto raised ``KeyError``),
``ExecutionRoleArn`` is kept and described, and DescribeEndpoint reports the component
endpoint's instances, ``ManagedInstanceScaling``, ``RoutingConfig`` and (while the account's
quota holds copies back) ``VariantStatus``.

Rules SageMaker applies that the service model does not state, refused with
``ValidationException``:

* ``CreateEndpointConfig``: ``ManagedInstanceScaling`` on a variant that names a
  ``ModelName`` (:data:`MANAGED_SCALING_NEEDS_COMPONENTS`, SageMaker's text as quoted in
  hashicorp/terraform-provider-aws#45926); a variant without ``ModelName`` (an endpoint for
  inference components) without the configuration's ``ExecutionRoleArn``
  (:data:`ROLE_REQUIRED_MESSAGE`; refused with HTTP 400 on SageMaker, stdapi-ai/stdapi.ai#43;
  the wording is ours); an ``InferenceAmiVersion`` outside the enum or not for the instance
  family (:func:`common.local.drivers.check_variant_ami`).
* ``DeleteEndpoint`` while inference components exist on the endpoint
  (:data:`DELETE_WITH_COMPONENTS_MESSAGE`, wording ours: AWS's console deletes the components
  first, "Delete inference components first" in "Delete Endpoints and Resources", and the API
  refuses -- aws/amazon-sagemaker-feedback#49).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common.local.components import (
    NOT_SUPPORTED_MESSAGE,
    ComponentManager,
    ComponentRecord,
    ceil_accelerators,
    copy_concurrency_from,
    serving_properties_from_s3,
    spec_fields,
)

__all__ = [
    "DELETE_WITH_COMPONENTS_MESSAGE",
    "MANAGED_SCALING_NEEDS_COMPONENTS",
    "ROLE_REQUIRED_MESSAGE",
    "install_component_api",
]

MANAGED_SCALING_NEEDS_COMPONENTS = (
    "ManagedInstanceScaling is only supported for inference component endpoints.")
ROLE_REQUIRED_MESSAGE = (
    "ExecutionRoleArn is required for an endpoint configuration whose production variants "
    "host inference components (no ModelName): SageMaker runs the components' containers with "
    "it. Pass ExecutionRoleArn (execution_role_arn=) to CreateEndpointConfig.")
DELETE_WITH_COMPONENTS_MESSAGE = (
    "Cannot delete endpoint \"{arn}\" while it hosts inference components ({names}). Delete "
    "them first (DeleteInferenceComponent) and wait until they are gone, then delete the "
    "endpoint.")

_OPERATIONS = ("create_inference_component", "describe_inference_component",
               "list_inference_components", "update_inference_component",
               "update_inference_component_runtime_config", "delete_inference_component")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) or str(value).replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(value), UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _hosts_components(variant: dict[str, Any]) -> bool:
    return not variant.get("ModelName")


def install_component_api(plane: Any, manager: ComponentManager,
                          patch: Callable[[object, str, object], None]) -> None:
    """Patch moto's SageMaker backend and response classes (``patch(owner, name, value)``
    records each change so that the control plane can undo it)."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker import models
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemaker.utils import arn_formatter

    backend_cls = models.SageMakerModelBackend
    original_validate = backend_cls.validate_production_variants
    original_create_endpoint = backend_cls.create_endpoint
    original_describe_endpoint = backend_cls.describe_endpoint
    original_delete_endpoint = backend_cls.delete_endpoint
    original_create_config = SageMakerResponse.create_endpoint_config

    def ic_arn(backend: Any, name: str) -> str:
        return arn_formatter("inference-component", name, backend.account_id,
                             backend.region_name)

    def validate_production_variants(backend: Any, variants: list[dict[str, Any]]) -> None:
        original_validate(backend, [v for v in variants if not _hosts_components(v)])

    def create_endpoint_config_action(response: Any) -> Any:
        from common.local.drivers import check_variant_ami

        variants = response._get_param("ProductionVariants") or []
        for index, variant in enumerate(variants):
            refusal = check_variant_ami(variant, index)
            if refusal:
                raise ValidationError(message=refusal)
            if variant.get("ModelName") and variant.get("ManagedInstanceScaling"):
                raise ValidationError(message=MANAGED_SCALING_NEEDS_COMPONENTS)
        if any(_hosts_components(v) for v in variants) and not response._get_param(
                "ExecutionRoleArn"):
            raise ValidationError(message=ROLE_REQUIRED_MESSAGE)
        result = original_create_config(response)
        role = response._get_param("ExecutionRoleArn")
        if role:
            config = response.sagemaker_backend.endpoint_configs[
                response._get_param("EndpointConfigName")]
            config.execution_role_arn = role
        return result

    def create_endpoint(backend: Any, endpoint_name: str, endpoint_config_name: str,
                        tags: Any) -> Any:
        with plane._lock:
            endpoint = original_create_endpoint(backend, endpoint_name, endpoint_config_name,
                                                tags)
            config = backend.endpoint_configs[endpoint_config_name]
            variants = config.production_variants
            if variants and _hosts_components(variants[0]):
                life = plane._state.lifecycles.get(plane._key(backend, endpoint_name))
                ready_at = life.due_at if life is not None else plane._clock()
                manager.add_fleet(backend.account_id, backend.region_name, endpoint_name,
                                  variants[0], ready_at)
            return endpoint

    def describe_endpoint(backend: Any, endpoint_name: str) -> Any:
        with plane._lock:
            described = original_describe_endpoint(backend, endpoint_name)
            manager.advance()
            summary = manager.fleet_summary(backend.account_id, backend.region_name,
                                            endpoint_name)
            if summary is not None:
                described = dict(described)
                variants = [dict(v) for v in described.get("ProductionVariants") or [{}]]
                variants[0].update(summary)
                described["ProductionVariants"] = variants
            return described

    def delete_endpoint(backend: Any, endpoint_name: str) -> None:
        with plane._lock:
            manager.advance()
            hosted = manager.components_on(backend.account_id, backend.region_name,
                                           endpoint_name)
            endpoint = backend.endpoints.get(endpoint_name)
            if hosted and endpoint is not None:
                raise ValidationError(message=DELETE_WITH_COMPONENTS_MESSAGE.format(
                    arn=endpoint.arn, names=", ".join(hosted)))
            original_delete_endpoint(backend, endpoint_name)
            manager.drop_fleet(backend.account_id, backend.region_name, endpoint_name)

    # -- the operations

    def resolve_spec(backend: Any, spec: dict[str, Any]
                     ) -> tuple[dict[str, Any], str, dict[str, str], int, int]:
        container: dict[str, Any] = dict(spec.get("Container") or {})
        if spec.get("ModelName"):
            model = backend._models.get(spec["ModelName"])
            if model is None:
                model_arn = arn_formatter("model", spec["ModelName"], backend.account_id,
                                          backend.region_name)
                raise ValidationError(message=f"Could not find model \"{model_arn}\".")
            primary = model.primary_container or (model.containers or [{}])[0]
            container = {**primary, **container}
        elif not container:
            raise ValidationError(message=(
                "Specification must contain either ModelName or Container (or "
                "BaseInferenceComponentName)."))
        image = str(container.get("Image") or "")
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        if manager.copy_concurrency is not None:
            concurrency = manager.copy_concurrency
        else:
            properties = serving_properties_from_s3(
                backend.account_id, container.get("ModelDataUrl") or container.get(
                    "ArtifactUrl"))
            concurrency = copy_concurrency_from(environment, image, properties)
        needs = ceil_accelerators(spec.get("ComputeResourceRequirements"))
        return dict(spec), image, environment, concurrency, needs

    def find(backend: Any, name: str) -> ComponentRecord:
        manager.advance()
        component = manager.component(backend.account_id, backend.region_name, name)
        if component is None:
            raise ValidationError(
                message=f"Could not find inference component \"{ic_arn(backend, name)}\".")
        return component

    def describe(component: ComponentRecord) -> dict[str, Any]:
        now = manager.clock.now()
        described: dict[str, Any] = {
            "InferenceComponentName": component.name,
            "InferenceComponentArn": component.arn,
            "EndpointName": component.endpoint_name,
            "EndpointArn": component.endpoint_arn,
            "VariantName": component.variant_name,
            "Specification": spec_fields(component),
            "RuntimeConfig": {"DesiredCopyCount": component.desired,
                              "CurrentCopyCount": len(component.serving(now))},
            "CreationTime": component.created,
            "LastModifiedTime": component.modified,
            "InferenceComponentStatus": component.status,
        }
        if component.failure_reason:
            described["FailureReason"] = component.failure_reason
        return described

    def create_inference_component(response: Any) -> Any:
        backend = response.sagemaker_backend
        name = response._get_param("InferenceComponentName")
        endpoint_name = response._get_param("EndpointName")
        with plane._lock:
            plane._advance(backend)
            manager.advance()
            if manager.component(backend.account_id, backend.region_name, name) is not None:
                raise ValidationError(message=(
                    f"Cannot create already existing inference component "
                    f"\"{ic_arn(backend, name)}\"."))
            endpoint = backend.endpoints.get(endpoint_name)
            if endpoint is None:
                backend.describe_endpoint(endpoint_name)  # raises "Could not find endpoint"
            if not manager.hosts_components(backend.account_id, backend.region_name,
                                            endpoint_name):
                raise ValidationError(message=NOT_SUPPORTED_MESSAGE)
            if endpoint.endpoint_status != "InService":
                raise ValidationError(message=(
                    f"Cannot create inference component {name}: endpoint \"{endpoint.arn}\" "
                    f"is {endpoint.endpoint_status}; wait until it is InService."))
            fleet_variant = manager.fleet_summary(backend.account_id, backend.region_name,
                                                  endpoint_name)["VariantName"]
            variant = response._get_param("VariantName") or fleet_variant
            if variant != fleet_variant:
                raise ValidationError(message=(
                    f"Variant {variant} does not exist on endpoint {endpoint_name} (its "
                    f"variant is {fleet_variant})."))
            spec, image, environment, concurrency, needs = resolve_spec(
                backend, response._get_param("Specification") or {})
            copies = int((response._get_param("RuntimeConfig") or {}).get("CopyCount", 1))
            now = manager.clock.now()
            stamp = manager.clock.wall(now)
            component = ComponentRecord(
                name=name, arn=ic_arn(backend, name), endpoint_name=endpoint_name,
                endpoint_arn=endpoint.arn, variant_name=variant, specification=spec,
                image=image, environment=environment, concurrency=concurrency, needs=needs,
                desired=copies, status="Creating", created=stamp, modified=stamp,
                load_since=now, gauge_start=now)
            manager.create(backend.account_id, backend.region_name, component)
            return ActionResult({"InferenceComponentArn": component.arn})

    def describe_inference_component(response: Any) -> Any:
        backend = response.sagemaker_backend
        with plane._lock:
            return ActionResult(describe(find(backend, response._get_param(
                "InferenceComponentName"))))

    def list_inference_components(response: Any) -> Any:
        backend = response.sagemaker_backend
        with plane._lock:
            manager.advance()
            items = manager.components(backend.account_id, backend.region_name)
        filters = {
            "EndpointNameEquals": lambda c, v: c.endpoint_name == v,
            "VariantNameEquals": lambda c, v: c.variant_name == v,
            "StatusEquals": lambda c, v: c.status == v,
            "NameContains": lambda c, v: v in c.name,
            "CreationTimeBefore": lambda c, v: c.created < v,
            "CreationTimeAfter": lambda c, v: c.created > v,
            "LastModifiedTimeBefore": lambda c, v: c.modified < v,
            "LastModifiedTimeAfter": lambda c, v: c.modified > v,
        }
        for param, keep in filters.items():
            value = response._get_param(param)
            if value is not None:
                if "Time" in param:
                    value = _as_datetime(value)
                items = [c for c in items if keep(c, value)]
        sort_by = response._get_param("SortBy") or "CreationTime"
        keys = {"Name": lambda c: c.name, "CreationTime": lambda c: c.created,
                "Status": lambda c: c.status}
        items.sort(key=keys.get(sort_by, keys["CreationTime"]),
                   reverse=(response._get_param("SortOrder") or "Descending") == "Descending")
        start = int(response._get_param("NextToken") or 0)
        size = int(response._get_param("MaxResults") or 10)
        page = items[start:start + size]
        result: dict[str, Any] = {"InferenceComponents": [{
            key: value for key, value in describe(c).items()
            if key in ("CreationTime", "InferenceComponentArn", "InferenceComponentName",
                       "EndpointArn", "EndpointName", "VariantName",
                       "InferenceComponentStatus", "LastModifiedTime")} for c in page]}
        if start + size < len(items):
            result["NextToken"] = str(start + size)
        return ActionResult(result)

    def require_updatable(backend: Any, component: ComponentRecord) -> None:
        if component.status not in ("InService", "Updating"):
            raise ValidationError(message=(
                f"Cannot update inference component \"{component.arn}\" while it is "
                f"{component.status}."))

    def update_inference_component(response: Any) -> Any:
        backend = response.sagemaker_backend
        with plane._lock:
            component = find(backend, response._get_param("InferenceComponentName"))
            require_updatable(backend, component)
            spec = response._get_param("Specification")
            if spec:
                manager.update_spec(backend.account_id, backend.region_name, component,
                                    resolve_spec(backend, spec))
            runtime = response._get_param("RuntimeConfig")
            if runtime and "CopyCount" in runtime:
                manager.set_desired(backend.account_id, backend.region_name, component,
                                    int(runtime["CopyCount"]), cause="UpdateInferenceComponent")
            return ActionResult({"InferenceComponentArn": component.arn})

    def update_inference_component_runtime_config(response: Any) -> Any:
        backend = response.sagemaker_backend
        with plane._lock:
            component = find(backend, response._get_param("InferenceComponentName"))
            require_updatable(backend, component)
            copies = int(response._get_param("DesiredRuntimeConfig")["CopyCount"])
            manager.set_desired(backend.account_id, backend.region_name, component, copies,
                                cause="UpdateInferenceComponentRuntimeConfig")
            return ActionResult({"InferenceComponentArn": component.arn})

    def delete_inference_component(response: Any) -> Any:
        backend = response.sagemaker_backend
        with plane._lock:
            component = find(backend, response._get_param("InferenceComponentName"))
            if component.status == "Creating":  # SageMaker refuses it; it keeps billing
                raise ValidationError(message=(
                    f"Cannot delete inference component \"{component.arn}\" while it is "
                    "Creating; wait until it is InService or Failed, then delete it."))
            if component.status != "Deleting":
                manager.delete(backend.account_id, backend.region_name, component)
            return EmptyResult()

    patch(backend_cls, "validate_production_variants", validate_production_variants)
    patch(backend_cls, "create_endpoint", create_endpoint)
    patch(backend_cls, "describe_endpoint", describe_endpoint)
    patch(backend_cls, "delete_endpoint", delete_endpoint)
    patch(SageMakerResponse, "create_endpoint_config", create_endpoint_config_action)
    handlers = {
        "create_inference_component": create_inference_component,
        "describe_inference_component": describe_inference_component,
        "list_inference_components": list_inference_components,
        "update_inference_component": update_inference_component,
        "update_inference_component_runtime_config": update_inference_component_runtime_config,
        "delete_inference_component": delete_inference_component,
    }
    for name in _OPERATIONS:
        patch(SageMakerResponse, name, handlers[name])
