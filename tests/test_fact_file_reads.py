"""Which files the model facts read, and when: ``tokenizer.json`` (about 9 MB for Llama 3) only
when the other files leave an end token's id unnamed -- in ``read_model_facts``'s callback and
in the stand-in's served model alike -- and the chat templates found file by file."""

from __future__ import annotations

import pytest
from model_fixtures import (
    FINE_TUNE_ID,
    fine_tune_documents,
    repository_files,
    serving_properties_tarball,
)

from common.errors import ModelFactsError
from common.local import served_model
from common.model_facts import (
    MODEL_ID_PATTERN,
    TEMPLATE_FILES,
    chat_template_from_files,
    chat_templates_by_file,
    model_facts_from_documents,
)


def _transformers5_documents() -> tuple[dict, dict]:
    """The fine-tune as transformers 5 saves it: no added_tokens_decoder; its special tokens
    in tokenizer.json (returned beside the documents, as the parsed file)."""
    documents = fine_tune_documents()
    decoder = documents["tokenizer_config.json"].pop("added_tokens_decoder")
    added = [{"id": int(key), "content": value["content"]} for key, value in decoder.items()]
    return documents, {"added_tokens": added}


def test_the_reader_is_not_called_when_added_tokens_decoder_names_every_end_id():
    asked: list[str] = []
    facts = model_facts_from_documents(FINE_TUNE_ID, fine_tune_documents(),
                                       read_file=lambda name: asked.append(name))
    assert asked == []
    assert facts.end_tokens == ("<|im_end|>", "<|eot_id|>")
    assert facts.special_tokens_by_id[128011] == "<|im_end|>"


def test_the_reader_supplies_tokenizer_json_once_when_an_end_id_is_unnamed():
    documents, tokenizer_json = _transformers5_documents()
    asked: list[str] = []

    def read(name: str) -> dict:
        asked.append(name)
        return tokenizer_json

    facts = model_facts_from_documents(FINE_TUNE_ID, documents, read_file=read)
    assert asked == ["tokenizer.json"]
    assert facts.end_tokens == ("<|im_end|>", "<|eot_id|>")


@pytest.mark.parametrize("tokenizer_json, nor", [(None, False), ({}, False),
                                                 ({"added_tokens": [{"id": 1, "content": "x"}]},
                                                  True)])
def test_an_end_id_named_nowhere_says_which_files_were_looked_in(tokenizer_json, nor):
    documents, _ = _transformers5_documents()
    with pytest.raises(ModelFactsError) as caught:
        model_facts_from_documents(FINE_TUNE_ID, documents, read_file=lambda name: tokenizer_json)
    assert caught.value.reason == "no added_tokens_decoder entry for the end token id 128011" + (
        " (nor has tokenizer.json one)" if nor else "")


def _served_from_s3(prefix: str, files: dict[str, bytes]) -> tuple[served_model.ServedModel,
                                                                    list[str]]:
    """Serve ``files`` as an LMI endpoint's S3 weights; the model and the keys read."""
    archive = serving_properties_tarball(f"option.model_id=s3://b/{prefix}/model/\n")
    read: list[str] = []

    def read_object(bucket: str, key: str) -> bytes | None:
        read.append(key.rsplit("/", 1)[-1])
        if key == f"{prefix}/code/model.tar.gz":
            return archive
        return files.get(key.removeprefix(f"{prefix}/model/"))

    previous = served_model.use_hub(None)
    try:
        name = served_model.served_model_id(f"s3://b/{prefix}/code/model.tar.gz", read_object)
        served = served_model.lookup(name)
    finally:
        served_model.use_hub(previous)
    assert served is not None
    return served, read


def test_the_stand_in_leaves_tokenizer_json_unread_when_the_decoder_names_the_end_tokens():
    served, read = _served_from_s3("a", repository_files(fine_tune_documents(), weights=False))
    assert "tokenizer.json" not in read and "config.json" in read
    assert (served.end_token, served.end_token_id) == ("<|im_end|>", 128011)


def test_the_stand_in_reads_tokenizer_json_for_a_transformers5_layout():
    documents, tokenizer_json = _transformers5_documents()
    files = repository_files(documents, {t["id"]: t["content"]
                                         for t in tokenizer_json["added_tokens"]}, weights=False)
    served, read = _served_from_s3("b", files)
    assert read.count("tokenizer.json") == 1
    assert (served.end_token, served.end_token_id) == ("<|im_end|>", 128011)


def test_the_stand_in_reads_tokenizer_json_for_an_eos_only_it_names():
    """No generation_config.json: the end token is the tokenizer's EOS, whose id only
    tokenizer.json gives (config.json's end id is in added_tokens_decoder)."""
    documents = fine_tune_documents()
    del documents["generation_config.json"]
    documents["config.json"] = {**documents["config.json"], "eos_token_id": 128009}
    decoder = documents["tokenizer_config.json"]["added_tokens_decoder"]
    specials = {int(key): value["content"] for key, value in decoder.items()}
    del decoder["128011"]  # <|im_end|>, the EOS
    served, read = _served_from_s3("c", repository_files(documents, specials, weights=False))
    assert "tokenizer.json" in read
    assert (served.end_token, served.end_token_id) == ("<|im_end|>", 128011)


def test_the_templates_are_listed_file_by_file_in_lookup_order():
    tokenizer = {"chat_template": [{"name": "default", "template": "T"}]}
    processor = {"chat_template": "P"}
    assert chat_templates_by_file(tokenizer, "J", processor) == {
        "chat_template.jinja": "J", "chat_template.json": "P", "tokenizer_config.json": "T"}
    assert list(chat_templates_by_file(tokenizer, "J", processor)) == list(TEMPLATE_FILES)
    assert chat_templates_by_file(tokenizer, " \n", None) == {"tokenizer_config.json": "T"}
    assert chat_template_from_files(tokenizer, " \n", processor) == ("P", "chat_template.json")
    facts = model_facts_from_documents(FINE_TUNE_ID, {
        **fine_tune_documents(), "chat_template.json": processor})
    assert facts.template_files == ("chat_template.jinja", "chat_template.json")
    assert facts.template_source == "chat_template.jinja"


@pytest.mark.parametrize("model_id, ok", [("meta-llama/Llama-2-7b-chat-hf", True),
                                          ("a.b_c-d/e.f", True), ("no-owner", False),
                                          ("a/b/c", False), ("a /b", False)])
def test_one_model_id_pattern_serves_the_hub_reader_the_weight_copy_and_new(model_id, ok):
    from common.notebooks.generator import new_recipe
    from common.weights import weights_prefix

    assert bool(MODEL_ID_PATTERN.fullmatch(model_id)) is ok
    if ok:
        assert weights_prefix(model_id).endswith(f"/{model_id}/main")
        return
    with pytest.raises(ValueError, match="owner/name"):
        weights_prefix(model_id)
    with pytest.raises(ValueError, match="owner/name"):
        new_recipe(model_id, "tgi")
    with pytest.raises(ModelFactsError, match="owner/name"):
        from common.model_facts import read_model_facts

        read_model_facts(model_id)

