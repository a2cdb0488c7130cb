"""One generated pair per Llama family runs unmodified against the stand-in -- and a pair for
a model no list names, served from a user's own Hugging Face cache (``--hub-cache``).

Each pair is written by ``python -m common.notebooks new --model-id ID --container C --out
DIR`` with nothing else, under ``build/`` (two levels below the root, like the recipes), and
run with nbclient: deploy, then inference. Containers alternate between families.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_reference import apply_chat_template
from model_fixtures import CHATML_TEMPLATE, FINE_TUNE_ID, write_user_cache
from notebook_capture import execute_notebook, request_body  # the recipes' own runner

from common.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
FAMILY_RUNS = [
    ("codellama/CodeLlama-7b-Instruct-hf", "tgi"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "lmi"),
    ("meta-llama/Llama-3.1-8B-Instruct", "tgi"),
    ("meta-llama/Llama-3.2-1B-Instruct", "lmi"),
    ("meta-llama/Llama-3.3-70B-Instruct", "tgi"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "lmi"),
]
END_TEXTS = ("</s>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<step>", "<|eot|>",
             "<|eom|>", "<|im_end|>")


def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


def _reference_prompt(repo: str, messages: list[dict[str, str]]) -> str:
    variant = VARIANTS[repo]
    bos, eos = variant.special_tokens
    text = apply_chat_template(variant.template, bos, eos, messages)
    assert text.startswith(bos)
    return text[len(bos):]


def _run_pair(local_stack, repo: str, container: str, out: Path):
    """Write the pair with `new` in a fresh process (as a user runs it, with the stand-in's
    exports), run deploy then inference; return both notebooks, the endpoint's streaming
    requests and their bodies."""
    done = subprocess.run([sys.executable, "-m", "common.notebooks", "new", "--model-id", repo,
                           "--container", container, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **local_stack.env}, check=False)
    assert done.returncode == 0, done.stderr
    deploy_path, inference_path = sorted(out.glob("*.ipynb"))
    deploy = execute_notebook(deploy_path)
    inference = execute_notebook(inference_path)

    # The deploy notebook printed the chosen instance and limits, with the KV arithmetic.
    settings = next(c for c in deploy.cells if c.cell_type == "code"
                    and c.source.startswith("MODEL_ID = "))
    printed = _stdout(settings)
    assert "KV cache per token: 2 x" in printed and "MAX_TOTAL_TOKENS" in printed
    endpoint = _stdout(next(c for c in deploy.cells if c.cell_type == "code"
                            and c.source.startswith("RUN_ID = "))).strip()
    requests = [r for r in local_stack.requests() if r["endpoint"] == endpoint
                and r["operation"] == "InvokeEndpointWithResponseStream"]
    bodies = [request_body(r) for r in requests]
    return deploy, inference, requests, bodies


def _conversation(inference) -> list[dict[str, str]]:
    namespace: dict = {}
    exec(next(c.source for c in inference.cells if c.cell_type == "code"
              and c.source.startswith("SYSTEM_PROMPT = (")).split("\nbuild_prompt = ")[0],
         namespace)
    return namespace["conversation"]


def _no_end_token_printed(inference) -> None:
    for cell in inference.cells:
        if cell.cell_type == "code" and "stream_answer(" in cell.source:
            text = _stdout(cell)
            assert text.strip()
            for end in END_TEXTS:
                assert end not in text, f"{end!r} leaked into the answer"


@pytest.mark.parametrize(("repo", "container"), FAMILY_RUNS,
                         ids=[f"{r.rsplit('/', 1)[-1]}-{c}" for r, c in FAMILY_RUNS])
def test_a_generated_pair_runs_against_the_stand_in(local_stack, repo, container):
    out = ROOT / "build" / f"variant-{repo.rsplit('/', 1)[-1].lower()}-{container}"
    _, inference, requests, bodies = _run_pair(local_stack, repo, container, out)

    # The endpoint received exactly transformers' rendering of the conversation, minus BOS.
    prompts = [b["inputs"] for b in bodies if "inputs" in b]
    assert prompts, "the inference notebook sent no text prompt"
    assert prompts[0] == _reference_prompt(repo, _conversation(inference))
    assert any("messages" in b for b in bodies), "the Messages API cell ran"
    # The stand-in knew the model (TGI: HF_MODEL_ID; LMI: serving.properties -> S3 config),
    # so its Messages API route used this model's template and its answers its end token.
    assert {r["served_model"] for r in requests} == {repo}
    _no_end_token_printed(inference)


@pytest.fixture(scope="module")
def users_hub_cache(local_stack, tmp_path_factory) -> Path:
    """A user's own cache (config and tokenizer files, no weights) added to the stand-in's
    hub, as `python -m common.local --hub-cache DIR` does."""
    return local_stack.add_hub_cache(write_user_cache(tmp_path_factory.mktemp("user-hub")))


@pytest.mark.parametrize("container", ["tgi", "lmi"])
def test_a_pair_for_a_model_from_a_users_hub_cache_runs(local_stack, users_hub_cache,
                                                        container):
    assert FINE_TUNE_ID in local_stack.served_repositories()
    out = ROOT / "build" / f"hub-cache-fine-tune-{container}"
    _, inference, requests, bodies = _run_pair(local_stack, FINE_TUNE_ID, container, out)

    # The prompt is the fine-tune's own ChatML layout (from its chat_template.jinja), as
    # transformers renders it, minus the BOS text.
    prompts = [b["inputs"] for b in bodies if "inputs" in b]
    bos = "<|begin_of_text|>"
    expected = apply_chat_template(CHATML_TEMPLATE, bos, "<|im_end|>",
                                   _conversation(inference))
    assert prompts[0] == expected[len(bos):]
    # LMI (vLLM) reads chat_template.jinja from the files copied to S3, so the Messages API
    # cell ran; TGI 3.3.6 cannot read it, so the notebook left that cell out.
    assert any("messages" in b for b in bodies) == (container == "lmi")
    # The stand-in served the fine-tune (LMI: its uploaded config), and its replay ended with
    # the fine-tune's end token, which the notebook's stop tokens kept out of the text.
    assert {r["served_model"] for r in requests} == {FINE_TUNE_ID}
    _no_end_token_printed(inference)
