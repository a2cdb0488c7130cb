"""Deployment presets: the six recipes are valid, every inconsistency is refused with its fix,
the container settings are what TGI 3.3.6 / LMI 0.36.0 read, and the token is never shown."""

from __future__ import annotations

import dataclasses
import pickle
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import PresetError
from common.presets import (
    INSTANCE_TYPES,
    LMI_VERSION,
    LMI_VERSION_REASON,
    PRESETS,
    TGI_VERSION,
    custom_preset,
    get_preset,
    image_uri,
    instance_info,
    mask_secret,
    render_serving_properties,
)

ALL = sorted(PRESETS)
EXPECTED_INSTANCE = {"7b": ("ml.g5.2xlarge", 1), "13b": ("ml.g5.12xlarge", 4),
                     "70b": ("ml.g5.48xlarge", 8)}
TOKEN = "hf_" + "Q7xv" * 8  # obviously fake, but shaped like a real token


# --------------------------------------------------------------------------- the six presets


@pytest.mark.parametrize(("size", "container"), ALL)
def test_each_recipe_preset_is_valid_and_on_its_instance(size, container):
    preset = get_preset(size, container)
    assert preset.validate() is preset
    assert preset.model_id == f"meta-llama/Llama-2-{size}-chat-hf"
    assert (preset.instance_type, preset.num_gpus) == EXPECTED_INSTANCE[size]
    assert preset.num_gpus == instance_info(preset.instance_type).gpus
    assert preset.container_version == (TGI_VERSION if container == "tgi" else LMI_VERSION)
    assert preset.max_total_tokens == 4096  # Llama 2's context
    assert preset.max_input_tokens < preset.max_total_tokens
    assert 60 <= preset.health_check_timeout_s <= 3600


def test_presets_are_found_by_size_or_full_model_id_in_any_case():
    assert get_preset("13B", "TGI") is PRESETS[("13b", "tgi")]
    assert get_preset("meta-llama/Llama-2-70b-chat-hf", "lmi") is PRESETS[("70b", "lmi")]


@pytest.mark.parametrize(("model", "container"), [("34b", "tgi"), ("7b", "vllm"),
                                                   ("meta-llama/Llama-2-7b-hf", "tgi")])
def test_an_unknown_preset_lists_what_exists(model, container):
    with pytest.raises(PresetError) as caught:
        get_preset(model, container)
    message = str(caught.value)
    assert "('70b', 'lmi')" in message and "meta-llama/Llama-2-13b-chat-hf" in message
    assert "custom_preset" in message


def test_the_instance_table_has_the_recipes_gpus():
    assert (INSTANCE_TYPES["ml.g5.2xlarge"].gpus, INSTANCE_TYPES["ml.g5.2xlarge"].gpu_model) == (
        1, "A10G")
    assert INSTANCE_TYPES["ml.g5.12xlarge"].total_gpu_memory_gib == 96
    assert INSTANCE_TYPES["ml.g5.48xlarge"].total_gpu_memory_gib == 192
    assert (INSTANCE_TYPES["ml.p4d.24xlarge"].gpus,
            INSTANCE_TYPES["ml.p4d.24xlarge"].gpu_memory_gib_per_gpu) == (8, 40)
    info = instance_info("ml.g5.12xlarge")  # the names the notebook generator reads
    assert (info.gpu_name, info.gpu_memory_gib, info.price_per_hour) == (
        "A10G", 24, info.approx_usd_per_hour)


def test_an_unknown_instance_type_lists_the_known_ones():
    with pytest.raises(PresetError, match=r"'g5\.2xlarge'.*ml\.g5\.2xlarge\?.*ml\.g5\.48xlarge"):
        instance_info("g5.2xlarge")


# --------------------------------------------------------------------------- invalid presets


def _invalid(preset, *fragments):
    with pytest.raises(PresetError) as caught:
        preset.validate()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_gpu_count_that_is_not_the_instances_is_refused_with_the_right_count():
    preset = dataclasses.replace(get_preset("13b", "tgi"), num_gpus=2)
    _invalid(preset, "num_gpus=2", "ml.g5.12xlarge has 4 GPUs", "set num_gpus=4")


@pytest.mark.parametrize("key", ["SM_NUM_GPUS", "OPTION_TENSOR_PARALLEL_DEGREE"])
def test_a_gpu_count_overridden_in_the_environment_is_checked_too(key):
    preset = dataclasses.replace(get_preset("70b", "lmi"), environment={key: "4"})
    _invalid(preset, f"{key}=4", "has 8 GPUs")


def test_changing_the_instance_without_the_gpu_count_names_both():
    preset = dataclasses.replace(get_preset("7b", "tgi"), instance_type="ml.g5.12xlarge")
    _invalid(preset, "num_gpus=1", "set num_gpus=4")


@pytest.mark.parametrize(("size", "instance"), [("13b", "ml.g5.2xlarge"),
                                                ("70b", "ml.g5.12xlarge")])
def test_a_model_that_does_not_fit_the_gpu_memory_is_refused(size, instance):
    base = get_preset(size, "tgi")
    preset = dataclasses.replace(base, instance_type=instance,
                                 num_gpus=INSTANCE_TYPES[instance].gpus)
    message = _invalid(preset, "does not fit", f"{base.weights_gib:.1f} GiB", "bigger instance")
    assert "ml.g5.48xlarge" in message or "ml.g5.12xlarge" in message


def test_the_memory_check_uses_two_bytes_per_parameter():
    assert get_preset("70b", "lmi").weights_gib == pytest.approx(68.98e9 * 2 / 2**30)


def test_input_tokens_at_or_over_total_tokens_are_refused():
    preset = dataclasses.replace(get_preset("7b", "tgi"), max_input_tokens=4096)
    _invalid(preset, "MAX_INPUT_TOKENS (4096) >= MAX_TOTAL_TOKENS (4096)", "Lower max_input_tokens")


def test_an_input_limit_overridden_in_the_environment_is_checked():
    preset = dataclasses.replace(get_preset("7b", "tgi"),
                                 environment={"MAX_INPUT_TOKENS": "5000"})
    _invalid(preset, "MAX_INPUT_TOKENS (5000) >= MAX_TOTAL_TOKENS (4096)")


def test_a_prefill_budget_below_one_prompt_is_refused():
    preset = dataclasses.replace(get_preset("13b", "lmi"), max_batch_prefill_tokens=2048)
    _invalid(preset, "below one full request", "MAX_BATCH_PREFILL_TOKENS (2048)",
             "max_batch_prefill_tokens >= 3072")


def test_a_batch_total_below_one_full_request_is_refused():
    preset = dataclasses.replace(get_preset("7b", "tgi"), max_batch_total_tokens=3000)
    _invalid(preset, "MAX_BATCH_TOTAL_TOKENS (3000)", "None to let TGI size it")


def test_both_input_length_names_in_the_environment_are_refused():
    preset = dataclasses.replace(get_preset("7b", "tgi"), environment={
        "MAX_INPUT_LENGTH": "2048", "MAX_INPUT_TOKENS": "2048"})
    _invalid(preset, "both MAX_INPUT_LENGTH and MAX_INPUT_TOKENS", "deprecated",
             "set max_input_tokens")


def test_the_deprecated_input_length_alone_is_refused_because_the_preset_sets_the_new_name():
    preset = dataclasses.replace(get_preset("7b", "tgi"), environment={"MAX_INPUT_LENGTH": "2048"})
    _invalid(preset, "always sets MAX_INPUT_TOKENS")


def test_a_size_that_contradicts_the_model_id_is_refused():
    preset = dataclasses.replace(get_preset("7b", "tgi"),
                                 model_id="codellama/CodeLlama-34b-Instruct-hf")
    _invalid(preset, "params_billion=6.74", "says 34B", "set params_billion=34")


def test_timeouts_outside_what_sagemaker_accepts_are_refused():
    preset = dataclasses.replace(get_preset("7b", "lmi"), health_check_timeout_s=7200)
    _invalid(preset, "health_check_timeout_s=7200", "60 to 3600")


def test_every_problem_is_listed_at_once():
    preset = dataclasses.replace(get_preset("7b", "tgi"), num_gpus=3, max_input_tokens=9000)
    message = _invalid(preset, "set num_gpus=1", "MAX_INPUT_TOKENS (9000)",
                       "MAX_BATCH_PREFILL_TOKENS (4096)")
    assert message.count("\n- ") == 3


def test_an_edited_preset_validates_again():
    preset = dataclasses.replace(get_preset("7b", "tgi"), instance_type="ml.g6e.12xlarge",
                                 num_gpus=4)
    assert preset.validate().tgi_environment()["SM_NUM_GPUS"] == "4"


# --------------------------------------------------------------------------- TGI settings


def test_the_tgi_environment_uses_tgis_current_names():
    env = get_preset("13b", "tgi").tgi_environment(hf_token=TOKEN)
    assert env == {
        "HF_MODEL_ID": "meta-llama/Llama-2-13b-chat-hf",
        "SM_NUM_GPUS": "4",
        "MAX_INPUT_TOKENS": "3072",
        "MAX_TOTAL_TOKENS": "4096",
        "MAX_BATCH_PREFILL_TOKENS": "4096",
        "HF_TOKEN": TOKEN,
    }


def test_the_tgi_environment_has_no_token_unless_given_and_keeps_extra_variables():
    preset = dataclasses.replace(get_preset("7b", "tgi"), max_batch_total_tokens=16384,
                                 environment={"HF_MODEL_REVISION": "abc123"})
    env = preset.tgi_environment()
    assert "HF_TOKEN" not in env and "MAX_INPUT_LENGTH" not in env
    assert (env["MAX_BATCH_TOTAL_TOKENS"], env["HF_MODEL_REVISION"]) == ("16384", "abc123")


def test_container_specific_settings_refuse_the_other_container():
    with pytest.raises(PresetError, match="serving_properties"):
        get_preset("7b", "lmi").tgi_environment()
    with pytest.raises(PresetError, match="tgi_environment"):
        get_preset("7b", "tgi").serving_properties("s3://bucket/prefix/")


def test_an_invalid_preset_gives_no_environment():
    with pytest.raises(PresetError, match="set num_gpus=8"):
        dataclasses.replace(get_preset("70b", "tgi"), num_gpus=4).tgi_environment()


# --------------------------------------------------------------------------- LMI settings


@pytest.mark.parametrize("size", ["7b", "13b", "70b"])
def test_lmi_shards_over_every_gpu_of_the_instance_in_async_mode(size):
    preset = get_preset(size, "lmi")
    properties = preset.serving_properties("s3://bucket/weights/")
    assert properties["option.tensor_parallel_degree"] == str(INSTANCE_TYPES[
        preset.instance_type].gpus)
    assert properties["option.model_id"] == "s3://bucket/weights/"
    assert properties["engine"] == "Python"
    assert (properties["option.async_mode"], properties["option.rolling_batch"]) == (
        "true", "disable")
    assert properties["option.entryPoint"] == "djl_python.lmi_vllm.vllm_async_service"
    assert properties["option.max_model_len"] == "4096"
    assert preset.lmi_environment() == {}


GOLDEN_70B_LMI = """\
# serving.properties for meta-llama/Llama-2-70b-chat-hf on ml.g5.48xlarge (8 GPUs),
# DJL Serving 0.36.0 (LMI): vLLM in async mode, streaming when a request
# says "stream": true. Rendered from common.presets: change the preset, not this file.
engine=Python
option.model_id=s3://recipes-bucket/llama-2-recipes/llama-2-70b-chat-lmi/model/
option.tensor_parallel_degree=8
option.dtype=fp16
option.max_model_len=4096
option.max_rolling_batch_size=32
option.max_rolling_batch_prefill_tokens=4096
option.rolling_batch=disable
option.async_mode=true
option.entryPoint=djl_python.lmi_vllm.vllm_async_service
"""


def test_serving_properties_of_the_70b_lmi_recipe_match_the_golden_file():
    rendered = render_serving_properties(
        get_preset("70b", "lmi"), "s3://recipes-bucket/llama-2-recipes/llama-2-70b-chat-lmi/model/")
    assert rendered == GOLDEN_70B_LMI


@pytest.mark.parametrize("uri", ["", "s3://bucket/a b/", "s3://bucket/x\noption.dtype=fp32"])
def test_a_model_uri_that_would_break_the_properties_file_is_refused(uri):
    with pytest.raises(PresetError, match="one line without spaces"):
        render_serving_properties(get_preset("7b", "lmi"), uri)


def test_the_lmi_version_reason_explains_the_choice():
    assert "0.36.0" in LMI_VERSION_REASON and "0.38.0" in LMI_VERSION_REASON
    assert "g5" in LMI_VERSION_REASON


# --------------------------------------------------------------------------- display


def _shown(preset, hf_token=None):
    rows = preset.table_rows(hf_token=hf_token)
    return "\n".join(f"{k} {v}" for k, v in rows) + repr(preset) + str(preset) + (
        preset._repr_html_())


def test_the_token_is_masked_in_every_display():
    preset = dataclasses.replace(get_preset("7b", "tgi"), environment={"HF_TOKEN": TOKEN})
    shown = _shown(preset, hf_token=TOKEN)
    assert TOKEN not in shown and TOKEN[3:10] not in shown
    assert ("env HF_TOKEN", "hf_****") in preset.table_rows()


def test_the_table_says_the_token_is_given_at_deploy_time_and_shows_the_settings():
    rows = dict(get_preset("70b", "tgi").table_rows())
    assert rows["env HF_TOKEN"].startswith("(passed at deploy time")
    assert rows["env SM_NUM_GPUS"] == "8" and rows["env MAX_TOTAL_TOKENS"] == "4096"
    assert "8 x NVIDIA A10G" in rows["Hardware"]
    lmi = dict(get_preset("13b", "lmi").table_rows())
    assert lmi["serving.properties: option.tensor_parallel_degree"] == "4"


@pytest.mark.parametrize("key", sorted(PRESETS), ids="-".join)
def test_ipython_shows_a_preset_as_an_aligned_table_not_one_long_line(key):
    from IPython.lib.pretty import pretty

    preset = PRESETS[key]
    shown = pretty(preset)
    assert shown == str(preset) and shown.startswith("Model ")
    lines = shown.splitlines()
    assert max(map(len, lines)) <= 130  # no line runs on (the repr is one 700-character line)
    heading = "serving.properties" if key[1] == "lmi" else "Environment variables"
    assert heading in lines
    for name, value in preset.table_rows():  # every row, its value in one aligned column
        short = name.removeprefix("serving.properties: ").removeprefix("env ")
        (line,) = [line for line in lines if re.split(r"\s{2,}", line.strip())[0] == short]
        assert line.endswith(value) and line.index(value) == lines[0].index(preset.model_id)


def test_an_invalid_preset_can_still_be_shown():
    preset = dataclasses.replace(get_preset("7b", "tgi"), instance_type="ml.x9.huge")
    assert dict(preset.table_rows())["Hardware"] == "(unknown instance type)"


@given(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=5, max_size=60))
def test_for_every_token_no_display_shows_more_than_three_characters(secret):
    token = "hf_" + secret
    preset = dataclasses.replace(PRESETS[("7b", "tgi")], environment={"HF_TOKEN": token})
    shown = _shown(preset, hf_token=token)
    assert token[:4] + "****" not in shown
    assert token not in shown
    assert mask_secret(token).removesuffix("****") in {"", token[:3]}


def test_a_preset_survives_store_and_restore():
    preset = get_preset("13b", "lmi")
    assert pickle.loads(pickle.dumps(preset)) == preset


# --------------------------------------------------------------------------- custom presets


def test_a_custom_preset_reads_the_size_from_the_model_id_and_the_gpus_from_the_instance():
    preset = custom_preset("codellama/CodeLlama-34b-Instruct-hf", "tgi", "ml.g5.12xlarge")
    assert (preset.params_billion, preset.num_gpus, preset.size) == (34.0, 4, "34b")
    assert preset.health_check_timeout_s == 3000


def test_a_custom_preset_takes_overrides_for_a_longer_context():
    preset = custom_preset("meta-llama/Meta-Llama-3-8B-Instruct", "lmi", "ml.g5.2xlarge",
                           max_total_tokens=8192, max_input_tokens=6144,
                           max_batch_prefill_tokens=8192)
    assert preset.serving_properties("s3://b/p/")["option.max_model_len"] == "8192"


def test_a_custom_preset_that_does_not_fit_is_refused():
    with pytest.raises(PresetError, match="does not fit"):
        custom_preset("codellama/CodeLlama-34b-Instruct-hf", "lmi", "ml.g5.2xlarge")


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"model_id": "acme/chatbot"}, "pass params_billion"),
    ({"model_id": "acme/chatbot-7b", "bogus": 1}, "Unknown preset fields ['bogus']"),
    ({"model_id": "acme/chatbot-7b", "container": "vllm"}, "use 'tgi' or 'lmi'"),
])
def test_custom_preset_mistakes_are_explained(kwargs, fragment):
    arguments = {"container": "tgi", "instance_type": "ml.g5.2xlarge", **kwargs}
    with pytest.raises(PresetError) as caught:
        custom_preset(arguments.pop("model_id"), arguments.pop("container"),
                      arguments.pop("instance_type"), **arguments)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- images


def test_the_tgi_image_is_the_pinned_3_3_6_build():
    assert image_uri(get_preset("7b", "tgi"), "us-east-1") == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
        "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")


def test_the_lmi_image_is_the_pinned_0_36_0_build():
    assert image_uri(get_preset("70b", "lmi"), "eu-west-1").endswith(
        ".dkr.ecr.eu-west-1.amazonaws.com/djl-inference:0.36.0-lmi27.0.0-cu130")


def test_an_image_version_the_sdk_does_not_know_is_explained():
    preset = dataclasses.replace(get_preset("7b", "tgi"), container_version="9.9.9")
    with pytest.raises(PresetError, match="Upgrade the sagemaker package"):
        image_uri(preset, "us-east-1")
