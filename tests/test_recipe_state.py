"""common.check_recipe_endpoint against the stand-in: what the inference notebook restored is
its own recipe's live endpoint, or the error says which notebook or cell to run."""

from __future__ import annotations

import pytest
from recipe_resources import HOST_AMI, MODEL_ID, deploy_run, new_tags

import common
from common.recipe_state import state_key

DEPLOY = "1-deploy-llama-2-7b-chat-hf-tgi.ipynb"


def _check(stored, sm, **overrides):
    options = {"recipe": "state-test-tgi", "container": "tgi", "model_id": MODEL_ID,
               "deploy_notebook": DEPLOY, "sagemaker_client": sm, **overrides}
    return common.check_recipe_endpoint(stored, **options)


def _stored(run, region, **changes):
    return {"recipe": run.tags.recipe, "run": run.tags.run, "region": region,
            "status": "InService", "endpoint_name": run.name,
            "endpoint_config_name": run.name, "model_name": run.name, "s3_uri": None,
            **changes}


@pytest.fixture(scope="module")
def sm(local_stack):
    return local_stack.client("sagemaker")


@pytest.fixture(scope="module")
def healthy(local_stack, sm):
    run = deploy_run(sm, local_stack.role_arn, new_tags("state-test-tgi"))
    yield run
    common.delete_endpoint_resources(run.name, sagemaker_client=sm)


def test_the_key_is_the_recipes_own():
    assert state_key("llama-2-7b-chat-tgi") == "recipe_llama_2_7b_chat_tgi"
    assert state_key("llama-2-7b-chat-lmi") != state_key("llama-2-7b-chat-tgi")


def test_its_own_in_service_endpoint_passes(local_stack, sm, healthy):
    stored = _stored(healthy, local_stack.region)
    assert _check(stored, sm) == stored


def test_nothing_stored_says_to_run_the_deploy_notebook(sm):
    with pytest.raises(common.RecipeStateError) as caught:
        _check(None, sm)
    message = str(caught.value)
    assert f"run {DEPLOY} (in this folder) first" in message
    assert "%store -r recipe_state_test_tgi" in message


def test_another_recipes_names_are_refused(local_stack, sm, healthy):
    with pytest.raises(common.RecipeStateError, match="holds the names of the recipe "
                                                      "state-test-tgi, not state-test-lmi"):
        _check(_stored(healthy, local_stack.region), sm, recipe="state-test-lmi",
               container="lmi")


def test_an_endpoint_of_another_container_or_model_is_refused(local_stack, sm, healthy):
    stored = _stored(healthy, local_stack.region)
    with pytest.raises(common.RecipeStateError) as caught:
        _check(stored, sm, container="lmi")
    assert "its tags say container tgi instead of lmi" in str(caught.value)
    with pytest.raises(common.RecipeStateError) as caught:
        _check(stored, sm, model_id="meta-llama/Llama-2-13b-chat-hf")
    assert ("model meta-llama/Llama-2-7b-chat-hf instead of meta-llama/Llama-2-13b-chat-hf"
            in str(caught.value))
    assert f"Run {DEPLOY} of this folder" in str(caught.value)


def test_an_endpoint_that_is_gone_says_why_and_what_to_run(local_stack, sm):
    run = deploy_run(sm, local_stack.role_arn, new_tags("state-test-tgi"), stop_after="config")
    try:
        with pytest.raises(common.RecipeStateError) as caught:
            _check(_stored(run, local_stack.region, status="creating"), sm)
        message = str(caught.value)
        assert "does not exist" in message and "the deploy stopped before" in message
        assert f"run {DEPLOY} again" in message
    finally:
        common.delete_endpoint_resources(run.name, endpoint_config_name=run.name,
                                         model_name=run.name, sagemaker_client=sm)


def test_a_failed_or_creating_endpoint_says_which_cell_to_run(local_stack, sm):
    tags = new_tags("state-test-tgi")
    local_stack.fail_endpoint(f"{tags.recipe}-{tags.run}", "The primary container failed.")
    failed = deploy_run(sm, local_stack.role_arn, tags)
    creating = deploy_run(sm, local_stack.role_arn, new_tags("state-test-tgi"), wait=False)
    try:
        with pytest.raises(common.RecipeStateError) as caught:
            _check(_stored(failed, local_stack.region), sm)
        assert "failed: The primary container failed." in str(caught.value)
        assert f"Run the clean-up cell at the end of {DEPLOY}" in str(caught.value)
        with pytest.raises(common.RecipeStateError) as caught:
            _check(_stored(creating, local_stack.region), sm)
        assert "is still Creating" in str(caught.value)
        assert f"common.wait_for_endpoint({creating.name!r})" in str(caught.value)
    finally:
        local_stack.clear_faults()
        for run in (failed, creating):
            common.delete_endpoint_resources(run.name, sagemaker_client=sm)


def test_an_untagged_endpoint_is_not_taken_for_the_recipes(local_stack, sm):
    name = "state-test-untagged"
    sm.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                    PrimaryContainer={"Image": "tgi"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.g5.2xlarge", "InferenceAmiVersion": HOST_AMI}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        common.wait_for_endpoint(name, sagemaker_client=sm, progress=False)
        stored = {"recipe": "state-test-tgi", "run": "x", "region": local_stack.region,
                  "endpoint_name": name}
        with pytest.raises(common.RecipeStateError, match="carries no recipe tags"):
            _check(stored, sm)
    finally:
        common.delete_endpoint_resources(name, sagemaker_client=sm)
