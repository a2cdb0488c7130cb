"""A deploy notebook against `python -m common.local --quota ml.g5.2xlarge=0`, and a scale
notebook against `--quota ml.g5.2xlarge=2` (below its maximum of 4 instances).

Each must stop at its pre-flight cell, naming the quota and how to raise it, having created
nothing. The stand-in runs as the README runs it (its own process, started with the flag);
the notebook runs unmodified in a kernel with the variables the command prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from common.local.stack import HEADLESS_NOTEBOOK_ENV
from common.notebooks.generator import recipe_paths

ROOT = Path(__file__).resolve().parents[1]


def _command_env() -> dict[str, str]:
    """The test process's environment without the session stand-in's variables."""
    from common.local.stack import UNSET_VARIABLES

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "HF_")) and k.lower() not in {
               "https_proxy", "http_proxy", "no_proxy"} and k not in UNSET_VARIABLES
           and k not in {"SAGEMAKER_EXECUTION_ROLE_ARN", "IPYTHONDIR"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def _stand_in(tmp_path_factory, quota: str):
    """`python -m common.local --quota QUOTA`, running; yields its variables."""
    env_json = tmp_path_factory.mktemp("stand-in") / "env.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "common.local", "--quota", quota,
         "--endpoint-delay", "0.1", "--ttft", "0", "--env-json", str(env_json)],
        env=_command_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        while True:
            line = process.stdout.readline()
            assert line, f"the stand-in ended early: {process.stderr.read()}"
            if line.startswith("# Serving until Ctrl-C"):
                break
        yield json.loads(env_json.read_text())
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """`python -m common.local --quota ml.g5.2xlarge=0`, running; yields its variables."""
    with _stand_in(tmp_path_factory, "ml.g5.2xlarge=0") as saved:
        yield saved


def _client(saved: dict, service: str):
    import boto3
    from botocore.config import Config

    env = saved["env"]
    return boto3.client(service, region_name=env["AWS_REGION"], aws_access_key_id="testing",
                        aws_secret_access_key="testing", verify=env["AWS_CA_BUNDLE"],
                        config=Config(proxies={"https": env["HTTPS_PROXY"]}))


@dataclass
class FailedRun:
    """A notebook run that stopped at one cell: the notebook as it ran, that cell, its error
    output, and the seconds from the start of the run (kernel start included)."""

    notebook: nbformat.NotebookNode
    cell: nbformat.NotebookNode
    error: dict
    elapsed_s: float


def _run_until_preflight_fails(path: Path, saved: dict, kernel_name: str) -> FailedRun:
    """Run the notebook at ``path`` unmodified in ``kernel_name``, with the variables of the
    stand-in ``saved``, expecting it to stop with a ``PreflightError`` at its pre-flight cell
    and there only."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    kernel_env = {**_command_env(), **saved["env"], **HEADLESS_NOTEBOOK_ENV}
    client = NotebookClient(notebook, timeout=600, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    with pytest.raises(CellExecutionError):
        client.execute(env=kernel_env)
    elapsed = time.monotonic() - started

    failed = [cell for cell in notebook.cells if cell.cell_type == "code"
              and any(out.get("output_type") == "error" for out in cell.get("outputs", []))]
    assert len(failed) == 1
    (cell,) = failed
    assert cell.source.startswith("preflight_report = common.preflight(")
    (error,) = [out for out in cell.outputs if out["output_type"] == "error"]
    assert error["ename"] == "PreflightError"
    return FailedRun(notebook, cell, error, elapsed)


def test_a_deploy_notebook_stops_at_its_preflight_cell_having_created_nothing(
        stand_in, notebook_kernel):
    deploy, _ = recipe_paths("tgi", "7b", root=ROOT)  # ml.g5.2xlarge
    run = _run_until_preflight_fails(deploy, stand_in, notebook_kernel)
    notebook, cell = run.notebook, run.cell
    message = run.error["evalue"]
    assert message.startswith("Pre-flight found 1 problem; nothing was created.")
    assert "1. Instance quota: 'ml.g5.2xlarge for endpoint usage' is 0 in us-east-1" in message
    assert "request_service_quota_increase(ServiceCode='sagemaker', QuotaCode='L-" in message
    assert ("https://us-east-1.console.aws.amazon.com/servicequotas/home/services/sagemaker/"
            "quotas/L-") in message
    # The table was shown above the error, with the other checks passed.
    shown = json.dumps(cell.outputs)
    assert "Model access" in shown and "Execution role" in shown

    index = notebook.cells.index(cell)
    later = [c for c in notebook.cells[index + 1:] if c.cell_type == "code"]
    assert later and all(not c.get("outputs") and c.get("execution_count") is None
                         for c in later), "cells after the pre-flight ran"
    sagemaker = _client(stand_in, "sagemaker")
    assert sagemaker.list_models()["Models"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_endpoints()["Endpoints"] == []

    timing = cell.metadata.get("execution", {})
    took = (datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            - datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00")))
    print(f"\npre-flight cell: {took.total_seconds():.2f} s; whole run up to it "
          f"(kernel start and %pip included): {run.elapsed_s:.1f} s")


def test_a_scale_notebook_checks_the_quota_for_its_maximum(tmp_path_factory, notebook_kernel):
    # Issue 18: a quota of 2 lets the endpoint start (one instance) but not reach its maximum
    # of 4 under load; the pre-flight says so before anything is created.
    from common.notebooks.generator import scale_path

    path = scale_path("tgi", "7b", root=ROOT)  # ml.g5.2xlarge, max_instances 4
    with _stand_in(tmp_path_factory, "ml.g5.2xlarge=2") as saved:
        message = _run_until_preflight_fails(path, saved, notebook_kernel).error["evalue"]
        assert ("1. Instance quota: 'ml.g5.2xlarge for endpoint usage' is 2 in us-east-1; "
                "endpoints already hold 0, this one needs up to 4") in message
        assert "DesiredValue=4" in message
        sagemaker = _client(saved, "sagemaker")
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert sagemaker.list_models()["Models"] == []
