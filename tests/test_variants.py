"""Any Llama variant from its model id: facts from the (offline) Hub, sizing, `new`, errors."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import nbformat
import pytest
from model_fixtures import go_offline, serving_properties_tarball

from common.errors import ModelFactsError, PresetError
from common.local.hub import VARIANT_REPOS, write_tiny_snapshot
from common.model_facts import read_model_facts
from common.notebooks.__main__ import main as notebooks_main
from common.notebooks.__main__ import variants_table
from common.presets import GPU_MEMORY_HEADROOM, INSTANCE_TYPES
from common.sizing import FULL_REQUESTS, size_deployment
from common.variants import VARIANTS

GIB = 1024**3


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hub")
    for repo in VARIANT_REPOS:
        write_tiny_snapshot(cache, repo)
    return cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> Path:
    return go_offline(monkeypatch, hub_cache)


def _code(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "code")


def _markdown(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


# --------------------------------------------------------------------------- facts


@pytest.mark.parametrize("repo", VARIANT_REPOS)
def test_the_facts_read_back_are_the_published_ones(offline_hub, repo):
    facts = read_model_facts(repo)
    variant = VARIANTS[repo]
    assert (facts.num_layers, facts.num_attention_heads, facts.num_kv_heads,
            facts.hidden_size, facts.max_position_embeddings, facts.vocab_size) == (
        variant.layers, variant.heads, variant.kv_heads, variant.hidden, variant.positions,
        variant.vocab)
    head_dim = variant.head_dim or variant.hidden // variant.heads
    assert facts.kv_bytes_per_token == 2 * variant.layers * variant.kv_heads * head_dim * 2
    assert facts.weight_bytes == variant.total_size
    assert facts.chat_template == variant.template
    if repo.startswith("meta-llama/") and "Llama-3" in repo:
        assert {"<|eot_id|>", "<|end_of_text|>"} <= set(facts.end_tokens)
    assert facts.end_tokens


def test_llama31_8b_needs_128_kib_per_token(offline_hub):
    assert read_model_facts("meta-llama/Llama-3.1-8B-Instruct").kv_bytes_per_token == 128 * 1024


# --------------------------------------------------------------------------- sizing


@pytest.mark.parametrize("repo", VARIANT_REPOS)
@pytest.mark.parametrize("container", ["tgi", "lmi"])
def test_sizing_holds_against_the_kv_cache_arithmetic(offline_hub, repo, container):
    facts = read_model_facts(repo)
    sizing = size_deployment(facts, container)
    preset, instance = sizing.preset, sizing.instance
    assert facts.weight_bytes / GIB <= instance.total_gpu_memory_gib * (1 - GPU_MEMORY_HEADROOM)
    assert facts.num_attention_heads % instance.gpus == 0
    assert facts.num_kv_heads % instance.gpus == 0
    assert preset.max_total_tokens <= facts.max_position_embeddings
    assert preset.max_total_tokens * FULL_REQUESTS * facts.kv_bytes_per_token <= (
        sizing.kv_cache_bytes + facts.kv_bytes_per_token * FULL_REQUESTS * 256)
    assert preset.max_input_tokens < preset.max_total_tokens <= preset.max_batch_prefill_tokens + (
        preset.max_total_tokens - preset.max_input_tokens)
    cheaper = [i for i in INSTANCE_TYPES.values() if i.approx_usd_per_hour is not None
               and i.approx_usd_per_hour < instance.approx_usd_per_hour]
    for other in cheaper:  # nothing cheaper could have served it
        with pytest.raises(PresetError):
            size_deployment(facts, container, instance_type=other.name)
    preset.validate()


def test_llama31_8b_on_one_a10g_is_not_configured_for_131072_tokens(offline_hub):
    facts = read_model_facts("meta-llama/Llama-3.1-8B-Instruct")
    sizing = size_deployment(facts, "tgi", instance_type="ml.g5.2xlarge")
    assert sizing.max_total_tokens < 131072
    assert 8192 <= sizing.max_total_tokens <= sizing.kv_cache_tokens // FULL_REQUESTS
    text = sizing.explain()
    assert "2 x 32 layers x 8 KV heads x 128 head dim x 2 bytes = 131,072 bytes" in text
    assert "ml.g5.2xlarge" in text


def test_an_override_that_does_not_fit_is_explained(offline_hub):
    facts = read_model_facts("meta-llama/Llama-3.1-70B-Instruct")
    with pytest.raises(PresetError, match=r"does not fit.*fp16 weights"):
        size_deployment(facts, "tgi", instance_type="ml.g5.2xlarge")
    eight = size_deployment(read_model_facts("meta-llama/Llama-3.1-8B-Instruct"), "tgi",
                            instance_type="ml.g5.2xlarge")
    with pytest.raises(PresetError, match="KV cache cannot hold one full request"):
        dataclasses.replace(eight.preset, max_total_tokens=65536, max_input_tokens=61440,
                            max_batch_prefill_tokens=61440).validate()
    with pytest.raises(PresetError, match="exceeds the model's context length"):
        code34 = size_deployment(read_model_facts("codellama/CodeLlama-34b-Instruct-hf"), "tgi")
        dataclasses.replace(code34.preset, max_total_tokens=32768, max_input_tokens=30000,
                            max_batch_prefill_tokens=30000).validate()


def test_heads_that_the_gpus_do_not_divide_are_refused(offline_hub):
    preset = size_deployment(read_model_facts("meta-llama/Llama-3.2-3B-Instruct"), "tgi").preset
    odd = dataclasses.replace(preset, num_attention_heads=27)
    with pytest.raises(PresetError, match="do not divide the model's 27 attention heads"):
        dataclasses.replace(odd, instance_type="ml.g5.12xlarge", num_gpus=4).validate()


# --------------------------------------------------------------------------- new


@pytest.mark.parametrize("repo", VARIANT_REPOS)
@pytest.mark.parametrize("container", ["tgi", "lmi"])
def test_new_with_only_a_model_id_writes_a_right_pair(offline_hub, tmp_path, repo, container):
    out = io.StringIO()
    status = notebooks_main(["new", "--model-id", repo, "--container", container,
                             "--out", str(tmp_path)], out=out)
    assert status == 0, out.getvalue()
    deploy, inference = sorted(tmp_path.glob("*.ipynb"))
    sizing = size_deployment(read_model_facts(repo), container)
    deploy_code, deploy_text = _code(deploy), _markdown(deploy)
    assert f'MODEL_ID = "{repo}"' in deploy_code
    assert "common.size_deployment(facts" in deploy_code
    assert "print(sizing.explain())" in deploy_code
    assert f"`{sizing.instance.name}`" in deploy_text
    assert f"**{sizing.max_total_tokens:,}**" in deploy_text
    assert f"{sizing.facts.kv_bytes_per_token:,} bytes per token" in deploy_text
    from common.model_facts import LICENCES, model_family

    family = model_family(repo)
    assert f"{family} is gated" in deploy_text
    assert LICENCES[family][1] in deploy_text
    printed = out.getvalue()
    assert f": {sizing.instance.name} (" in printed.splitlines()[0]
    assert f"MAX_TOTAL_TOKENS (max_model_len) to {sizing.max_total_tokens:,} tokens" in printed
    assert printed.rstrip().endswith(str(inference))
    inference_code = _code(inference)
    assert "common.prompt_builder_for(preset.model_id" in inference_code
    assert "stop_tokens=build_prompt.stop_tokens" in inference_code
    assert "build_llama2_prompt" not in inference_code
    assert "begin_of_text" not in inference_code


def test_new_with_an_instance_override_pins_it(offline_hub, tmp_path):
    status = notebooks_main(["new", "--model-id", "meta-llama/Llama-3.1-8B-Instruct",
                             "--container", "tgi", "--instance-type", "ml.g5.2xlarge",
                             "--out", str(tmp_path)])
    assert status == 0
    deploy = sorted(tmp_path.glob("*.ipynb"))[0]
    assert 'instance_type="ml.g5.2xlarge"' in _code(deploy)


def test_new_refuses_an_override_that_does_not_fit(offline_hub, tmp_path, capsys):
    status = notebooks_main(["new", "--model-id", "meta-llama/Llama-3.3-70B-Instruct",
                             "--container", "lmi", "--instance-type", "ml.g5.2xlarge",
                             "--out", str(tmp_path)])
    assert status == 2
    assert "does not fit" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_new_takes_max_total_tokens_as_an_override_and_checks_it(offline_hub, tmp_path,
                                                                 capsys):
    args = ["new", "--model-id", "meta-llama/Llama-3.1-8B-Instruct", "--container", "lmi",
            "--instance-type", "ml.g5.2xlarge", "--out", str(tmp_path)]
    assert notebooks_main([*args, "--max-total-tokens", "8192"]) == 0
    deploy = sorted(tmp_path.glob("*.ipynb"))[0]
    assert "dataclasses.replace(preset, max_total_tokens=8192" in _code(deploy)
    for path in tmp_path.glob("*.ipynb"):
        path.unlink()
    assert notebooks_main([*args, "--max-total-tokens", "131072"]) == 2
    assert "KV cache cannot hold one full request" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_new_without_the_hub_needs_every_fact_by_hand(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        _raise(AssertionError("the Hub must not be read")))
    status = notebooks_main(["new", "--model-id", "meta-llama/Llama-3.1-8B-Instruct",
                             "--container", "tgi", "--instance-type", "ml.g5.2xlarge",
                             "--prompt-format", "llama3", "--params-billion", "8.03",
                             "--max-total-tokens", "8192", "--out", str(tmp_path)])
    assert status == 0
    deploy, inference = sorted(tmp_path.glob("*.ipynb"))
    assert "max_total_tokens=8192" in _code(deploy)
    assert "common.build_llama3_prompt(conversation)" in _code(inference)


def test_the_variants_table_lists_every_variant():
    table = variants_table("tgi")
    for repo in VARIANT_REPOS:
        assert f"`{repo}`" in table
    assert "131,072 (128 KiB)" in table


# --------------------------------------------------------------------------- errors


def _raise(exc):
    def download(*args, **kwargs):
        raise exc
    return download


def _http_error(cls, message):
    import httpx

    response = httpx.Response(403 if "Gated" in cls.__name__ else 404,
                              request=httpx.Request("GET", "https://huggingface.co/x"))
    return cls(message, response=response)


@pytest.mark.parametrize(("make", "reason", "words"), [
    (lambda e: e.LocalEntryNotFoundError("offline"), "offline and not cached",
     "HF_HUB_OFFLINE"),
    (lambda e: _http_error(e.GatedRepoError, "gated"), "gated repository",
     "accept the licence"),
    (lambda e: _http_error(e.RepositoryNotFoundError, "nope"), "unknown model id",
     "check the spelling"),
    (lambda e: e.EntryNotFoundError("missing"), "missing file", "has no config.json"),
])
def test_every_hub_failure_names_the_file_the_reason_and_the_flag(monkeypatch, make, reason,
                                                                   words):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _raise(make(errors)))
    with pytest.raises(ModelFactsError) as caught:
        read_model_facts("meta-llama/Llama-3.1-8B-Instruct")
    error = caught.value
    assert error.filename == "config.json"
    assert error.reason.startswith(reason)
    assert "--instance-type" in error.flag
    message = str(error)
    assert "config.json" in message and words in message and "--params-billion" in message


def test_gated_without_a_token_says_no_token_was_given(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        _raise(_http_error(errors.GatedRepoError, "gated")))
    with pytest.raises(ModelFactsError, match="no Hugging Face token was given"):
        read_model_facts("meta-llama/Llama-3.1-8B-Instruct", token=None)
    with pytest.raises(ModelFactsError, match="refused this token"):
        read_model_facts("meta-llama/Llama-3.1-8B-Instruct", token="hf_dummy")


def test_a_missing_tokenizer_config_names_the_prompt_format_flag(offline_hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    real = huggingface_hub.hf_hub_download

    def download(repo_id, filename, **kwargs):
        if filename == "tokenizer_config.json":
            raise errors.EntryNotFoundError("missing")
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(ModelFactsError, match="--prompt-format") as caught:
        read_model_facts("meta-llama/Llama-3.1-8B-Instruct")
    assert caught.value.filename == "tokenizer_config.json"


def test_an_unknown_model_offline_fails_with_the_file_and_never_falls_back(offline_hub, tmp_path,
                                                                             capsys):
    status = notebooks_main(["new", "--model-id", "meta-llama/Llama-9-1B-Instruct",
                             "--container", "tgi", "--out", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert ("config.json" in err and "offline and not cached" not in err) or "cache" in err
    assert "--params-billion" in err
    assert list(tmp_path.iterdir()) == []


def test_a_model_id_that_is_not_owner_name_is_refused():
    with pytest.raises(ModelFactsError, match="owner/name"):
        read_model_facts("llama")


def test_a_model_without_a_chat_template_needs_prompt_format(offline_hub):
    facts = read_model_facts("meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(ModelFactsError, match="--prompt-format"):
        dataclasses.replace(facts, chat_template=None).prompt_builder()


def test_config_without_layers_names_the_fact(offline_hub):
    from common.model_facts import model_facts_from_files

    with pytest.raises(ModelFactsError, match=r"num_hidden_layers.*--params-billion"):
        model_facts_from_files("a/b", {"num_attention_heads": 32}, {}, None, None)


def test_the_weights_are_counted_from_config_when_there_is_no_index():
    from common.model_facts import model_facts_from_files
    from common.variants import variant_files

    files = variant_files("meta-llama/Llama-3.2-1B-Instruct")
    facts = model_facts_from_files("meta-llama/Llama-3.2-1B-Instruct", files["config.json"],
                                   files["tokenizer_config.json"],
                                   files["generation_config.json"], None)
    assert facts.weight_bytes == VARIANTS["meta-llama/Llama-3.2-1B-Instruct"].total_size
    assert "counted from config.json" in facts.weights_source
    assert json.dumps(facts.end_tokens)


# --------------------------------------------------------------------------- the stand-in


def test_the_stand_in_reads_which_model_an_lmi_endpoint_serves():
    from common.local.served_model import served_model_id

    objects = {
        ("b", "p/code/model.tar.gz"): serving_properties_tarball("engine=Python\noption.model_id=s3://b/p/model/\n"),
        ("b", "p/model/config.json"): json.dumps(
            {"_name_or_path": "meta-llama/Llama-3.2-1B-Instruct"}).encode(),
        ("b", "hub/model.tar.gz"): serving_properties_tarball(
            "option.model_id=codellama/CodeLlama-7b-Instruct-hf"),
    }

    def read(bucket, key):
        return objects.get((bucket, key))

    assert served_model_id("s3://b/p/code/model.tar.gz", read) == (
        "meta-llama/Llama-3.2-1B-Instruct")
    assert served_model_id("s3://b/hub/model.tar.gz", read) == "codellama/CodeLlama-7b-Instruct-hf"
    assert served_model_id("s3://b/missing.tar.gz", read) is None
    assert served_model_id(None, read) is None


@pytest.mark.parametrize(("repo", "end"), [
    ("meta-llama/Llama-3.1-8B-Instruct", "<|eot_id|>"),
    ("codellama/CodeLlama-70b-Instruct-hf", "<step>"),
    ("meta-llama/Llama-2-7b-chat-hf", "</s>"),
    (None, "</s>"),
])
def test_the_replay_ends_with_the_models_own_end_token(repo, end):
    from common.local.backends import GenerationRequest, ReplayBackend

    tokens = ReplayBackend(0, 0).tokens_for(GenerationRequest(prompt="Hi", model_id=repo))
    assert tokens[-1].text == end and tokens[-1].special
    assert all(t.text != end for t in tokens[:-1])


def test_the_messages_route_renders_the_served_models_template():
    from chat_reference import apply_chat_template

    from common.local.containers import _render_chat

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    for repo in ("meta-llama/Llama-3.1-8B-Instruct", "codellama/CodeLlama-70b-Instruct-hf"):
        variant = VARIANTS[repo]
        assert _render_chat(messages, repo) == apply_chat_template(
            variant.template, *variant.special_tokens, messages)
    assert _render_chat(messages, None).startswith("<s>[INST] <<SYS>>")
