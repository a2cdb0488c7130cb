"""One generated pair per Llama family runs unmodified against the stand-in.

Each pair is written by ``python -m common.notebooks new --model-id ID --container C --out
DIR`` with nothing else, under ``build/`` (two levels below the root, like the recipes), and
run with nbclient: deploy, then inference. Containers alternate between families.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_reference import apply_chat_template
from test_notebook_runs import _execute  # the recipes' own headless runner

from common.local.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
FAMILY_RUNS = [
    ("codellama/CodeLlama-7b-Instruct-hf", "tgi"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "lmi"),
    ("meta-llama/Llama-3.1-8B-Instruct", "tgi"),
    ("meta-llama/Llama-3.2-1B-Instruct", "lmi"),
    ("meta-llama/Llama-3.3-70B-Instruct", "tgi"),
]
END_TEXTS = ("</s>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<step>")


def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


def _reference_prompt(repo: str, messages: list[dict[str, str]]) -> str:
    variant = VARIANTS[repo]
    bos, eos = variant.special_tokens
    text = apply_chat_template(variant.template, bos, eos, messages)
    assert text.startswith(bos)
    return text[len(bos):]


@pytest.mark.parametrize(("repo", "container"), FAMILY_RUNS,
                         ids=[f"{r.rsplit('/', 1)[-1]}-{c}" for r, c in FAMILY_RUNS])
def test_a_generated_pair_runs_against_the_stand_in(local_stack, repo, container):
    out = ROOT / "build" / f"variant-{repo.rsplit('/', 1)[-1].lower()}-{container}"
    # As a user runs it: a fresh process with the stand-in's exports (HF_HUB_OFFLINE=1 ...).
    done = subprocess.run([sys.executable, "-m", "common.notebooks", "new", "--model-id", repo,
                           "--container", container, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **local_stack.env}, check=False)
    assert done.returncode == 0, done.stderr
    deploy_path, inference_path = sorted(out.glob("*.ipynb"))
    deploy = _execute(deploy_path)
    inference = _execute(inference_path)

    # The deploy notebook printed the chosen instance and limits, with the KV arithmetic.
    settings = next(c for c in deploy.cells if c.cell_type == "code"
                    and c.source.startswith("MODEL_ID = "))
    printed = _stdout(settings)
    assert "KV cache per token: 2 x" in printed and "MAX_TOTAL_TOKENS" in printed
    endpoint = _stdout(next(c for c in deploy.cells if c.cell_type == "code"
                            and c.source.startswith("RUN_ID = "))).strip()

    # The endpoint received exactly transformers' rendering of the conversation, minus BOS.
    namespace: dict = {}
    exec(next(c.source for c in inference.cells if c.cell_type == "code"
              and c.source.startswith("SYSTEM_PROMPT = (")).split("\nbuild_prompt = ")[0],
         namespace)
    requests = [r for r in local_stack.requests() if r["endpoint"] == endpoint
                and r["operation"] == "InvokeEndpointWithResponseStream"]
    bodies = [json.loads(r["body"]) if isinstance(r["body"], (str, bytes)) else r["body"]
              for r in requests]
    prompts = [b["inputs"] for b in bodies if "inputs" in b]
    assert prompts, "the inference notebook sent no text prompt"
    assert prompts[0] == _reference_prompt(repo, namespace["conversation"])
    assert any("messages" in b for b in bodies), "the Messages API cell ran"
    # The stand-in knew the model (TGI: HF_MODEL_ID; LMI: serving.properties -> S3 config),
    # so its Messages API route used this model's template and its answers its end token.
    assert {r["served_model"] for r in requests} == {repo}

    # No end token reaches a printed answer.
    for cell in inference.cells:
        if cell.cell_type == "code" and "stream_answer(" in cell.source:
            text = _stdout(cell)
            assert text.strip()
            for end in END_TEXTS:
                assert end not in text, f"{end!r} leaked into the answer"
