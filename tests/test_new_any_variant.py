"""`new` for the variants no list names, read from an offline cache the test writes: a Llama 4
Scout-shaped mixture of experts, a fine-tune whose template is in chat_template.jinja, a
Llama 3.2 Vision-shaped model -- both containers, their support checked, the model's own
sampling, the revision pinned."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import nbformat
import pytest
from model_fixtures import (
    FINE_TUNE_ID,
    VISION_ID,
    fine_tune_documents,
    go_offline,
    repository_files,
    vision_documents,
    write_user_cache,
)

from common.errors import PresetError, UnsupportedModelError
from common.local.hub import write_snapshot, write_tiny_snapshot
from common.model_facts import model_facts_from_documents, read_model_facts
from common.notebooks.__main__ import main as notebooks_main
from common.notebooks.__main__ import variants_table
from common.presets import (
    GPU_MEMORY_HEADROOM,
    INSTANCE_TYPES,
    active_size_from_model_id,
    size_from_model_id,
)
from common.sizing import size_deployment
from common.support import (
    LMI_ARCHITECTURES,
    TGI_MODEL_TYPES,
    check_container_support,
    container_support,
    serving_containers,
)
from common.variants import variant_files

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
GIB = 1024**3


@pytest.fixture(scope="module")
def user_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("user-hub")
    write_user_cache(cache)
    write_tiny_snapshot(cache, SCOUT)  # as the stand-in serves it: the catalogue's files
    return cache


@pytest.fixture
def offline(user_cache, monkeypatch) -> Path:
    return go_offline(monkeypatch, user_cache)


def _cells(path: Path, kind: str) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == kind)


def _new(tmp_path: Path, *args: str) -> tuple[int, str, list[Path]]:
    out = io.StringIO()
    status = notebooks_main(["new", *args, "--out", str(tmp_path)], out=out)
    return status, out.getvalue(), sorted(tmp_path.glob("*.ipynb"))


# --------------------------------------------------------------------------- the support tables


def test_the_pinned_containers_serve_the_llama_architectures():
    assert {"llama", "llama4", "mllama"} <= TGI_MODEL_TYPES
    assert {"LlamaForCausalLM", "Llama4ForCausalLM",
            "Llama4ForConditionalGeneration"} <= LMI_ARCHITECTURES
    assert "MllamaForConditionalGeneration" not in LMI_ARCHITECTURES


def test_llama_3_2_vision_is_served_by_tgi_only_and_lmi_says_which_version_did():
    facts = model_facts_from_documents(VISION_ID, vision_documents())
    assert serving_containers(facts) == ("tgi",)
    assert container_support(facts, "tgi").served
    with pytest.raises(UnsupportedModelError) as caught:
        check_container_support(facts, "lmi")
    message = str(caught.value)
    assert "MllamaForConditionalGeneration" in message
    assert "0.10.2" in message and "LMI 0.34.0" in message  # the version that served it
    assert "TGI 3.3.6 serves model_type 'mllama'" in message and "--container tgi" in message
    assert caught.value.container == "lmi" and caught.value.model_type == "mllama"


def test_an_architecture_neither_serves_is_refused_for_both():
    documents = fine_tune_documents()
    documents["config.json"] = {**documents["config.json"], "model_type": "brand_new",
                                "architectures": ["BrandNewForCausalLM"]}
    facts = model_facts_from_documents(FINE_TUNE_ID, documents)
    for container in ("tgi", "lmi"):
        with pytest.raises(UnsupportedModelError, match="neither pinned container serves it"):
            check_container_support(facts, container)
    assert serving_containers(facts) == ()


def test_a_config_that_names_no_architecture_is_not_checked():
    documents = fine_tune_documents()
    documents["config.json"] = {k: v for k, v in documents["config.json"].items()
                                if k not in ("architectures", "model_type")}
    facts = model_facts_from_documents(FINE_TUNE_ID, documents)
    for container in ("tgi", "lmi"):
        support = check_container_support(facts, container)
        assert support.served is None and "not checked" in support.describe()


# --------------------------------------------------------------------------- Llama 4 sizing


def test_a_llama4_config_is_sized_on_gpus_that_hold_every_expert():
    facts = model_facts_from_documents(SCOUT, variant_files(SCOUT))
    sizing = size_deployment(facts, "lmi")
    instance, preset = sizing.instance, sizing.preset
    total_gib = facts.weight_bytes / GIB
    assert total_gib > 200  # all 109B parameters, not the 17B the id names
    assert total_gib <= instance.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)
    assert facts.num_attention_heads % instance.gpus == 0
    assert facts.num_kv_heads % instance.gpus == 0
    assert instance.name == "ml.g6e.48xlarge"
    # The KV cache follows the text model: 48 layers x 8 KV heads x 128 x 2 x 2 bytes.
    assert sizing.kv_cache_tokens == sizing.kv_cache_bytes // (2 * 48 * 8 * 128 * 2)
    assert preset.max_total_tokens <= sizing.kv_cache_tokens // 4
    cheaper = [i for i in INSTANCE_TYPES.values() if i.approx_usd_per_hour is not None
               and i.approx_usd_per_hour < instance.approx_usd_per_hour]
    for other in cheaper:
        with pytest.raises(PresetError):
            size_deployment(facts, "lmi", instance_type=other.name)
    text = sizing.explain()
    assert "108.64 B parameters in all, 17.17 B active per token" in text
    assert "2 x 48 layers x 8 KV heads x 128 head dim x 2 bytes" in text


def test_the_size_in_a_moe_id_is_the_active_one():
    assert size_from_model_id(SCOUT) is None
    assert active_size_from_model_id(SCOUT) == 17.0
    assert size_from_model_id("meta-llama/Llama-3.1-8B-Instruct") == 8.0
    facts = model_facts_from_documents(SCOUT, variant_files(SCOUT))
    preset = size_deployment(facts, "tgi").preset
    assert preset.params_billion == pytest.approx(108.64)
    preset.validate()  # 108.64B against "17B" in the id: no complaint
    with pytest.raises(PresetError, match="17B parameters are active per token"):
        dataclasses.replace(preset, params_billion=8.0).validate()


# --------------------------------------------------------------------------- new


@pytest.mark.parametrize("repo", [SCOUT, FINE_TUNE_ID])
def test_new_writes_both_pairs_for_both_containers_from_an_offline_cache(offline, tmp_path,
                                                                         repo):
    status, printed, paths = _new(tmp_path, "--model-id", repo, "--container", "both")
    assert status == 0, printed
    assert len(paths) == 4
    facts = read_model_facts(repo)
    builder = facts.prompt_builder()
    for container in ("tgi", "lmi"):
        deploy, inference = sorted(p for p in paths if f"-{container}" in p.name)
        sizing = size_deployment(facts, container)
        assert f"`{sizing.instance.name}`" in _cells(deploy, "markdown")
        assert f'common.size_deployment(facts, "{container}")' in _cells(deploy, "code")
        code = _cells(inference, "code")
        assert "common.prompt_builder_for(preset.model_id" in code
        assert "revision=preset.revision" in code
    # the summary names the container support and the sizing, per container
    assert printed.count("wrote ") == 4
    assert "TGI 3.3.6 serves model_type" in printed
    assert "LMI 0.36.0 (vLLM 0.23.1) serves architecture" in printed
    if repo == SCOUT:
        assert "mixture of experts" in printed and "multimodal model" in printed
        assert builder([{"role": "user", "content": "Hi"}]) == (
            "<|header_start|>user<|header_end|>\n\nHi<|eot|>"
            "<|header_start|>assistant<|header_end|>\n\n")
    else:
        assert builder([{"role": "user", "content": "Hi"}]) == (
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_the_model_s_own_sampling_goes_into_the_inference_notebook(offline, tmp_path):
    status, printed, paths = _new(tmp_path, "--model-id", FINE_TUNE_ID, "--container", "lmi")
    assert status == 0, printed
    inference = next(p for p in paths if p.name.startswith("2-"))
    code, text = _cells(inference, "code"), _cells(inference, "markdown")
    assert '"temperature": 0.7,' in code and '"top_p": 0.95,' in code
    assert "temperature=0.7," in code and "top_p=0.95," in code  # the chat too
    assert "0.6" not in code
    assert "`generation_config.json`" in text and "temperature 0.7 and top_p 0.95" in text


def test_tgi_cannot_read_a_jinja_only_template_so_its_messages_cell_is_left_out(offline,
                                                                                 tmp_path):
    status, printed, paths = _new(tmp_path, "--model-id", FINE_TUNE_ID, "--container", "tgi")
    assert status == 0, printed
    inference = next(p for p in paths if p.name.startswith("2-"))
    assert "chat_payload" not in _cells(inference, "code")
    assert "`chat_template.jinja` only" in _cells(inference, "markdown")
    assert "TGI 3.3.6 reads a template from" in printed


def test_a_multimodal_model_is_said_plainly_to_be_served_for_text(offline, tmp_path):
    status, printed, paths = _new(tmp_path, "--model-id", VISION_ID, "--container", "tgi")
    assert status == 0, printed
    for path in paths:
        assert "for text chat only" in _cells(path, "markdown")


def test_new_stops_for_a_container_that_does_not_serve_the_model(offline, tmp_path, capsys):
    status, _, paths = _new(tmp_path, "--model-id", VISION_ID, "--container", "lmi")
    assert status == 2 and paths == []
    err = capsys.readouterr().err
    assert "does not serve" in err and "--container tgi" in err and "LMI 0.34.0" in err


def test_new_both_writes_the_pair_of_the_container_that_serves_it(offline, tmp_path):
    status, printed, paths = _new(tmp_path, "--model-id", VISION_ID, "--container", "both")
    assert status == 0, printed
    assert [p.name.endswith("-tgi.ipynb") or "-tgi-" in p.name for p in paths] == [True, True]
    assert "no LMI pair:" in printed and "MllamaForConditionalGeneration" in printed


def test_new_pins_the_revision_in_the_deploy_notebook(offline, tmp_path):
    documents = fine_tune_documents()
    write_snapshot(offline, FINE_TUNE_ID, repository_files(documents), revision="v2")
    for container in ("tgi", "lmi"):
        status, printed, paths = _new(tmp_path / container, "--model-id", FINE_TUNE_ID,
                                      "--container", container, "--revision", "v2")
        assert status == 0, printed
        deploy = next(p for p in paths if p.name.startswith("1-"))
        code = _cells(deploy, "code")
        assert 'REVISION = "v2"' in code
        assert "read_model_facts(MODEL_ID, token=hf_token, revision=REVISION)" in code
        if container == "lmi":
            assert "revision=preset.revision," in code  # the weight copy
    preset = size_deployment(read_model_facts(FINE_TUNE_ID, revision="v2"), "tgi").preset
    assert preset.tgi_environment()["HF_MODEL_REVISION"] == "v2"
    lmi = dataclasses.replace(preset, container="lmi")
    assert lmi.serving_properties(FINE_TUNE_ID)["option.revision"] == "v2"  # from the Hub
    assert "option.revision" not in lmi.serving_properties("s3://bucket/prefix/")


def test_the_variants_table_has_llama4_and_says_who_serves_each():
    table = variants_table("tgi")
    row = next(line for line in table.splitlines() if SCOUT in line)
    assert "ml.g6e.48xlarge" in row and "196,608 (192 KiB)" in row and "TGI, LMI" in row
