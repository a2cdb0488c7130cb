"""The six scale notebooks say what issue 13 asks, in their code (read, not run).

``test_scale_notebook_runs.py`` checks what they did against the stand-in.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from recipe_notebooks import recipe_of

from common.notebooks import generator
from common.recipe_state import state_key

ROOT = Path(__file__).resolve().parents[1]
SCALE = [generator.scale_path(c, s, root=ROOT) for c, s in generator.RECIPES]


def _code(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _tree(path: Path) -> ast.Module:
    source = "\n".join(TransformerManager().transform_cell(cell) for cell in _code(path))
    return ast.parse(source)


def _calls(tree: ast.AST, suffix: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith(suffix)]


def _kw(call: ast.Call) -> dict[str, str]:
    return {k.arg: ast.unparse(k.value) for k in call.keywords if k.arg}


def test_there_is_one_scale_notebook_per_recipe():
    assert [p.name for p in SCALE] == [
        "3-scale-llama-2-7b-chat-hf-tgi.ipynb", "3-scale-llama-2-13b-chat-hf-tgi.ipynb",
        "3-scale-llama-2-70b-chat-hf-tgi.ipynb", "3-scale-llama-2-7b-chat-lmi.ipynb",
        "3-scale-llama-2-13b-chat-lmi.ipynb", "3-scale-llama-2-70b-chat-lmi.ipynb"]
    assert all(p.exists() for p in SCALE)


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_every_code_cell_follows_a_markdown_sentence(path):
    cells = nbformat.read(path, as_version=4).cells
    for before, cell in itertools.pairwise(cells):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown" and before.source.strip(), cell.source[:60]
    assert all(not c.get("outputs") for c in cells if c.cell_type == "code")


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_the_endpoint_is_shaped_for_inference_components(path):
    tree = _tree(path)
    (config,) = _calls(tree, "EndpointConfig.create")
    assert "execution_role_arn" in _kw(config)
    (variant,) = _calls(tree, "ProductionVariant")
    assert "model_name" not in _kw(variant)
    (managed,) = _calls(tree, "ProductionVariantManagedInstanceScaling")
    assert _kw(managed) == {"status": "'ENABLED'",
                            "min_instance_count": "scaling.min_instances",
                            "max_instance_count": "scaling.max_instances"}
    assert "LEAST_OUTSTANDING_REQUESTS" in ast.unparse(variant)
    (component,) = _calls(tree, "InferenceComponent.create")
    text = ast.unparse(component)
    for needed in ("number_of_accelerator_devices_required=scaling.accelerators_per_copy",
                   "min_memory_required_in_mb=scaling.memory_per_copy_mb",
                   "container_startup_health_check_timeout_in_seconds",
                   "model_data_download_timeout_in_seconds", "copy_count=1"):
        assert needed in text
    assert _calls(tree, "common.wait_for_inference_component")


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_it_streams_sweeps_and_scales_as_aws_documents(path):
    tree = _tree(path)
    (boto_stream,) = _calls(tree, "runtime.invoke_endpoint_with_response_stream")
    assert _kw(boto_stream)["InferenceComponentName"] == "inference_component_name"
    streams = _calls(tree, "common.invoke_stream")
    assert all(_kw(c)["inference_component"] == "inference_component_name" for c in streams)
    assert any("wait_for_capacity" in _kw(c) for c in streams)
    (sweep,) = _calls(tree, "common.bench.run_sweep")
    assert "[1, 2, 4, 8, 16, 32]" in "\n".join(_code(path))
    assert _kw(sweep)["inference_component"] == "inference_component_name"
    source = "\n".join(_code(path))
    for needed in ('"sagemaker:inference-component:DesiredCopyCount"',
                   "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution",
                   '"TargetValue": float(target.concurrency)', '"StepScaling"',
                   '"NoCapacityInvocationFailures"', '"AWS/SageMaker"',
                   '"InferenceComponentName"', "MinCapacity=0",
                   "MaxCapacity=scaling.max_copies"):
        assert needed in source, needed
    assert _calls(tree, "common.choose_target") and _calls(tree, "common.plot_capacity")
    assert _calls(tree, "common.idle_cost_per_day")
    assert len(_calls(tree, "common.watch_scaling")) == 2


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_the_clean_up_is_guarded_and_names_everything(path):
    last = _code(path)[-1]
    assert 'CLEAN_UP = os.environ.get("RECIPES_CLEAN_UP") == "1"' in last
    tree = ast.parse(TransformerManager().transform_cell(last))
    call = _kw(_calls(tree, "common.delete_scaling_resources")[0])
    # Every name comes from what was stored before anything was created.
    for name in ("inference_component", "endpoint_name", "endpoint_config_name", "model_name",
                 "alarm_names", "policy_names", "s3_uri"):
        assert call[name] == f"stored['{name}']", name
    key = _state_key(path)
    assert last.count(f"%store -r {key}") == 1 and f"{key} = None" in last


def _state_key(path: Path) -> str:
    """The scale notebook's own ``%store`` key (a recipe of its own: ``<slug>-scale``)."""
    return state_key(f"{recipe_of(path).slug}-scale")


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_every_name_is_defined_and_stored_before_the_first_create(path):
    sources = _code(path)
    (names,) = [i for i, s in enumerate(sources) if s.startswith("RUN_ID = ")]
    (stored,) = [i for i, s in enumerate(sources) if f"\n%store {_state_key(path)}" in s]
    first_create = min(i for i, s in enumerate(sources)
                       if any(c in s for c in ("Model.create(", "copy_weights_to_s3(",
                                               "put_object(", "register_scalable_target(")))
    assert names < stored < first_create
    defined = {target.id for node in ast.walk(ast.parse(sources[names]))
               if isinstance(node, ast.Assign) for target in node.targets
               if isinstance(target, ast.Name)}
    assert {"endpoint_name", "model_name", "endpoint_config_name", "inference_component_name",
            "resource_id", "dimension", "TARGET_TRACKING_POLICY", "SCALE_FROM_ZERO_POLICY",
            "NO_CAPACITY_ALARM", "tags"} <= defined
    later = "\n".join(sources[names + 1:])
    for name in ("TARGET_TRACKING_POLICY", "SCALE_FROM_ZERO_POLICY", "NO_CAPACITY_ALARM",
                 "resource_id"):
        assert f"\n{name} = " not in later and not later.startswith(f"{name} = "), name
    tree = _tree(path)
    for create in ("Model.create", "EndpointConfig.create", "Endpoint.create",
                   "InferenceComponent.create"):
        assert _kw(_calls(tree, create)[0])["tags"] == "tags.sdk()", create
    alarm = _kw(_calls(tree, "put_metric_alarm")[0])
    assert "tags.marker" in alarm["AlarmDescription"]


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_the_background_load_has_a_client_pool_that_fits_it(path):
    tree = _tree(path)
    (client,) = [c for c in _calls(tree, "common.runtime_client")
                 if "max_pool_connections" in _kw(c)]
    assert _kw(client)["max_pool_connections"] == "LOAD_STREAMS"
    (load,) = _calls(tree, "common.BackgroundLoad")
    assert ast.unparse(load.args[1]) == "LOAD_STREAMS"
    (invoke,) = [c for c in _calls(tree, "common.invoke_stream")
                 if ast.unparse(c.args[0]) == "load_runtime"]
    assert invoke


DEPLOY = [generator.recipe_paths(c, s, root=ROOT)[0] for c, s in generator.RECIPES]


@pytest.mark.parametrize("path", DEPLOY + SCALE, ids=lambda p: p.name)
def test_every_endpoint_names_the_host_ami_its_image_needs(path):
    # Issue 18: no recipe relies on the instance family's default NVIDIA driver.
    tree = _tree(path)
    (variant,) = _calls(tree, "ProductionVariant")
    assert _kw(variant)["inference_ami_version"] == "inference_ami_version"
    (chosen,) = _calls(tree, "common.inference_ami_version")
    assert [ast.unparse(a) for a in chosen.args] == ["image", "preset.instance_type"]


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_the_scale_notebook_follows_the_aws_rules_issue_18_names(path):
    tree = _tree(path)
    # The pre-flight checks the quota for the most instances the endpoint may run.
    (check,) = _calls(tree, "common.preflight")
    assert _kw(check)["instance_count"] == "scaling.max_instances"
    # Scaling activities come 50 to a page: read them all.
    (pages,) = _calls(tree, "get_paginator")
    assert [ast.unparse(a) for a in pages.args] == ["'describe_scaling_activities'"]
    # The no-capacity alarm as AWS's scale-to-zero guide sets it: Sum over 60 seconds.
    (alarm,) = _calls(tree, "cloudwatch_client.put_metric_alarm")
    assert (_kw(alarm)["Statistic"], _kw(alarm)["Period"]) == ("'Sum'", "60")
    assert _kw(alarm)["ComparisonOperator"] == "'GreaterThanOrEqualToThreshold'"
