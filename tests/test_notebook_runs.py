"""What the recipe notebooks did when they ran against the local stand-in.

Each recipe pair (deploy, then inference) is taken as nbval ran it earlier in this session
(``notebook_capture``); when nbval did not run it (this file run alone), it is executed here
with nbclient, deploy first. The tests then read the executed notebooks and the stand-in's
request log: the prompt layout, the streaming parameters, the printed answer against the
text the stand-in replayed, the metrics line, the LMI weights in S3, the clean-up, and that
no token leaked into any output.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from secret_patterns import find_secrets

from common.local.backends import GenerationRequest
from common.notebooks.generator import RECIPES, recipe_paths
from common.prompts import parse_llama2_prompt

ROOT = Path(__file__).resolve().parents[1]
# What the notebooks need from their environment in an automated run: plain printed output
# (nbval has no widget front end) and the guarded clean-up switched on.
STREAM_TITLES = ("AnyCloud Internet Service launch email",
                 "AnyCloud Streaming Service launch email",
                 "AnyCloud Streaming Service launch email (Messages API)")


@dataclass
class PairRun:
    """One recipe pair as it ran: both executed notebooks and the endpoint's requests."""

    container: str
    deploy: nbformat.NotebookNode
    inference: nbformat.NotebookNode
    endpoint_name: str
    requests: list[dict[str, Any]]
    stack: Any


def long_output_lines(notebook: nbformat.NotebookNode, limit: int = 200) -> list[str]:
    """Every line of a code cell's output longer than ``limit`` characters: stream text and
    the plain-text form of results and displays (what a terminal, the demo or a saved
    notebook shows), each as ``"cell N: <start of the line>"``. A ``\\r`` does not end a
    line here: rewritten progress runs together in a log or a saved output."""
    found = []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code, start=1):
        for out in cell.get("outputs", []):
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            found += [f"cell {number}: {line[:80]}..." for line in text.split("\n")
                      if len(line) > limit]
    return found


def _all_text(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook)


def _is_streaming(record: dict[str, Any]) -> bool:
    return record["operation"] == "InvokeEndpointWithResponseStream"


_RUN_CACHE: dict[tuple[str, str], PairRun] = {}


@pytest.fixture(params=RECIPES, ids=lambda r: recipe_id(*r))  # conftest.py reads the id
def pair(request, local_stack) -> PairRun:
    """The recipe pair, executed (by nbval earlier in the session, or here)."""
    container, size = request.param
    if request.param not in _RUN_CACHE:
        deploy_path, inference_path = recipe_paths(container, size, root=ROOT)
        deploy, inference = executed_notebook(deploy_path), executed_notebook(inference_path)
        if deploy is None or inference is None:
            deploy, inference = execute_notebook(deploy_path), execute_notebook(inference_path)
        endpoint_name = cell_stdout(code_cell(deploy, "RUN_ID = ")).strip()
        requests = [r for r in local_stack.requests() if r["endpoint"] == endpoint_name]
        _RUN_CACHE[request.param] = PairRun(container, deploy, inference, endpoint_name,
                                            requests, local_stack)
    return _RUN_CACHE[request.param]


def _invocations(run: PairRun, *, streaming: bool) -> list[dict[str, Any]]:
    return [request_body(r) for r in run.requests if _is_streaming(r) == streaming]


# --------------------------------------------------------------------------- requests


def test_the_prompt_has_the_llama2_layout_without_a_second_bos(pair):
    prompts = [body["inputs"] for body in _invocations(pair, streaming=True) if "inputs" in body]
    assert len(prompts) == 4, "the raw stream, the first question, the follow-up, the chat's"
    raw, first, follow_up, _chat = prompts
    assert raw == first, "the raw stream asks the first question, with a shorter answer"
    for prompt in prompts:
        assert not prompt.startswith("<s>"), "the container adds BOS; a literal <s> doubles it"
        assert prompt.startswith("[INST] <<SYS>>\n") and prompt.endswith(" [/INST]")
    turns = parse_llama2_prompt(first)
    assert [t["role"] for t in turns] == ["system", "user"]
    assert "EARLYB1RD" in turns[1]["content"]
    turns = parse_llama2_prompt(follow_up)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert follow_up.count("</s><s>[INST]") == 1
    assert "STREAM2DREAM" in turns[3]["content"]


def test_every_streaming_request_streams_and_caps_the_answer(pair):
    bodies = _invocations(pair, streaming=True)
    assert len(bodies) == 5, "raw stream, first answer, follow-up, Messages API, the chat's"
    assert bodies[0]["parameters"]["max_new_tokens"] == 24
    for body in bodies:
        assert body["stream"] is True
        if "inputs" in body:
            assert body["parameters"]["max_new_tokens"] > 0
        else:
            assert body["messages"] and body["max_tokens"] > 0
    (blocking,) = _invocations(pair, streaming=False)
    assert blocking["stream"] is False and blocking["parameters"]["max_new_tokens"] > 0


# --------------------------------------------------------------------------- printed output


def test_the_printed_answer_is_the_replayed_text_with_its_metrics(pair):
    if pair.stack.backend_name != "replay":
        pytest.skip("only the replay backend's text is known in advance")
    replies = [pair.stack.backend.answer_for(GenerationRequest(
        prompt=body.get("inputs"), messages=body.get("messages")))
        for body in _invocations(pair, streaming=True)[1:1 + len(STREAM_TITLES)]]
    printed = [cell_stdout(c) for c in pair.inference.cells if c.cell_type == "code"
               and re.search(r"^\w+ = stream_answer\(", c.source, re.M)]
    assert len(printed) == len(replies) == len(STREAM_TITLES)
    for title, text, reply in zip(STREAM_TITLES, printed, replies, strict=True):
        assert reply.strip(), "the stand-in replayed no text"
        assert "</s>" not in text
        head, _, rest = text.partition("\n")
        assert head == title, "no printed answer: run the notebooks with COMMON_DISPLAY=print"
        answer, _, summary = rest.rstrip("\n").rpartition("\n")
        assert answer == reply
        assert re.match(r"TTFT \d+ ms \| \d+ tokens \| [\d.]+ tokens/s", summary), summary


def test_the_raw_stream_shows_a_split_line_and_the_hand_loop_agrees_with_the_helper(pair):
    raw_body = _invocations(pair, streaming=True)[0]
    shown = cell_stdout(code_cell(pair.inference, "short_payload = "))
    lines = shown.splitlines()
    assert re.fullmatch(r"\d+ events; the first four:", lines[0])
    assert re.fullmatch(r"part 1, \d+ bytes, ends INSIDE a line:", lines[1]), shown
    assert re.fullmatch(r"part 2, \d+ bytes, ends at the end of a line:", lines[3]), shown
    head, tail = (ast.literal_eval(line.strip()) for line in (lines[2], lines[4]))
    assert b"\n" not in head and (head + tail).count(b"\n") >= 1
    if pair.container == "tgi":
        assert head.startswith(b'data: {"index":1,')
    checked = cell_stdout(code_cell(pair.inference, "by_hand = "))
    count, _, text = checked.partition("\n")
    match = re.fullmatch(r"(\d+) tokens; the same (\d+) characters both ways:", count)
    assert match, checked
    assert int(match.group(1)) == 24
    if pair.stack.backend_name == "replay":
        reply = pair.stack.backend.answer_for(GenerationRequest(prompt=raw_body["inputs"]))
        assert text.rstrip("\n") and reply.startswith(text.rstrip("\n"))
        assert int(match.group(2)) == len(text) - 1  # print() added the newline


def test_no_output_line_runs_past_200_characters(pair):
    for notebook in (pair.deploy, pair.inference):
        assert long_output_lines(notebook) == []


def test_the_chat_sent_its_scripted_question_with_the_system_prompt(pair):
    chat_body = _invocations(pair, streaming=True)[-1]
    turns = parse_llama2_prompt(chat_body["inputs"])
    assert [t["role"] for t in turns] == ["system", "user"]
    assert turns[1]["content"].startswith("Suggest three subject lines")
    assert chat_body["parameters"]["max_new_tokens"] > 0
    printed = cell_stdout(code_cell(pair.inference, "def open_stream("))
    assert re.search(r"^You: Suggest three subject lines", printed, re.M), printed
    assert "Assistant: " in printed and re.search(r"^TTFT \d+ ms", printed, re.M), printed
    assert re.search(r"^Context: \d+ of \d+ prompt tokens", printed, re.M), printed
    if pair.stack.backend_name == "replay":
        reply = pair.stack.backend.answer_for(GenerationRequest(prompt=chat_body["inputs"]))
        assert reply.strip() in printed
    counting = cell_stdout(code_cell(pair.inference, "counter = common.token_counter("))
    assert counting.startswith("Counting tokens with: ")


def test_the_blocking_call_and_the_chart_were_shown(pair):
    printed = cell_stdout(code_cell(pair.inference, "started = time.perf_counter()"))
    assert re.search(r"Without streaming: [\d.]+ s before any text", printed)
    assert re.search(r"With streaming: first text after [\d.]+ s", printed)
    chart = code_cell(pair.inference, "figure = common.plot_latency_comparison")
    assert any("image/png" in out.get("data", {}) for out in chart.outputs)


# --------------------------------------------------------------------------- resources


def test_the_lmi_weights_went_to_s3(pair):
    if pair.container != "lmi":
        pytest.skip("TGI downloads the weights from the hub itself")
    import common

    summary = cell_stdout(code_cell(pair.deploy, "s3_client = boto_session.client")).strip()
    size = re.match(r"llama-2-(\d+b)-chat", pair.endpoint_name).group(1)
    repo = common.get_preset(size, "lmi").model_id
    prefix = common.weights_prefix(repo)  # one copy per model and revision, not per run
    # The first deploy of this model in the session copies; a later one reuses the copy.
    match = (re.fullmatch(r"(\d+) files uploaded, 0 already in S3; .*\n-> (s3://\S+/)", summary)
             or re.fullmatch(r"All (\d+) files .* already in S3 from an earlier copy of this "
                             r"model and revision: nothing copied\n-> (s3://\S+/)", summary))
    assert match, summary
    assert match.group(2).endswith(f"/{prefix}/"), summary
    files = {f.path for f in common.list_weight_files(
        repo, endpoint=pair.stack.env["HF_ENDPOINT"])}
    assert int(match.group(1)) == len(files) > 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert "pytorch_model.bin" not in files, "the duplicate PyTorch weights were copied"
    serving = cell_stdout(code_cell(pair.deploy, "serving_properties = "))
    assert f"option.model_id={match.group(2)}" in serving


def test_clean_up_deleted_everything_the_recipe_created(pair):
    client = pair.stack.client("sagemaker")
    with pytest.raises(ClientError):
        client.describe_endpoint(EndpointName=pair.endpoint_name)
    with pytest.raises(ClientError):
        client.describe_endpoint_config(EndpointConfigName=pair.endpoint_name)
    with pytest.raises(ClientError):
        client.describe_model(ModelName=pair.endpoint_name)
    if pair.container == "lmi":
        import common

        weights = cell_stdout(code_cell(pair.deploy, "s3_client = boto_session.client")).split()[-1]
        bucket, _, weights_prefix = weights.removeprefix("s3://").partition("/")
        s3 = pair.stack.client("s3")
        run = s3.list_objects_v2(Bucket=bucket, Prefix=common.run_prefix(pair.endpoint_name))
        assert run["KeyCount"] == 0, "the run's own S3 files were not deleted"
        kept = s3.list_objects_v2(Bucket=bucket, Prefix=weights_prefix)
        assert kept["KeyCount"] > 0, "the shared weight copy was deleted with one run"


def test_no_notebook_or_output_holds_a_token(pair):
    token = os.environ.get("HF_TOKEN", "")
    for notebook in (pair.deploy, pair.inference):
        text = _all_text(notebook)
        assert find_secrets(text) == []
        assert not token or token not in text, "the Hugging Face token was printed"
