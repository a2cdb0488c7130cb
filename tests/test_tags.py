"""common.tags: one set of recipe labels, in every shape the APIs take, read back the same."""

from __future__ import annotations

import re

import pytest

from common.tags import (
    CONTAINER_TAG,
    MODEL_TAG,
    RECIPE_TAG,
    RUN_ID_PATTERN,
    RUN_TAG,
    new_run_id,
    read_recipe_tags,
    recipe_tags,
)

TAGS = recipe_tags("llama-2-7b-chat-tgi", "20261205-101500",
                   model_id="meta-llama/Llama-2-7b-chat-hf", container="tgi")


def test_the_shapes_hold_the_same_four_labels():
    expected = {RECIPE_TAG: "llama-2-7b-chat-tgi", RUN_TAG: "20261205-101500",
                MODEL_TAG: "meta-llama/Llama-2-7b-chat-hf", CONTAINER_TAG: "tgi"}
    assert TAGS.as_dict() == expected
    assert TAGS.aws() == [{"Key": k, "Value": v} for k, v in expected.items()]
    assert TAGS.s3_metadata() == expected
    assert [(t.key, t.value) for t in TAGS.sdk()] == list(expected.items())
    assert TAGS.marker == ("[llama-recipes recipe=llama-2-7b-chat-tgi run=20261205-101500 "
                           "model=meta-llama/Llama-2-7b-chat-hf container=tgi]")
    assert str(TAGS) == "recipe llama-2-7b-chat-tgi, run 20261205-101500"


@pytest.mark.parametrize("shape", ["aws", "s3_metadata", "marker"])
def test_every_shape_reads_back_to_the_same_tags(shape):
    value = getattr(TAGS, shape)
    value = value() if callable(value) else f"Scale x out from zero copies {value}"
    assert read_recipe_tags(value) == TAGS


def test_s3_metadata_keys_come_back_lower_case_and_still_read():
    metadata = {key.upper(): value for key, value in TAGS.s3_metadata().items()}
    assert read_recipe_tags(metadata) == TAGS


def test_resources_without_the_recipe_or_the_run_have_no_tags():
    assert read_recipe_tags(None) is None
    assert read_recipe_tags([]) is None
    assert read_recipe_tags([{"Key": RECIPE_TAG, "Value": "x"}]) is None
    assert read_recipe_tags({"owner": "someone"}) is None
    assert read_recipe_tags("Scale the inference component out from zero copies") is None


def test_the_model_and_container_are_optional():
    tags = recipe_tags("my-recipe", "20260101-000000")
    assert tags.as_dict() == {RECIPE_TAG: "my-recipe", RUN_TAG: "20260101-000000"}
    assert read_recipe_tags(tags.marker) == tags


def test_a_new_run_id_is_a_timestamp():
    assert re.fullmatch(RUN_ID_PATTERN, new_run_id())
    assert new_run_id(0).startswith("19700101-") or new_run_id(0).startswith("19691231-")
    assert re.fullmatch(RUN_ID_PATTERN, recipe_tags("x").run)


@pytest.mark.parametrize(("arguments", "message"), [
    (("Llama-2",), "slug"),
    (("has space",), "slug"),
    (("",), "slug"),
    (("ok", "a/b"), "run"),
    (("ok", "run", "bad]model"), "model_id"),
])
def test_values_no_tag_could_hold_are_refused(arguments, message):
    recipe, *rest = arguments
    run = rest[0] if rest else None
    model = rest[1] if len(rest) > 1 else ""
    with pytest.raises(ValueError, match=message):
        recipe_tags(recipe, run, model_id=model)
