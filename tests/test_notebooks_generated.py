"""The committed recipe notebooks are exactly what the generator renders, and say what they must.

These tests read notebook sources only (nothing runs); ``test_notebook_runs.py`` checks the
notebooks executed against the local stand-in.
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from recipe_notebooks import recipe_of

from common.notebooks import generator
from common.notebooks.__main__ import main as notebooks_main
from common.recipe_state import state_key

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [generator.recipe_paths(c, s, root=ROOT) for c, s in generator.RECIPES]
NOTEBOOKS = [path for pair in PAIRS for path in pair]
DEPLOY = [deploy for deploy, _ in PAIRS]
INFERENCE = [inference for _, inference in PAIRS]
SCALE = [generator.scale_path(c, s, root=ROOT) for c, s in generator.RECIPES]


def _id(path: Path) -> str:
    return path.name


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(path: Path) -> list[str]:
    return [cell.source for cell in _read(path).cells if cell.cell_type == "code"]


def _python(source: str) -> ast.Module:
    """Parse a code cell as IPython runs it (magics become ``get_ipython()`` calls)."""
    return ast.parse(TransformerManager().transform_cell(source))


def _calls(tree: ast.AST, dotted: str) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            found.append(node)
    return found


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def _evaluate(node: ast.expr) -> object:
    """A literal's value; a dict display key by key; any other expression as its source."""
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {ast.literal_eval(k): _evaluate(v) for k, v in zip(node.keys, node.values,
                                                                  strict=True)}
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _dict_literals(path: Path) -> dict[str, dict]:
    """Every ``name = {...}`` dict display assigned in the notebook's code, evaluated."""
    found = {}
    for source in _code_cells(path):
        for node in ast.walk(_python(source)):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and isinstance(node.targets[0], ast.Name)):
                found[node.targets[0].id] = _evaluate(node.value)
    return found


# --------------------------------------------------------------------------- generator


def test_committed_notebooks_equal_what_the_generator_renders():
    differing = generator.check_notebooks(ROOT)
    assert differing == [], (
        f"{[str(p) for p in differing]} differ from the templates: run "
        "`python -m common.notebooks render` and commit the result"
    )


def test_rendering_twice_gives_the_same_bytes():
    assert generator.render_all() == generator.render_all()


def test_render_check_reports_a_changed_notebook_and_render_repairs_it(tmp_path):
    for path in NOTEBOOKS + SCALE:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    changed = tmp_path / INFERENCE[0].relative_to(ROOT)
    changed.write_text(changed.read_text().replace("max_new_tokens", "max_tokens_new"))

    out = io.StringIO()
    assert notebooks_main(["render", "--check", "--root", str(tmp_path)], out=out) == 1
    assert str(INFERENCE[0].relative_to(ROOT)) in out.getvalue()
    assert out.getvalue().count("differs:") == 1

    assert notebooks_main(["render", "--root", str(tmp_path)], out=io.StringIO()) == 0
    assert changed.read_text() == INFERENCE[0].read_text()
    assert notebooks_main(["render", "--check", "--root", str(tmp_path)],
                          out=io.StringIO()) == 0


def test_recipe_paths_reject_unknown_sizes_and_containers():
    with pytest.raises(ValueError, match="size"):
        generator.recipe_paths("tgi", "8b")
    with pytest.raises(ValueError, match="container"):
        generator.recipe_paths("vllm", "7b")


@pytest.mark.parametrize(
    ("model_id", "fmt", "builder"),
    [
        ("codellama/CodeLlama-7b-Instruct-hf", "llama2", "common.build_llama2_prompt"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3", "common.build_llama3_prompt"),
    ],
)
@pytest.mark.parametrize("container", ["tgi", "lmi"])
def test_new_writes_a_pair_for_another_llama_variant(tmp_path, model_id, fmt, builder,
                                                     container):
    out = io.StringIO()
    status = notebooks_main(["new", "--model-id", model_id, "--container", container,
                             "--instance-type", "ml.g5.12xlarge", "--out", str(tmp_path),
                             "--prompt-format", fmt, "--params-billion", "8",
                             "--max-total-tokens", "4096"], out=out)
    assert status == 0
    written = sorted(tmp_path.glob("*.ipynb"))
    assert [p.name[:2] for p in written] == ["1-", "2-"]
    deploy, inference = written
    deploy_code = "\n".join(_code_cells(deploy))
    assert f'model_id="{model_id}"' in deploy_code
    assert 'instance_type="ml.g5.12xlarge"' in deploy_code
    inference_code = "\n".join(_code_cells(inference))
    assert builder in inference_code
    other = {"llama2": "build_llama3_prompt", "llama3": "build_llama2_prompt"}[fmt]
    assert other not in inference_code
    for path in written:
        nbformat.validate(_read(path))


def test_new_rejects_a_bad_model_id(tmp_path, capsys):
    status = notebooks_main(["new", "--model-id", "not a model", "--container", "tgi",
                             "--instance-type", "ml.g5.2xlarge", "--out", str(tmp_path)])
    assert status == 2
    assert "owner/name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- every notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_committed_clean(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["nbformat"] == 4
    assert raw["metadata"]["kernelspec"]["name"] == "python3"
    notebook = _read(path)
    nbformat.validate(notebook)
    ids = [cell.id for cell in notebook.cells]
    assert len(set(ids)) == len(ids)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has outputs"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_every_code_cell_follows_a_markdown_sentence_and_parses(path):
    cells = _read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    for before, cell in itertools.pairwise(cells):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"code cell {cell.id} has no markdown before"
            _python(cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_the_hugging_face_token_is_never_literal_or_printed(path):
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"hf_[A-Za-z0-9]{6,}", text), "a token-like literal in the notebook"
    for source in _code_cells(path):
        tree = _python(source)
        for call in _calls(tree, "print"):
            assert "hf_token" not in ast.unparse(call), "the token is printed"
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and "hf_token" in map(ast.unparse, node.targets):
                assert not isinstance(node.value, ast.Constant), "the token is a literal"
                assert "os.environ.get('HF_TOKEN')" in ast.unparse(node.value)
                assert "getpass(" in ast.unparse(node.value)


# --------------------------------------------------------------------------- deploy notebooks


@pytest.mark.parametrize("path", DEPLOY, ids=_id)
def test_deploy_notebook_creates_the_three_resources_and_hands_over(path):
    sources = _code_cells(path)
    assert sources[0] == "%pip install -q -r ../../requirements.txt"
    tree = _python("\n".join(sources))
    for name in ("Model.create", "EndpointConfig.create", "Endpoint.create",
                 "common.wait_for_endpoint", "common.resolve_execution_role",
                 "image_uris.retrieve", "preset.validate", "common.preflight"):
        assert _calls(tree, name), f"{path.name} never calls {name}"
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    source = "\n".join(sources)
    assert source.index("common.preflight(") < source.index("Model.create("), (
        "the pre-flight must run before anything is created")
    assert "common.copy_weights_to_s3" not in calls or (
        source.index("common.preflight(") < source.index("common.copy_weights_to_s3(")), (
        "the pre-flight must run before the weights are copied")
    (routing,) = _calls(tree, "ProductionVariantRoutingConfig")
    assert ast.literal_eval(_keywords(routing)["routing_strategy"]) == (
        "LEAST_OUTSTANDING_REQUESTS")
    (variant,) = _calls(tree, "ProductionVariant")
    assert "container_startup_health_check_timeout_in_seconds" in _keywords(variant)
    key = state_key(recipe_of(path).slug)
    stored = [s for s in sources if f"\n%store {key}" in s]
    assert len(stored) == 2, "stored before anything is created, and again after the wait"
    first = _dict_literals(path)[key]
    assert {"recipe", "run", "region", "status", "preset", "endpoint_name",
            "endpoint_config_name", "model_name", "s3_uri"} <= set(first)
    assert first["status"] == "creating"
    store_at = source.index(f"%store {key}")
    for creation in ("Model.create(", "copy_weights_to_s3(", "put_object("):
        assert creation not in source or store_at < source.index(creation), (
            f"the names must be stored before {creation}")
    for create in ("Model.create", "EndpointConfig.create", "Endpoint.create"):
        (call,) = _calls(tree, create)
        assert ast.unparse(_keywords(call)["tags"]) == "tags.sdk()", f"{create} is not tagged"
    (tags,) = _calls(tree, "common.recipe_tags")
    assert ast.literal_eval(tags.args[0]) == recipe_of(path).slug


def test_the_recipes_are_known_by_their_size_and_container():
    # The slugs (and so the %store keys and tags) the notebook tests expect via recipe_of.
    assert [recipe_of(path).slug for path in DEPLOY] == [
        "llama-2-7b-chat-tgi", "llama-2-13b-chat-tgi", "llama-2-70b-chat-tgi",
        "llama-2-7b-chat-lmi", "llama-2-13b-chat-lmi", "llama-2-70b-chat-lmi"]
    assert [state_key(f"{recipe_of(path).slug}-scale") for path in SCALE][::5] == [
        "recipe_llama_2_7b_chat_tgi_scale", "recipe_llama_2_70b_chat_lmi_scale"]


NOTEBOOKS_AND_SCALE = NOTEBOOKS + SCALE


@pytest.mark.parametrize("path", NOTEBOOKS_AND_SCALE, ids=_id)
def test_every_notebook_installs_then_imports_in_the_same_kernel(path):
    sources = _code_cells(path)
    assert sources[0] == "%pip install -q -r ../../requirements.txt"
    reload = sources[1]
    tree = _python(reload)
    assert _calls(tree, "site.addsitedir") and _calls(tree, "importlib.invalidate_caches")
    assert all("import common" not in s for s in sources[:2]), "common before the re-read"
    assert any(re.search(r"^import common$", s, re.M) for s in sources[2:4])


@pytest.mark.parametrize("path", DEPLOY, ids=_id)
def test_the_deploy_notebook_ends_with_a_clean_up_that_spares_a_healthy_endpoint(path):
    source = _code_cells(path)[-1]
    key = state_key(recipe_of(path).slug)
    assert source.startswith(f"{key} = None") and f"\n%store -r {key}\n" in source
    (delete,) = _calls(_python(source), "common.delete_endpoint_resources")
    keywords = _keywords(delete)
    assert ast.literal_eval(keywords["keep_in_service"]) is True
    assert {"endpoint_config_name", "model_name", "s3_uri"} <= set(keywords)
    assert "CLEAN_UP" not in source, "it needs no flag: it never deletes an InService endpoint"


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_inference_restores_its_own_recipe_and_checks_the_endpoint(path):
    recipe = recipe_of(path)
    key = state_key(recipe.slug)
    (source,) = [s for s in _code_cells(path) if "common.check_recipe_endpoint" in s]
    assert source.startswith(f"{key} = None") and f"\n%store -r {key}\n" in source
    (check,) = _calls(_python(source), "common.check_recipe_endpoint")
    keywords = {k: ast.literal_eval(v) for k, v in _keywords(check).items()}
    assert keywords["recipe"] == recipe.slug
    assert keywords["container"] == recipe.container
    assert keywords["model_id"].startswith("meta-llama/Llama-2-")
    assert keywords["deploy_notebook"].startswith("1-deploy-")
    assert "%store -r endpoint_name" not in "\n".join(_code_cells(path)), "a shared key"


@pytest.mark.parametrize("path", [p for p in DEPLOY if recipe_of(p).container == "lmi"],
                         ids=_id)
def test_lmi_deploy_copies_the_weights_to_s3_with_serving_properties(path):
    tree = _python("\n".join(_code_cells(path)))
    assert not _calls(tree, "snapshot_download"), "the whole snapshot would fill the disk"
    (copy,) = _calls(tree, "common.copy_weights_to_s3")
    assert ast.unparse(copy.args[0]) == "preset.model_id"
    assert ast.unparse(_keywords(copy)["token"]) == "hf_token"
    assert _calls(tree, "common.render_serving_properties")
    assert "model.tar.gz" in ast.unparse(tree)
    (container,) = _calls(tree, "ContainerDefinition")
    assert "model_data_url" in _keywords(container)
    assert 'image_uris.retrieve("djl-lmi"' in "\n".join(_code_cells(path))


@pytest.mark.parametrize("path", [p for p in DEPLOY if recipe_of(p).container == "tgi"],
                         ids=_id)
def test_tgi_deploy_passes_the_token_only_through_the_environment(path):
    tree = _python("\n".join(_code_cells(path)))
    (environment,) = _calls(tree, "preset.tgi_environment")
    assert ast.unparse(_keywords(environment)["hf_token"]) == "hf_token"
    assert 'image_uris.retrieve("huggingface-llm"' in "\n".join(_code_cells(path))


# --------------------------------------------------------------------------- inference notebooks


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_inference_payloads_stream_and_cap_the_answer(path):
    payloads = _dict_literals(path)
    generate = payloads["payload"]
    assert generate["stream"] is True
    # The cap comes from the preset (checked against its token limits), not typed again.
    assert generate["parameters"]["max_new_tokens"] == "preset.max_new_tokens"
    assert generate["inputs"] == "prompt"
    chat = payloads["chat_payload"]
    assert chat["stream"] is True and chat["max_tokens"] > 0 and chat["messages"]


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_inference_streams_with_boto3_and_the_common_helpers(path):
    container = recipe_of(path).container
    tree = _python("\n".join(_code_cells(path)))
    stream_calls = _calls(tree, "runtime.invoke_endpoint_with_response_stream")
    assert len(stream_calls) == 3, "the raw stream, stream_answer and the chat's open_stream"
    for stream_call in stream_calls:
        assert set(_keywords(stream_call)) == {"EndpointName", "Body", "ContentType"}
    token_calls = _calls(tree, "common.iter_tokens")
    assert len(token_calls) == 3, "checking the hand decoder, stream_answer, open_stream"
    for tokens in token_calls:
        assert ast.literal_eval(_keywords(tokens)["container"]) == container
    assert _calls(tree, "common.show_chat") and _calls(tree, "common.Conversation.from_preset")
    assert _calls(tree, "common.show_stream")
    assert _calls(tree, "runtime.invoke_endpoint"), "no blocking call to compare with"
    assert _calls(tree, "common.plot_latency_comparison")
    prompts = _calls(tree, "common.build_llama2_prompt")
    assert len(prompts) == 2, "the first turn and the follow-up"
    assert all("bos" not in _keywords(call) for call in prompts), "the container adds BOS"
    text = path.read_text(encoding="utf-8")
    for needle in ("EARLYB1RD", "20% off the first 3 months", "STREAM2DREAM",
                   "15% off the first 6 months", "AnyCloud Internet Service",
                   "AnyCloud Streaming Service"):
        assert needle in text


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_clean_up_is_guarded_by_a_flag_that_defaults_to_false(path):
    (source,) = [s for s in _code_cells(path) if "delete_endpoint_resources" in s]
    tree = _python(source)
    (flag,) = [n for n in tree.body if isinstance(n, ast.Assign)
               and ast.unparse(n.targets[0]) == "CLEAN_UP"]
    assert ast.unparse(flag.value) == "os.environ.get('RECIPES_CLEAN_UP') == '1'"
    (guard,) = [n for n in tree.body if isinstance(n, ast.If)]
    assert ast.unparse(guard.test) == "CLEAN_UP"
    assert _calls(ast.Module(body=guard.body, type_ignores=[]),
                  "common.delete_endpoint_resources")
    assert not _calls(ast.Module(body=guard.orelse, type_ignores=[]),
                      "common.delete_endpoint_resources")
    (delete,) = _calls(tree, "common.delete_endpoint_resources")
    keywords = set(_keywords(delete))
    assert {"endpoint_config_name", "model_name"} <= keywords
    assert ("s3_uri" in keywords) == (recipe_of(path).container == "lmi"), (
        "LMI also deletes its S3 prefix")


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_the_raw_stream_is_decoded_by_hand_before_any_common_stream_helper(path):
    cells = _read(path).cells
    code = [(i, c.source) for i, c in enumerate(cells) if c.cell_type == "code"]

    def first(needle: str) -> int:
        return next((i for i, source in code if needle in source), len(cells))

    raw = first('events = list(response["Body"])')
    by_hand = first("def decode_by_hand(events):")
    helper = min(first(f"common.{name}(") for name in (
        "iter_tokens", "iter_text", "show_stream", "invoke_stream", "LineIterator"))
    assert raw < by_hand < helper, "raw bytes, then the hand loop, then the helpers"
    check = cells[helper].source
    assert "by_hand = \"\".join(decode_by_hand(events))" in check
    assert "common.iter_tokens(events" in check and "assert by_hand == by_helper" in check
    loop = cells[by_hand].source
    assert "buffer" in loop and 'split(b"\\n", 1)' in loop  # joins a line split across parts
    bullets = cells[helper + 1].source
    for topic in ("character split", "Error events", "stalled or dropped", "Special tokens"):
        assert topic in bullets


SETTINGS = ("max_new_tokens", "do_sample", "temperature", "top_p", "return_full_text", "stop")


@pytest.mark.parametrize("path", INFERENCE, ids=_id)
def test_every_generation_setting_is_explained_before_the_cell_that_sets_it(path):
    cells = _read(path).cells
    (index,) = [i for i, c in enumerate(cells)
                if c.cell_type == "code" and c.source.startswith("payload = {")]
    explained = cells[index - 1].source
    for name in SETTINGS:
        assert re.search(rf"^- `{name}`", explained, re.M), f"{name} is not explained"
    assert "(the preset's, 512)" in explained and "`MAX_TOTAL_TOKENS` (4,096)" in explained


@pytest.mark.parametrize("path", DEPLOY + SCALE, ids=_id)
def test_every_container_setting_is_explained_with_the_presets_value(path):
    recipe = recipe_of(path)
    container, preset = recipe.container, recipe.preset
    cells = _read(path).cells
    marker = ("common.render_serving_properties(" if container == "lmi"
              else "preset.tgi_environment(")
    (index,) = [i for i, c in enumerate(cells) if c.cell_type == "code" and marker in c.source]
    explained = cells[index - 1].source
    if container == "tgi":
        for name, value in (("MAX_INPUT_TOKENS", preset.max_input_tokens),
                            ("MAX_TOTAL_TOKENS", preset.max_total_tokens),
                            ("MAX_BATCH_PREFILL_TOKENS", preset.max_batch_prefill_tokens),
                            ("SM_NUM_GPUS", preset.num_gpus)):
            assert f"- `{name}` = {value:,}:" in explained, name
    else:
        properties = preset.serving_properties("s3://bucket/prefix/")
        for key in properties:
            assert f"`{key}" in explained, f"{key} is not explained"
        for key in ("option.tensor_parallel_degree", "option.max_model_len",
                    "option.max_rolling_batch_size"):
            assert f"`{key}={properties[key]}`" in explained, key


@pytest.mark.parametrize("path", NOTEBOOKS + SCALE, ids=_id)
def test_the_first_cell_says_how_long_and_what_it_costs_on_aws(path):
    price = recipe_of(path).preset.instance.approx_usd_per_hour
    first = _read(path).cells[0].source
    match = re.search(r"\*\*Time and cost on AWS\.\*\* About (\d+) to (\d+) minutes", first)
    assert match and int(match.group(1)) < int(match.group(2))
    assert f"**${price:.2f} per hour**" in first
    assert re.search(r"\$\d+\.\d\d to \$\d+\.\d\d", first), "no cost for the run"
    if path in SCALE:
        for wait in ("provisioned", "15-minute scale-in", "idle release"):
            assert wait in first, wait


@pytest.mark.parametrize("path", NOTEBOOKS + SCALE, ids=_id)
def test_no_container_release_engineering_in_the_notebooks(path):
    from common.presets import LMI_VERSION_REASON

    text = "\n".join(cell.source for cell in _read(path).cells)
    assert LMI_VERSION_REASON not in text
    for remark in ("Upstream CI", "forward-compatibility", "0.38.0"):
        assert remark not in text
