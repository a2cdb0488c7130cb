"""Tags on the stand-in's inference components (``CreateInferenceComponent(Tags=...)``,
``ListTags`` / ``AddTags`` / ``DeleteTags`` on their ARNs).

moto keeps the tags of the SageMaker resources it knows (models, endpoint configurations,
endpoints, ...), but its ``_get_resource_from_arn`` has no ``inference-component`` kind (it
fails with an ``AttributeError``), and the components themselves are ours
(:mod:`common.local.components_api`). This extension keeps their tags beside moto's: set at
creation, read and changed through the same three operations, gone with the component. An ARN
of a component that does not exist answers SageMaker's ``ValidationException`` "Could not
find ...". The recipes tag every resource they create (:mod:`common.tags`), so
``python -m common.cleanup`` and the inference notebook's check read them here.

Sources: botocore's ``sagemaker`` service model (``CreateInferenceComponentInput.Tags``,
``ListTags``, ``AddTags``, ``DeleteTags``); moto 5.2.5 ``sagemaker/models.py``
(``_get_resource_from_arn``, ``list_tags`` with its paginator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["install_tagging"]


def install_tagging(plane: Any, manager: Any,
                    patch: Callable[[object, str, object], None]) -> None:
    """Patch moto's SageMaker so inference components take and report tags.

    A control-plane extension, listed after the scaling model's (which installs the
    component API): ``ControlPlane(extensions=[..., lambda plane, patch:
    install_tagging(plane, scaling.manager, patch)])``.

    Args:
        plane: the control plane (its lock guards the tag store).
        manager: the inference components' :class:`~common.local.components.ComponentManager`.
        patch: the control plane's reversible patch function.
    """
    from moto.sagemaker import models
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    backend_cls = models.SageMakerModelBackend
    original = {name: getattr(backend_cls, name) for name in
                ("list_tags", "add_tags", "delete_tags")}
    original_create = SageMakerResponse.create_inference_component
    store: dict[str, list[dict[str, str]]] = {}

    def is_component(arn: str) -> bool:
        return ":inference-component/" in str(arn)

    def existing(backend: Any, arn: str) -> str:
        name = str(arn).rsplit("/", 1)[-1]
        manager.advance()
        component = manager.component(backend.account_id, backend.region_name, name)
        if component is None or component.arn != arn:
            raise ValidationError(message=f"Could not find inference-component with name {name}")
        return str(component.arn)

    def merged(current: list[dict[str, str]], added: list[dict[str, str]]
               ) -> list[dict[str, str]]:
        keys = {tag["Key"] for tag in added}
        return [tag for tag in current if tag["Key"] not in keys] + [dict(t) for t in added]

    def create_inference_component(response: Any) -> Any:
        result = original_create(response)
        backend = response.sagemaker_backend
        with plane._lock:
            component = manager.component(backend.account_id, backend.region_name,
                                          response._get_param("InferenceComponentName"))
            # A new component starts with its own tags only (not a deleted namesake's).
            store[str(component.arn)] = merged([], response._get_param("Tags") or [])
        return result

    def list_tags(backend: Any, arn: str, **kwargs: Any) -> Any:
        if not is_component(arn):
            return original["list_tags"](backend, arn=arn, **kwargs)
        with plane._lock:
            arn = existing(backend, arn)
            return [dict(tag) for tag in store.get(arn, [])], None

    def add_tags(backend: Any, arn: str, tags: list[dict[str, str]]) -> Any:
        if not is_component(arn):
            return original["add_tags"](backend, arn, tags)
        with plane._lock:
            arn = existing(backend, arn)
            store[arn] = merged(store.get(arn, []), tags)
            return store[arn]

    def delete_tags(backend: Any, arn: str, tag_keys: list[str]) -> None:
        if not is_component(arn):
            return original["delete_tags"](backend, arn, tag_keys)
        with plane._lock:
            arn = existing(backend, arn)
            store[arn] = [tag for tag in store.get(arn, []) if tag["Key"] not in tag_keys]
        return None

    patch(SageMakerResponse, "create_inference_component", create_inference_component)
    patch(backend_cls, "list_tags", list_tags)
    patch(backend_cls, "add_tags", add_tags)
    patch(backend_cls, "delete_tags", delete_tags)
