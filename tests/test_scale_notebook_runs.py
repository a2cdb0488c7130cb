"""What the six scale notebooks did against the local stand-in.

Each notebook is taken as nbval ran it earlier in this session (``notebook_capture``); when
nbval did not run it (this file run alone), it is executed here with nbclient. The tests read
the stand-in's request log, its scaling events and moto's state: every request named the
component, copies rose above one under load and reached zero when idle, the request after
zero met "no capacity", waited and streamed its full answer, and after the clean-up nothing
is left (component, endpoint, config, model, scalable target, policies, alarm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import nbformat
import pytest
from botocore.exceptions import ClientError
from notebook_capture import (
    cell_stdout,
    code_cell,
    execute_notebook,
    executed_notebook,
    request_body,
)
from recipe_notebooks import recipe_id
from test_notebook_runs import long_output_lines

from common.local.backends import GenerationRequest
from common.notebooks.generator import RECIPES, scale_path
from common.scaling import COPY_COUNT_DIMENSION

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ScaleRun:
    """One scale notebook as it ran: the executed notebook, its names and what the stand-in saw."""

    container: str
    notebook: nbformat.NotebookNode
    endpoint_name: str
    component: str
    requests: list[dict[str, Any]]
    events: list[dict[str, Any]]
    stack: Any


_RUNS: dict[tuple[str, str], ScaleRun] = {}


@pytest.fixture(params=RECIPES, ids=lambda r: recipe_id(*r))  # conftest.py reads the id
def scale_run(request, local_stack) -> ScaleRun:
    """The scale notebook of one recipe, executed (by nbval earlier in the session, or here)."""
    container, size = request.param
    if request.param not in _RUNS:
        path = scale_path(container, size, root=ROOT)
        notebook = executed_notebook(path) or execute_notebook(path)
        endpoint_name, component = cell_stdout(
            code_cell(notebook, "RUN_ID = ")).split()
        requests = [r for r in local_stack.requests() if r["endpoint"] == endpoint_name]
        events = [e for e in local_stack.scaling_events()
                  if e.get("resource") in {component, endpoint_name,
                                           f"inference-component/{component}"}]
        _RUNS[request.param] = ScaleRun(container, notebook, endpoint_name, component, requests,
                                        events, local_stack)
    return _RUNS[request.param]


def _copies(run: ScaleRun) -> list[int]:
    return [e["current"] for e in run.events
            if e.get("resource") == run.component and "current" in e]


def test_every_request_named_the_component(scale_run):
    assert len(scale_run.requests) > 100, "the sweep and the load sent many requests"
    assert {r["inference_component"] for r in scale_run.requests} == {scale_run.component}
    assert all(r["operation"] == "InvokeEndpointWithResponseStream"
               for r in scale_run.requests)


def test_copies_rose_above_one_under_load_and_reached_zero_when_idle(scale_run):
    copies = _copies(scale_run)
    peak = copies.index(max(copies))
    assert max(copies) >= 2, f"copies never rose above one: {copies}"
    assert 0 in copies[peak:], f"copies never reached zero after the peak: {copies}"
    printed = cell_stdout(code_cell(scale_run.notebook, "scale_in = common.watch_scaling("))
    assert re.search(r"^done after \d\d:\d\d: t\+\d\d:\d\d  copies 0 ", printed, re.M), printed
    activities = cell_stdout(code_cell(scale_run.notebook, "pages = "))
    assert "Setting desired copy count to 0." in activities


def test_the_request_after_zero_waited_and_streamed_its_full_answer(scale_run):
    cell = code_cell(scale_run.notebook, "started = time.perf_counter()\ntokens = common."
                                          "invoke_stream(\n    runtime, endpoint_name, payload,"
                                          f' container="{scale_run.container}",\n    '
                                          "inference_component=inference_component_name, "
                                          "wait_for_capacity=")
    printed = cell_stdout(cell)
    assert "No capacity:" in printed and "a copy is serving after" in printed
    rejected = [r for r in scale_run.requests if r["status"] == 400]
    assert rejected and all(r["outcome"] == "rejected" for r in rejected)
    last = scale_run.requests[-1]
    assert last["status"] == 200 and last["outcome"].startswith("completed")
    body = request_body(last)
    reply = scale_run.stack.backend.answer_for(GenerationRequest(prompt=body["inputs"]))
    head, _, rest = printed.split("streaming the answer.\n", 1)[1].partition("\n")
    assert head == "The first request after zero"
    answer, _, summary = rest.rstrip("\n").rpartition("\n")
    assert answer == reply and reply.strip()
    assert summary.startswith("TTFT ")


def test_the_sweep_chose_a_target_and_priced_it(scale_run):
    reason = cell_stdout(code_cell(scale_run.notebook, "TTFT_LIMIT_S = None"))
    assert re.match(r"Target \d+ concurrent streams per copy: the highest level", reason)
    cost = cell_stdout(code_cell(scale_run.notebook, "at_target = "))
    assert re.search(r"Idle for a day: \$[\d,.]+ with 1 instance kept running, \$0\.00 with "
                     r"scale-to-zero", cost)
    assert re.search(r"\$[\d.]+ per 1M output tokens", cost)


def test_after_clean_up_nothing_is_left(scale_run):
    printed = cell_stdout(scale_run.notebook.cells[-1])
    for line in ("alarm", "scaling policy", "scalable target", "inference component",
                 "endpoint", "endpoint config", "model"):
        assert re.search(rf"^{line} \S+: (deleted|deregistered)$", printed, re.M), line
    session = boto3.Session(region_name=scale_run.stack.region)
    sm = session.client("sagemaker")
    for call, kwargs in ((sm.describe_inference_component,
                          {"InferenceComponentName": scale_run.component}),
                         (sm.describe_endpoint, {"EndpointName": scale_run.endpoint_name}),
                         (sm.describe_endpoint_config,
                          {"EndpointConfigName": scale_run.endpoint_name}),
                         (sm.describe_model, {"ModelName": scale_run.endpoint_name})):
        with pytest.raises(ClientError):
            call(**kwargs)
    autoscaling = session.client("application-autoscaling")
    where = {"ServiceNamespace": "sagemaker",
             "ScalableDimension": COPY_COUNT_DIMENSION}
    resource = f"inference-component/{scale_run.component}"
    assert not autoscaling.describe_scalable_targets(
        ResourceIds=[resource], **where)["ScalableTargets"]
    assert not autoscaling.describe_scaling_policies(
        ResourceId=resource, **where)["ScalingPolicies"]
    alarms = session.client("cloudwatch").describe_alarms(
        AlarmNamePrefix=scale_run.component)["MetricAlarms"]
    assert not alarms


def test_no_output_line_runs_past_200_characters(scale_run):
    assert long_output_lines(scale_run.notebook) == []
