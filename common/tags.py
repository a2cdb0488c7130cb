"""The tags that name the recipe and the run on everything a recipe creates.

Every resource a recipe notebook creates carries the same four labels -- the recipe (its slug,
e.g. ``llama-2-7b-chat-tgi``), the run (a timestamp, ``YYYYmmdd-HHMMSS``), the model id and the
container -- so that ``python -m common.cleanup`` can answer "what am I still paying for?" and
the inference notebook can check that an endpoint is its own recipe's. :func:`recipe_tags`
builds them once; :class:`RecipeTags` hands them out in the shape each API takes:

* :meth:`RecipeTags.sdk` -- the SageMaker Python SDK v3 resources' ``tags=[Tag(...)]``
  (``Model``, ``EndpointConfig``, ``Endpoint``, ``InferenceComponent``);
* :meth:`RecipeTags.aws` -- boto3's ``Tags=[{"Key", "Value"}]`` (SageMaker);
* :meth:`RecipeTags.s3_metadata` -- S3 user metadata for ``put_object(Metadata=...)`` and
  ``upload_file(ExtraArgs={"Metadata": ...})``;
* :attr:`RecipeTags.marker` -- a short text for fields that only take text (a CloudWatch
  alarm's ``AlarmDescription``).

Why not real tags on S3 objects and alarms: with ``AmazonSageMakerFullAccess`` -- the policy
SageMaker Studio's execution role usually has -- tagging on create is refused for both.
``PutObject`` with ``Tagging`` needs ``s3:PutObjectTagging`` and ``PutMetricAlarm`` with
``Tags`` needs ``cloudwatch:TagResource`` (botocore's ``cloudwatch`` service model says so);
the policy grants neither, while ``sagemaker:*`` covers SageMaker's own ``AddTags``. User
metadata needs only ``s3:PutObject`` and is read back with ``HeadObject``. Scaling policies
cannot be tagged at all; they, the scalable target and the alarm are found through the
inference component they act on (its name is in their resource id and dimension).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTAINER_TAG",
    "MODEL_TAG",
    "RECIPE_TAG",
    "RUN_ID_PATTERN",
    "RUN_TAG",
    "RecipeTags",
    "new_run_id",
    "read_recipe_tags",
    "recipe_tags",
]

RECIPE_TAG = "llama-recipes-recipe"
"""The tag key holding the recipe's slug (e.g. ``llama-2-7b-chat-tgi``)."""
RUN_TAG = "llama-recipes-run"
"""The tag key holding the run id (``YYYYmmdd-HHMMSS``)."""
MODEL_TAG = "llama-recipes-model"
"""The tag key holding the Hugging Face model id."""
CONTAINER_TAG = "llama-recipes-container"
"""The tag key holding the container (``tgi`` or ``lmi``)."""
RUN_ID_PATTERN = r"\d{8}-\d{6}"
"""What :func:`new_run_id` returns: the run's start, ``YYYYmmdd-HHMMSS``."""

# Keys and values work as SageMaker tags (letters, digits, spaces and _ . : / = + - @) and as
# S3 user-metadata names (HTTP header names: no ':' or '/'), hence hyphens only in the keys.
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_VALUE = re.compile(r"[\w.:/=+\-@ ]{0,256}")
_MARKER = re.compile(r"\[llama-recipes recipe=(?P<recipe>[^\s\]]+) run=(?P<run>[^\s\]]+)"
                     r"(?: model=(?P<model>[^\s\]]+))?(?: container=(?P<container>[^\s\]]+))?\]")


def new_run_id(now: float | None = None) -> str:
    """Return a run id: the local time ``YYYYmmdd-HHMMSS`` (``now``: seconds since the epoch)."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


@dataclass(frozen=True)
class RecipeTags:
    """The recipe and run labels of one run, in the shapes the APIs take.

    Attributes:
        recipe: the recipe's slug, e.g. ``llama-2-7b-chat-tgi``.
        run: the run id, e.g. ``20261205-101500``.
        model_id: the Hugging Face model id ("" when not given).
        container: ``"tgi"`` or ``"lmi"`` ("" when not given).
    """

    recipe: str
    run: str
    model_id: str = ""
    container: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return ``{tag key: value}`` (keys whose value is empty left out)."""
        pairs = {RECIPE_TAG: self.recipe, RUN_TAG: self.run, MODEL_TAG: self.model_id,
                 CONTAINER_TAG: self.container}
        return {key: value for key, value in pairs.items() if value}

    def aws(self) -> list[dict[str, str]]:
        """Return boto3's ``Tags=[{"Key": ..., "Value": ...}]`` (SageMaker's create calls)."""
        return [{"Key": key, "Value": value} for key, value in self.as_dict().items()]

    def sdk(self) -> list[Any]:
        """Return ``[sagemaker.core.shapes.Tag(key=..., value=...)]`` for the SDK v3 resources.

        Raises:
            ImportError: the SageMaker Python SDK v3 is not installed.
        """
        from sagemaker.core.shapes import Tag

        return [Tag(key=key, value=value) for key, value in self.as_dict().items()]

    def s3_metadata(self) -> dict[str, str]:
        """Return S3 user metadata (``Metadata=`` of ``put_object`` / ``upload_file``)."""
        return self.as_dict()

    @property
    def marker(self) -> str:
        """A text form for description fields, e.g. ``[llama-recipes recipe=x run=y]``."""
        text = f"[llama-recipes recipe={self.recipe} run={self.run}"
        if self.model_id:
            text += f" model={self.model_id}"
        if self.container:
            text += f" container={self.container}"
        return text + "]"

    def __str__(self) -> str:
        return f"recipe {self.recipe}, run {self.run}"


def recipe_tags(recipe: str, run: str | None = None, *, model_id: str = "",
                container: str = "") -> RecipeTags:
    """Return the tags of one run of ``recipe``.

    Args:
        recipe: the recipe's slug: lower-case letters, digits and hyphens, e.g.
            ``llama-2-7b-chat-tgi`` (the scale notebooks add ``-scale``).
        run: the run id (default: :func:`new_run_id`, now).
        model_id: the Hugging Face model id the run deploys.
        container: ``"tgi"`` or ``"lmi"``.

    Raises:
        ValueError: a recipe, run, model id or container that no tag could hold.
    """
    run = new_run_id() if run is None else run
    if not isinstance(recipe, str) or not _SLUG.fullmatch(recipe):
        raise ValueError(f"recipe must be a slug of lower-case letters, digits and hyphens "
                         f"(at most 63), e.g. 'llama-2-7b-chat-tgi'; got {recipe!r}")
    if not isinstance(run, str) or not _RUN.fullmatch(run):
        raise ValueError(f"run must be letters, digits and hyphens (at most 32), e.g. "
                         f"'20261205-101500'; got {run!r}")
    for name, value in (("model_id", model_id), ("container", container)):
        if not isinstance(value, str) or not _VALUE.fullmatch(value) or "]" in value:
            raise ValueError(f"{name} cannot be a tag value: {value!r}")
    return RecipeTags(recipe, run, model_id, container)


def read_recipe_tags(tags: Iterable[Mapping[str, str]] | Mapping[str, str] | str | None
                     ) -> RecipeTags | None:
    """Read the recipe labels back from a resource, or return ``None`` when it has none.

    Args:
        tags: a boto3 tag list (``[{"Key", "Value"}]``, as ``ListTags`` returns it), a
            mapping (S3 user metadata), or a text holding :attr:`RecipeTags.marker` (an
            alarm's description).

    Returns:
        The :class:`RecipeTags`, or ``None`` when the recipe or the run label is missing.
    """
    if tags is None:
        return None
    if isinstance(tags, str):
        found = _MARKER.search(tags)
        if found is None:
            return None
        return RecipeTags(found["recipe"], found["run"], found["model"] or "",
                          found["container"] or "")
    if isinstance(tags, Mapping):
        values = {str(key).lower(): str(value) for key, value in tags.items()}
    else:
        values = {str(tag.get("Key", "")).lower(): str(tag.get("Value", "")) for tag in tags}
    recipe, run = values.get(RECIPE_TAG), values.get(RUN_TAG)
    if not recipe or not run:
        return None
    return RecipeTags(recipe, run, values.get(MODEL_TAG, ""), values.get(CONTAINER_TAG, ""))


def resource_recipe_tags(sagemaker_client: Any, arn: str) -> RecipeTags | None:
    """Read a SageMaker resource's recipe labels (``ListTags``), or ``None`` when it has none.

    Raises:
        botocore.exceptions.ClientError: as ``ListTags`` raises it (e.g. the resource is gone:
            :func:`common.endpoints.is_not_found` tells).
    """
    return read_recipe_tags(sagemaker_client.list_tags(ResourceArn=arn).get("Tags", []))
