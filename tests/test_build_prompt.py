"""common.build_prompt against transformers' apply_chat_template on the Llama templates."""

from __future__ import annotations

import pytest
from chat_reference import apply_chat_template
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import PayloadError
from common.prompts import PromptBuilder, build_llama2_prompt, build_llama3_prompt, build_prompt
from common.variants import (
    CODELLAMA_70B_TEMPLATE,
    CODELLAMA_TEMPLATE,
    LLAMA2_TEMPLATE,
    LLAMA3_TEMPLATE,
    LLAMA31_TEMPLATE,
    LLAMA32_TEMPLATE,
)

L2 = ("<s>", "</s>")
L3 = ("<|begin_of_text|>", "<|eot_id|>")
TEMPLATES = {
    "llama2": (LLAMA2_TEMPLATE, *L2),
    "codellama": (CODELLAMA_TEMPLATE, *L2),
    "codellama70b": (CODELLAMA_70B_TEMPLATE, *L2),
    "llama3": (LLAMA3_TEMPLATE, *L3),
    "llama31": (LLAMA31_TEMPLATE, *L3),
}


def _reference(name: str, messages: list[dict[str, str]]) -> str:
    return apply_chat_template(*TEMPLATES[name], messages)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def conversations(draw) -> list[dict[str, str]]:
    messages = []
    system = draw(st.one_of(st.none(), st.just(""), text))
    if system is not None:
        messages.append({"role": "system", "content": system})
    turns = draw(st.integers(min_value=0, max_value=6))
    for _ in range(turns):
        messages.append({"role": "user", "content": draw(text)})
        messages.append({"role": "assistant", "content": draw(text)})
    messages.append({"role": "user", "content": draw(text)})
    return messages


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=conversations())
def test_build_prompt_is_apply_chat_template_minus_the_bos_text(name, messages):
    template, bos, eos = TEMPLATES[name]
    reference = _reference(name, messages)
    ours = build_prompt(messages, template, bos_token=bos, eos_token=eos)
    assert reference.startswith(bos)
    assert ours == reference[len(bos):]
    assert build_prompt(messages, template, bos_token=bos, eos_token=eos,
                        strip_bos=False) == reference


@settings(max_examples=60, deadline=None)
@given(messages=conversations())
def test_the_llama2_template_and_builder_agree_on_stripped_contents(messages):
    stripped = [{**m, "content": m["content"].strip()} for m in messages]
    if any(tag in m["content"] for m in stripped for tag in ("[INST]", "[/INST]", "<<SYS>>",
                                                             "<</SYS>>")):
        return
    if stripped[0]["role"] == "system" and stripped[0]["content"] == "":
        return  # Meta's builder treats an empty system prompt as none; the template does not
    assert build_prompt(stripped, LLAMA2_TEMPLATE, bos_token="<s>", eos_token="</s>") == (
        build_llama2_prompt(stripped))


def test_the_llama3_template_and_builder_agree():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert build_prompt(messages, LLAMA3_TEMPLATE, bos_token=L3[0], eos_token=L3[1]) == (
        build_llama3_prompt(messages))


def test_llama32_dates_come_from_strftime_now():
    from datetime import datetime

    prompt = build_prompt([{"role": "user", "content": "Hi"}], LLAMA32_TEMPLATE,
                          bos_token=L3[0], eos_token=L3[1])
    assert f"Today Date: {datetime.now():%d %b %Y}" in prompt
    assert not prompt.startswith(L3[0])


def test_the_template_refusal_becomes_a_payload_error_with_its_words():
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(PayloadError, match="Conversation roles must alternate"):
        build_prompt(bad, LLAMA2_TEMPLATE, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("messages", [[], "hi", [{"role": "user"}],
                                      [{"role": "user", "content": 3}]])
def test_malformed_messages_are_refused(messages):
    with pytest.raises(PayloadError):
        build_prompt(messages, LLAMA3_TEMPLATE, bos_token=L3[0])


def test_a_broken_or_empty_template_is_refused():
    with pytest.raises(ValueError, match="not valid jinja2"):
        build_prompt([{"role": "user", "content": "x"}], "{% for %}")
    with pytest.raises(ValueError, match="chat_template is empty"):
        build_prompt([{"role": "user", "content": "x"}], "  ")


def test_the_sandbox_blocks_attribute_escapes():
    evil = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(ValueError, match="sandbox forbids") as caught:
        build_prompt([{"role": "user", "content": "x"}], evil)
    assert not isinstance(caught.value, PayloadError)


def test_a_prompt_builder_renders_and_carries_the_stop_tokens():
    builder = PromptBuilder(model_id="meta-llama/Llama-3.1-8B-Instruct",
                            chat_template=LLAMA31_TEMPLATE, bos_token=L3[0], eos_token=L3[1],
                            stop_tokens=("<|eot_id|>", "<|eom_id|>"))
    prompt = builder([{"role": "user", "content": "Hi"}])
    assert prompt.startswith("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert builder.stop_tokens == ("<|eot_id|>", "<|eom_id|>")
