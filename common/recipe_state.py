"""What a deploy notebook hands to its inference notebook, per recipe, and the check on it.

``%store`` keeps values per IPython profile, shared by every notebook of the user, so each
recipe stores its names under its own key (:func:`state_key`: ``recipe_<slug>``), as one
dict, **before** anything is created -- a failed or interrupted deploy stays reachable by its
clean-up -- and again after the wait. The inference notebook restores its own key and calls
:func:`check_recipe_endpoint`, which makes sure the endpoint exists, is ``InService`` and is
this recipe's (its tags name the same recipe, model and container, :mod:`common.tags`), and
otherwise says which notebook or cell to run.

The stored dict (plain values and the :class:`common.Preset`): ``recipe``, ``run``, ``region``,
``status`` (``"creating"`` until the wait ends, then the endpoint's status), ``preset``,
``endpoint_name``, ``endpoint_config_name``, ``model_name``, ``s3_uri`` (the run's own S3
prefix, or ``None``; the LMI weights' shared copy is never deleted with a run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import RecipeStateError

__all__ = ["check_recipe_endpoint", "state_key"]

_REQUIRED = ("recipe", "run", "region", "endpoint_name")


def state_key(recipe: str) -> str:
    """Return the ``%store`` key (a Python name) of a recipe: ``recipe_`` + its slug with
    ``_`` for ``-``, e.g. ``recipe_llama_2_7b_chat_tgi``."""
    return "recipe_" + recipe.replace("-", "_")


def _describe(sm: Any, endpoint_name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    from common.endpoints import is_not_found

    try:
        return dict(sm.describe_endpoint(EndpointName=endpoint_name))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def check_recipe_endpoint(
    stored: Mapping[str, Any] | None,
    *,
    recipe: str,
    container: str,
    model_id: str,
    deploy_notebook: str,
    sagemaker_client: Any = None,
) -> dict[str, Any]:
    """Check what ``%store -r`` restored for ``recipe`` against the live endpoint.

    Args:
        stored: the restored dict (``None`` when nothing was stored).
        recipe: the recipe's slug, e.g. ``llama-2-7b-chat-tgi``.
        container / model_id: what the endpoint must serve.
        deploy_notebook: the notebook to run when something is missing (named in messages).
        sagemaker_client: a boto3 ``sagemaker`` client (default: one in the stored region).

    Returns:
        ``stored`` as a dict, once the endpoint exists, is ``InService`` and is tagged with
        this recipe, model and container.

    Raises:
        RecipeStateError: nothing stored; another recipe's names; the endpoint is gone,
            failed, not ready yet, untagged or another recipe's. The message says what to run.
        botocore.exceptions.ClientError: the SageMaker calls failed otherwise (AccessDenied).
    """
    key = state_key(recipe)
    run_deploy = f"run {deploy_notebook} (in this folder) first"
    if not isinstance(stored, Mapping):
        raise RecipeStateError(
            f"Nothing is stored for the recipe {recipe}: {run_deploy}. It stores the names of "
            f"what it creates under `%store {key}` before creating anything, and this notebook "
            f"reads them back with `%store -r {key}`.")
    missing = [name for name in _REQUIRED if not stored.get(name)]
    if missing:
        raise RecipeStateError(f"`%store -r {key}` restored a dict without {missing}: "
                               f"{run_deploy}.")
    if stored["recipe"] != recipe:
        raise RecipeStateError(
            f"`{key}` holds the names of the recipe {stored['recipe']}, not {recipe}: "
            f"{run_deploy}.")
    endpoint_name = str(stored["endpoint_name"])
    run = f"run {stored['run']}"
    if sagemaker_client is None:
        import boto3

        sagemaker_client = boto3.client("sagemaker", region_name=str(stored["region"]))
    described = _describe(sagemaker_client, endpoint_name)
    if described is None:
        how = ("the deploy stopped before the endpoint was up"
               if stored.get("status") == "creating" else "it was deleted")
        raise RecipeStateError(
            f"The endpoint {endpoint_name} ({run} of {recipe}) does not exist in "
            f"{stored['region']} ({how}): run {deploy_notebook} again.")
    status = str(described.get("EndpointStatus"))
    if status == "Failed":
        raise RecipeStateError(
            f"The endpoint {endpoint_name} ({run} of {recipe}) failed: "
            f"{described.get('FailureReason') or '(no FailureReason)'}. Run the clean-up cell "
            f"at the end of {deploy_notebook} (it deletes what that run created), fix the "
            "cause, and deploy again.")
    if status in ("Creating", "Updating", "SystemUpdating"):
        raise RecipeStateError(
            f"The endpoint {endpoint_name} ({run} of {recipe}) is still {status}: wait for it "
            f"-- run the wait cell of {deploy_notebook} again, or "
            f"common.wait_for_endpoint({endpoint_name!r}) -- then run this cell again.")
    if status != "InService":
        raise RecipeStateError(
            f"The endpoint {endpoint_name} ({run} of {recipe}) is {status}: run "
            f"{deploy_notebook} again.")
    _check_tags(sagemaker_client, described, endpoint_name, recipe=recipe,
                container=container, model_id=model_id, deploy_notebook=deploy_notebook)
    return dict(stored)


def _check_tags(sm: Any, described: Mapping[str, Any], endpoint_name: str, *, recipe: str,
                container: str, model_id: str, deploy_notebook: str) -> None:
    from common.tags import resource_recipe_tags

    tags = resource_recipe_tags(sm, described["EndpointArn"])
    if tags is None:
        raise RecipeStateError(
            f"The endpoint {endpoint_name} carries no recipe tags, so it cannot be checked "
            f"as the {recipe} recipe's (an older deploy notebook made it?): run "
            f"{deploy_notebook} again, and delete the old endpoint (python -m common.cleanup "
            "lists what the recipes created; the console deletes the rest).")
    found = {"recipe": tags.recipe, "model": tags.model_id, "container": tags.container}
    wanted = {"recipe": recipe, "model": model_id, "container": container}
    wrong = [f"{what} {found[what] or '(none)'} instead of {wanted[what]}"
             for what in wanted if found[what] != wanted[what]]
    if wrong:
        raise RecipeStateError(
            f"The endpoint {endpoint_name} is not this notebook's: its tags say "
            f"{'; '.join(wrong)}. Run {deploy_notebook} of this folder to deploy the "
            f"{recipe} recipe's own endpoint.")
