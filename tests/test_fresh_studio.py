"""The recipes as a new SageMaker Studio user meets them: two side by side, and a failed deploy.

Every notebook here runs unmodified, with nbclient, in a Studio-like kernel without ``common``
until the notebook's own ``%pip`` and the cell after it (``tests/kernel_env.py``); the
side-by-side test in a fresh one, as a new Studio space has it (ipykernel and the SDK v2), so
its first ``%pip`` installs everything.

* **Side by side**: the 7B TGI and the 7B LMI deploy notebooks both run, then each inference
  notebook. Each must restore its own recipe's names (``%store`` is shared by all notebooks)
  and stream from its own endpoint. These four runs stand in for nbval's runs of the same
  notebooks (the root ``conftest.py`` deselects those when this test is collected), and are
  recorded for ``test_notebook_runs.py``, so the suite runs them once.
* **A failed deploy**: the stand-in fails the 13B LMI endpoint; the wait cell must raise with
  SageMaker's ``FailureReason``, the log link and the clean-up command for the run; what the
  run left must be what ``common.cleanup`` lists; the notebook's own clean-up cell must delete
  all of it (the shared weight copy stays). In the same kernel, right after the set-up cells,
  the scale notebook's clean-up cell runs too: it must work before anything is named, and
  delete nothing new.
* **The Hub path** (``WEIGHTS = "hub"`` in the 70B LMI deploy notebook): nothing copied, the
  Hub id in ``serving.properties``, ``HF_TOKEN`` on the container, and the endpoint serves.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import nbformat
from kernel_env import environment, studio_kernel
from notebook_capture import cell_stdout, code_cell, execute_notebook, record_executed, request_body

from common.cleanup import find_leftovers
from common.local.stack import HEADLESS_NOTEBOOK_ENV
from common.notebooks.generator import recipe_paths

ROOT = Path(__file__).resolve().parents[1]
SIDE_BY_SIDE = [recipe_paths("tgi", "7b", root=ROOT), recipe_paths("lmi", "7b", root=ROOT)]
"""The (deploy, inference) pairs the side-by-side test runs (nbval's runs are deselected)."""


def _errors(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def test_two_recipes_side_by_side_each_inference_streams_from_its_own(local_stack):
    (tgi_deploy, tgi_inference), (lmi_deploy, lmi_inference) = SIDE_BY_SIDE
    deployed = {}
    for path in (tgi_deploy, lmi_deploy):  # both endpoints up at once
        notebook = execute_notebook(path, fresh=True)  # the first in a new Studio space's kernel
        record_executed(path, notebook)
        deployed[path] = cell_stdout(code_cell(notebook, "RUN_ID = ")).strip()
    tgi_endpoint, lmi_endpoint = deployed[tgi_deploy], deployed[lmi_deploy]
    assert tgi_endpoint.startswith("llama-2-7b-chat-tgi-")
    assert lmi_endpoint.startswith("llama-2-7b-chat-lmi-")
    for path, own in ((tgi_inference, tgi_endpoint), (lmi_inference, lmi_endpoint)):
        notebook = execute_notebook(path, fresh=True)
        record_executed(path, notebook)
        restored = cell_stdout(code_cell(notebook, "recipe_llama_2_7b_chat_"))
        assert restored.startswith(f"Endpoint {own} (run "), restored
        mine = [r for r in local_stack.requests() if r["endpoint"] == own]
        assert len(mine) >= 5, "streams, the blocking call, the Messages API and the chat"
    # Each endpoint got its own notebook's requests: TGI's carry return_full_text, LMI's not.
    for endpoint, container in ((tgi_endpoint, "tgi"), (lmi_endpoint, "lmi")):
        bodies = [request_body(r) for r in local_stack.requests() if r["endpoint"] == endpoint]
        generate = [b for b in bodies if "inputs" in b]
        assert generate and all(("return_full_text" in b["parameters"]) == (container == "tgi")
                                for b in generate), container


def test_a_failed_deploy_says_how_to_clean_up_and_its_clean_up_leaves_nothing(local_stack):
    """Also, in the same kernel right after the set-up cells: the scale notebook's clean-up
    cell, which must work from any point -- here before anything is named -- and delete
    nothing new (what this profile stored is gone already, or nothing is stored)."""
    from nbclient import NotebookClient

    from common.notebooks.generator import scale_path

    deploy, _ = recipe_paths("lmi", "13b", root=ROOT)
    scale = nbformat.read(scale_path("lmi", "13b", root=ROOT), as_version=4)
    reason = "The primary container for production variant AllTraffic did not pass the ping."
    local_stack.fail_endpoint("llama-2-13b-chat-lmi-*", reason)
    notebook = nbformat.read(deploy, as_version=4)
    early = nbformat.v4.new_code_cell([c for c in scale.cells if c.cell_type == "code"][-1]
                                      .source)
    notebook.cells.append(early)  # nbclient writes a cell back at its index
    client = NotebookClient(notebook, timeout=600, kernel_name=studio_kernel(),
                            allow_errors=True,
                            resources={"metadata": {"path": str(deploy.parent)}})
    code = [(index, cell) for index, cell in enumerate(notebook.cells[:-1])
            if cell.cell_type == "code"]
    clean_up_index, clean_up = code[-1]
    try:
        with environment(HEADLESS_NOTEBOOK_ENV), client.setup_kernel():
            for index, cell in code[:3]:  # %pip, the .pth re-read, the imports
                client.execute_cell(cell, index)
            client.execute_cell(early, len(notebook.cells) - 1)
            for index, cell in code[3:-1]:
                client.execute_cell(cell, index)
            run_id = "-".join(cell_stdout(code_cell(notebook, "RUN_ID = ")).strip().split("-")[-2:])
            left = find_leftovers(run=run_id)  # what the failed run left, before clean-up
            client.execute_cell(clean_up, clean_up_index)
    finally:
        local_stack.clear_faults()

    printed = cell_stdout(early)
    assert not [o for o in early.outputs if o.get("output_type") == "error"], early.outputs
    assert ("Nothing to delete" in printed
            or re.fullmatch(r"((\S+ )+\S+: already (gone|being deleted)[^\n]*\n)+", printed)), \
        printed
    notebook.cells.pop()

    wait = code_cell(notebook, "description = common.wait_for_endpoint(")
    (error,) = [out for out in wait.outputs if out["output_type"] == "error"]
    assert error["ename"] == "EndpointFailedError"
    message = error["evalue"]
    assert reason in message
    assert ("https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
            "#logsV2:log-groups/log-group/$252Faws$252Fsagemaker$252FEndpoints$252F"
            "llama-2-13b-chat-lmi-") in message
    assert (f"python -m common.cleanup --recipe llama-2-13b-chat-lmi --run {run_id} "
            "--region us-east-1 --delete") in message
    assert {e["ename"] for e in _errors(notebook)} <= {"EndpointFailedError", "NameError"}

    name = f"llama-2-13b-chat-lmi-{run_id}"
    assert {(item.kind, item.name.rsplit("/", 2)[-2] if item.kind.startswith("S3") else
             item.name) for item in left.leftovers} == {
        ("endpoint", name), ("endpoint config", name), ("model", name),
        ("S3 run files", name)}
    assert {item.state for item in left.leftovers if item.kind == "endpoint"} == {"Failed"}
    printed = cell_stdout(clean_up)
    for line in (f"endpoint {name}: deleted", f"endpoint config {name}: deleted",
                 f"model {name}: deleted"):
        assert line in printed
    assert re.search(rf"S3 prefix s3://\S+/llama-2-recipes/runs/{name}/: deleted 1 object",
                     printed), printed
    assert find_leftovers(run=run_id).leftovers == []
    weights = [i for i in find_leftovers().leftovers if i.kind == "S3 weights"
               and "Llama-2-13b-chat-hf" in i.name]
    assert weights, "the shared weight copy was deleted with the failed run"


def test_the_hub_path_deploys_without_a_copy_and_streams(local_stack):
    """``WEIGHTS = "hub"``: no weight copy, ``option.model_id`` is the Hub id, the container
    gets ``HF_TOKEN``, the pre-flight needs no disk -- and the endpoint serves."""
    import common
    from common.cleanup import delete_leftovers

    deploy, _ = recipe_paths("lmi", "70b", root=ROOT)
    notebook = nbformat.read(deploy, as_version=4)
    (switch,) = [c for c in notebook.cells if c.cell_type == "code"
                 and '\nWEIGHTS = "s3"' in c.source]
    switch.source = switch.source.replace('\nWEIGHTS = "s3"', '\nWEIGHTS = "hub"')
    path = ROOT / "build" / "hub-path" / deploy.name  # two levels below the root, like a recipe
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    s3 = local_stack.client("s3")
    bucket = f"sagemaker-{local_stack.region}-123456789012"
    weights = common.weights_prefix("meta-llama/Llama-2-70b-chat-hf")

    def weight_objects() -> int:
        try:
            return s3.list_objects_v2(Bucket=bucket, Prefix=weights).get("KeyCount", 0)
        except s3.exceptions.NoSuchBucket:
            return 0

    before = weight_objects()
    ran = execute_notebook(path)
    assert not _errors(ran)
    assert weight_objects() == before, "the hub path copied weights"
    copy = cell_stdout(code_cell(ran, "s3_client = boto_session.client"))
    assert copy.strip() == ("No copy: the container downloads meta-llama/Llama-2-70b-chat-hf "
                            "from the Hub when it starts.")
    serving = cell_stdout(code_cell(ran, "serving_properties = "))
    assert "option.model_id=meta-llama/Llama-2-70b-chat-hf\n" in serving
    preflight = json.dumps(code_cell(ran, "preflight_report = ").outputs)
    assert "no local copy: LMI (HF_MODEL_ID) downloads the weights inside the endpoint" in (
        preflight)
    name = cell_stdout(code_cell(ran, "RUN_ID = ")).strip()
    sm = local_stack.client("sagemaker")
    environment = sm.describe_model(ModelName=name)["PrimaryContainer"]["Environment"]
    assert environment.get("HF_TOKEN") == local_stack.env["HF_TOKEN"]
    tokens = common.invoke_stream(
        common.runtime_client(local_stack.region), name,
        common.build_payload("[INST] Hi [/INST]", container="lmi", max_new_tokens=8),
        container="lmi")
    assert "".join(t.text for t in tokens if not t.special)
    run = "-".join(name.split("-")[-2:])
    done = delete_leftovers(find_leftovers(run=run).leftovers, out=io.StringIO())
    assert f"endpoint {name}: deleted" in done and len(done) == 4  # + config, model, S3 files
