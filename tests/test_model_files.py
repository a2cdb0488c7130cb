"""Reading a model as transformers does: every file layout of the chat template, every config
shape (flat, nested under ``text_config``, mixture of experts), the model's own sampling, the
weights and the active parameters -- from files the tests write, through the real Hub code."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from chat_reference import apply_chat_template
from model_fixtures import (
    CHATML_TEMPLATE,
    FINE_TUNE_ID,
    VISION_ID,
    fine_tune_documents,
    go_offline,
    repository_files,
    vision_documents,
    write_model_folder,
)

import common
from common.errors import ModelFactsError
from common.local.hub import write_snapshot
from common.model_facts import (
    chat_template_from_files,
    count_weight_bytes,
    model_facts_from_documents,
    read_model_facts,
)
from common.variants import (
    LLAMA2_TEMPLATE,
    LLAMA4_TEMPLATE,
    LLAMA31_TEMPLATE,
    VARIANTS,
    variant_files,
)

ROOT = Path(__file__).resolve().parents[1]
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
MESSAGES = [{"role": "system", "content": "You are brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"}]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    return go_offline(monkeypatch, tmp_path / "hub")


# --------------------------------------------------------------------------- template files


def test_the_template_is_looked_for_in_transformers_order():
    tokenizer = {"chat_template": "from tokenizer_config"}
    processor = {"chat_template": "from chat_template.json"}
    assert chat_template_from_files(tokenizer, "from jinja", processor) == (
        "from jinja", "chat_template.jinja")
    assert chat_template_from_files(tokenizer, None, processor) == (
        "from chat_template.json", "chat_template.json")
    assert chat_template_from_files(tokenizer, "  \n", None) == (
        "from tokenizer_config", "tokenizer_config.json")
    named = {"chat_template": [{"name": "tool_use", "template": "tools"},
                               {"name": "default", "template": "the default"}]}
    assert chat_template_from_files(named) == ("the default", "tokenizer_config.json")
    assert chat_template_from_files({}, None, {}) == (None, None)


@pytest.mark.parametrize("layout", ["tokenizer_config", "named", "jinja", "json"])
def test_every_layout_read_from_an_offline_cache_gives_the_template(offline_cache, layout):
    documents = fine_tune_documents()
    tokenizer = documents["tokenizer_config.json"]
    del documents["chat_template.jinja"]
    if layout == "tokenizer_config":
        tokenizer["chat_template"] = CHATML_TEMPLATE
    elif layout == "named":
        tokenizer["chat_template"] = [{"name": "default", "template": CHATML_TEMPLATE},
                                      {"name": "rag", "template": "{{ 'rag' }}"}]
    elif layout == "jinja":
        documents["chat_template.jinja"] = CHATML_TEMPLATE
        tokenizer["chat_template"] = "{{ 'an older template, shadowed by the .jinja file' }}"
    else:
        documents["chat_template.json"] = {"chat_template": CHATML_TEMPLATE}
    write_snapshot(offline_cache, FINE_TUNE_ID, repository_files(documents, weights=False))
    facts = read_model_facts(FINE_TUNE_ID)
    assert facts.chat_template == CHATML_TEMPLATE
    expected_source = {"tokenizer_config": "tokenizer_config.json",
                       "named": "tokenizer_config.json", "jinja": "chat_template.jinja",
                       "json": "chat_template.json"}[layout]
    assert facts.template_source == expected_source
    assert facts.prompt_builder()(MESSAGES).startswith("<|im_start|>system\nYou are brief.")


def test_a_model_without_any_template_names_the_three_files(offline_cache):
    documents = fine_tune_documents()
    del documents["chat_template.jinja"]
    write_snapshot(offline_cache, FINE_TUNE_ID, repository_files(documents, weights=False))
    with pytest.raises(ModelFactsError) as caught:
        read_model_facts(FINE_TUNE_ID).prompt_builder()
    message = str(caught.value)
    for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json",
                 "--prompt-format"):
        assert name in message


def test_optional_files_missing_from_an_offline_cache_are_absent_not_errors(offline_cache):
    documents = fine_tune_documents()
    del documents["generation_config.json"]
    del documents["model.safetensors.index.json"]
    write_snapshot(offline_cache, FINE_TUNE_ID, repository_files(documents, weights=False))
    facts = read_model_facts(FINE_TUNE_ID)
    assert facts.end_tokens == ("<|im_end|>", "<|eot_id|>")  # config.json's eos_token_id
    assert facts.sampling == {}
    assert "counted from config.json" in facts.weights_source


def test_the_revision_is_read_and_remembered(offline_cache):
    write_snapshot(offline_cache, FINE_TUNE_ID, repository_files(fine_tune_documents()),
                   revision="v2")
    facts = read_model_facts(FINE_TUNE_ID, revision="v2")
    assert facts.revision == "v2"
    from common.sizing import size_deployment

    assert size_deployment(facts, "tgi").preset.revision == "v2"


# ------------------------------------------------------------------- prompts vs transformers


def _forms(template: str, specials: dict[int, str], bos: str, eos: str):
    """(name, documents) for each way a repository can carry ``template``."""
    from model_fixtures import tokenizer_config

    base = {"config.json": variant_files("meta-llama/Llama-3.1-8B-Instruct")["config.json"],
            "generation_config.json": {"eos_token_id": [min(i for i, t in specials.items()
                                                            if t == eos)]}}
    plain = tokenizer_config(specials, bos, eos)
    yield "tokenizer_config.json", {**base, "tokenizer_config.json": {
        **plain, "chat_template": template}}
    yield "tokenizer_config.json (named)", {**base, "tokenizer_config.json": {
        **plain, "chat_template": [{"name": "default", "template": template},
                                   {"name": "other", "template": "{{ 'x' }}"}]}}
    yield "chat_template.jinja", {**base, "tokenizer_config.json": plain,
                                  "chat_template.jinja": template}
    yield "chat_template.json", {**base, "tokenizer_config.json": plain,
                                 "chat_template.json": {"chat_template": template}}


_FAMILIES = {
    "llama2": (LLAMA2_TEMPLATE, {1: "<s>", 2: "</s>"}, "<s>", "</s>"),
    "llama3.1": (LLAMA31_TEMPLATE, {128000: "<|begin_of_text|>", 128009: "<|eot_id|>"},
                 "<|begin_of_text|>", "<|eot_id|>"),
    "llama4": (LLAMA4_TEMPLATE, {200000: "<|begin_of_text|>", 200008: "<|eot|>"},
               "<|begin_of_text|>", "<|eot|>"),
    "chatml fine-tune": (CHATML_TEMPLATE, {128000: "<|begin_of_text|>", 128011: "<|im_end|>"},
                         "<|begin_of_text|>", "<|im_end|>"),
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_the_prompt_is_transformers_apply_chat_template_minus_bos_in_every_form(tmp_path,
                                                                                 family):
    transformers = pytest.importorskip("transformers")
    template, specials, bos, eos = _FAMILIES[family]
    conversations = [MESSAGES, MESSAGES[1:2], [MESSAGES[0], MESSAGES[1]]]
    for form, documents in _forms(template, specials, bos, eos):
        ours = model_facts_from_documents("acme/model", documents).prompt_builder()
        if form == "chat_template.json":
            # A processor's file: AutoTokenizer does not read it; compare with the template's
            # rendering by transformers itself.
            def reference(messages, template=template):
                return apply_chat_template(template, bos, eos, messages)
        else:
            folder = write_model_folder(tmp_path / form.replace(" ", "_"), documents)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))

            def reference(messages, tokenizer=tokenizer):
                return tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=True)
        for messages in conversations:
            expected = reference(messages)
            assert expected.startswith(bos), (form, expected[:40])
            assert ours(messages) == expected[len(bos):], form


def test_transformers_own_saved_layout_is_read(offline_cache, tmp_path):
    """A tokenizer saved by the installed transformers reads back through the Hub code: its
    template in chat_template.jinja, its special tokens only in tokenizer.json (transformers 5
    writes no added_tokens_decoder)."""
    transformers = pytest.importorskip("transformers")
    source = write_model_folder(tmp_path / "source", fine_tune_documents())
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    saved = tmp_path / "saved"
    tokenizer.save_pretrained(str(saved))
    files = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    assert "chat_template.jinja" in files
    assert b"added_tokens_decoder" not in files["tokenizer_config.json"]
    files["config.json"] = json.dumps(fine_tune_documents()["config.json"]).encode()
    write_snapshot(offline_cache, FINE_TUNE_ID, files)
    facts = read_model_facts(FINE_TUNE_ID)
    assert facts.template_source == "chat_template.jinja"
    assert facts.end_tokens == ("<|im_end|>", "<|eot_id|>")
    expected = tokenizer.apply_chat_template(MESSAGES, tokenize=False,
                                             add_generation_prompt=True)
    assert facts.prompt_builder()(MESSAGES) == expected.removeprefix("<|begin_of_text|>")


# --------------------------------------------------------------------------- config shapes


def test_a_nested_multimodal_config_is_read_from_text_config():
    facts = model_facts_from_documents(VISION_ID, vision_documents())
    assert (facts.num_layers, facts.num_attention_heads, facts.num_kv_heads, facts.head_dim,
            facts.max_position_embeddings) == (40, 32, 8, 128, 131072)
    assert facts.multimodal and facts.model_type == "mllama"
    assert facts.architectures == ("MllamaForConditionalGeneration",)
    assert facts.kv_bytes_per_token == 2 * 40 * 8 * 128 * 2
    assert facts.weight_bytes == 21_340_000_000  # the index's total: the vision tower counts
    assert not facts.is_moe


def test_llama4_is_a_nested_mixture_of_experts():
    facts = model_facts_from_documents(SCOUT, variant_files(SCOUT))
    assert facts.model_type == "llama4" and facts.multimodal
    assert (facts.num_layers, facts.num_attention_heads, facts.num_kv_heads) == (48, 40, 8)
    assert (facts.num_experts, facts.experts_per_token) == (16, 1)
    assert facts.params_billion == pytest.approx(108.64, abs=0.01)
    assert facts.active_params_billion == pytest.approx(17.17, abs=0.01)  # the "17B" of the id
    assert facts.kv_bytes_per_token == 196_608  # the text model's layers and KV heads only
    assert facts.sampling == {"temperature": 0.6, "top_p": 0.9}
    assert facts.end_tokens[:3] == ("<|end_of_text|>", "<|eom|>", "<|eot|>")


def test_transformers_5_dtype_key_and_a_null_head_dim_are_read():
    documents = fine_tune_documents()
    config = dict(documents["config.json"])
    config["dtype"] = config.pop("torch_dtype")
    config["head_dim"] = None
    documents["config.json"] = config
    facts = model_facts_from_documents(FINE_TUNE_ID, documents)
    assert facts.dtype == "bfloat16" and facts.head_dim == 128


def test_a_missing_nested_size_names_text_config():
    documents = vision_documents()
    del documents["config.json"]["text_config"]["num_hidden_layers"]
    with pytest.raises(ModelFactsError, match=r"text_config\.'num_hidden_layers'"):
        model_facts_from_documents(VISION_ID, documents)


def test_a_multimodal_model_without_an_index_cannot_be_counted():
    documents = vision_documents()
    del documents["model.safetensors.index.json"]
    with pytest.raises(ModelFactsError, match=r"vision_config.*--params-billion"):
        model_facts_from_documents(VISION_ID, documents)


@pytest.mark.parametrize(("experts", "step"), [(16, 1), (128, 2)], ids=["scout", "maverick"])
def test_the_llama4_text_count_is_transformers_own(experts, step):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    text = {**variant_files(SCOUT)["config.json"]["text_config"],
            "num_local_experts": experts, "interleave_moe_layer_step": step}
    config = transformers.Llama4TextConfig(
        **{k: v for k, v in text.items() if k not in ("architectures", "rope_scaling")})
    with torch.device("meta"):
        model = transformers.Llama4ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert count_weight_bytes(text) == 2 * parameters
    if step == 2:
        assert parameters / 1e9 == pytest.approx(400.7, abs=0.1)  # Maverick: ~400B in all


def test_the_catalogue_scout_total_is_what_transformers_builds_from_its_config():
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    config = variant_files(SCOUT)["config.json"]
    text = {k: v for k, v in config["text_config"].items()
            if k not in ("architectures", "rope_scaling")}
    full = transformers.Llama4Config(text_config=text, vision_config=config["vision_config"])
    with torch.device("meta"):
        model = transformers.Llama4ForConditionalGeneration(full)
    assert VARIANTS[SCOUT].total_params == sum(p.numel() for p in model.parameters())


def test_sampling_is_read_only_where_the_model_recommends_it():
    documents = fine_tune_documents()
    assert model_facts_from_documents(FINE_TUNE_ID, documents).sampling == {
        "temperature": 0.7, "top_p": 0.95}
    documents["generation_config.json"] = {**documents["generation_config.json"],
                                           "do_sample": False}
    assert model_facts_from_documents(FINE_TUNE_ID, documents).sampling == {}
    documents["generation_config.json"] = {"eos_token_id": 128011}
    assert model_facts_from_documents(FINE_TUNE_ID, documents).sampling == {}


# --------------------------------------------------------------------------- import direction


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_prompt_core_does_not_import_the_model_facts():
    assert not {n for n in _imports(ROOT / "common" / "prompts.py")
                if n.startswith("common.") and n != "common.errors"}
    from common.model_facts import prompt_builder_for

    assert common.prompt_builder_for is prompt_builder_for


def test_product_code_never_imports_the_stand_in():
    product = [p for p in (ROOT / "common").rglob("*.py") if "local" not in p.parts]
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p)
                                                  if n.startswith("common.local"))
                 for p in product}
    assert {path: names for path, names in offenders.items() if names} == {}
