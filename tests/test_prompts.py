"""Prompt builders: golden strings written by hand from Meta's layouts, errors, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import PayloadError
from common.prompts import (
    LLAMA3_SPECIAL_TOKENS,
    UNSAFE_TAGS,
    build_llama2_prompt,
    build_llama3_prompt,
    parse_llama2_prompt,
)


def sys_(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def bot(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


# --------------------------------------------------------------------------- Llama 2 goldens

SYSTEM_ONE_TURN = [sys_("You are terse."), user("What is 2+2?")]
MULTI_TURN_SYSTEM = [sys_("Be brief."), user("Hi"), bot("Hello! "), user(" Name a llama fact. ")]
MULTI_TURN_PLAIN = [user("Hi"), bot("Hello."), user("Bye")]

GOLDEN_LLAMA2 = [
    (
        SYSTEM_ONE_TURN,
        True,
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST]",
    ),
    (
        SYSTEM_ONE_TURN,
        False,
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST]",
    ),
    (
        MULTI_TURN_SYSTEM,
        True,
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
        "<s>[INST] Name a llama fact. [/INST]",
    ),
    (
        MULTI_TURN_SYSTEM,
        False,
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
        "<s>[INST] Name a llama fact. [/INST]",
    ),
    (
        MULTI_TURN_PLAIN,
        True,
        "<s>[INST] Hi [/INST] Hello. </s><s>[INST] Bye [/INST]",
    ),
    (
        MULTI_TURN_PLAIN,
        False,
        "[INST] Hi [/INST] Hello. </s><s>[INST] Bye [/INST]",
    ),
    ([user("  hello  ")], False, "[INST] hello [/INST]"),
    (
        [user("Où est le lama? 🦙\nDis-moi.")],
        True,
        "<s>[INST] Où est le lama? 🦙\nDis-moi. [/INST]",
    ),
    # Meta merges the system prompt on the raw contents and strips only the merged string:
    # the system text keeps its spaces and the first user text keeps its leading spaces.
    (
        [sys_("  spaced  "), user("  first"), bot("ok"), user("second")],
        False,
        "[INST] <<SYS>>\n  spaced  \n<</SYS>>\n\n  first [/INST] ok </s><s>[INST] second [/INST]",
    ),
]


@pytest.mark.parametrize(("messages", "bos", "expected"), GOLDEN_LLAMA2)
def test_llama2_golden(messages, bos, expected):
    assert build_llama2_prompt(messages, bos=bos) == expected


def test_llama2_default_leaves_out_bos():
    assert build_llama2_prompt([user("Hi")]) == "[INST] Hi [/INST]"


def test_llama2_accepts_extra_keys_and_does_not_change_input():
    messages = [{"role": "user", "content": " Hi ", "name": "ann"}]
    assert build_llama2_prompt(messages) == "[INST] Hi [/INST]"
    assert messages == [{"role": "user", "content": " Hi ", "name": "ann"}]


# --------------------------------------------------------------------------- malformed input

MALFORMED = [
    ("not a list", "must be a list"),
    ({"role": "user", "content": "Hi"}, "must be a list"),
    (None, "must be a list"),
    ([], "empty"),
    (["Hi"], "messages[0] must be a dict"),
    ([{"role": "user"}], "messages[0] must be a dict"),
    ([{"content": "Hi"}], "messages[0] must be a dict"),
    ([{"role": "human", "content": "Hi"}], "unknown role 'human'"),
    ([user("Hi"), sys_("Be nice"), user("Hi")], "position 1"),
    ([sys_("a"), sys_("b"), user("Hi")], "2 system messages"),
    ([sys_("a"), user("Hi"), sys_("b"), user("Hi")], "2 system messages"),
    ([sys_("Be nice")], "only a system message"),
    ([bot("Hello"), user("Hi")], "messages[0] has role 'assistant' where 'user'"),
    ([user("Hi"), user("Hi again")], "messages[1] has role 'user' where 'assistant'"),
    ([sys_("s"), user("Hi"), bot("a"), bot("b"), user("c")], "messages[3] has role 'assistant'"),
    ([user("Hi"), bot("Hello")], "last message is the assistant's"),
    ([sys_("s"), user("Hi"), bot("Hello")], "last message is the assistant's"),
    ([user(42)], "messages[0]['content'] must be a string, got int"),
    ([sys_(None), user("Hi")], "messages[0]['content'] must be a string, got NoneType"),
    ([user(["a", "b"])], "must be a string, got list"),
]


@pytest.mark.parametrize(("messages", "reason"), MALFORMED)
@pytest.mark.parametrize("builder", [build_llama2_prompt, build_llama3_prompt])
def test_malformed_conversations_raise_with_reason(builder, messages, reason):
    with pytest.raises(ValueError) as excinfo:
        builder(messages)
    assert isinstance(excinfo.value, PayloadError)
    assert reason in str(excinfo.value)


@pytest.mark.parametrize("tag", ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"])
@pytest.mark.parametrize("where", [0, 1, 2, 3])
def test_llama2_unsafe_tags_are_refused_unless_allowed(tag, where):
    messages = [sys_("sys"), user("u1"), bot("a1"), user("u2")]
    messages[where] = {**messages[where], "content": f"before {tag} after"}
    with pytest.raises(ValueError) as excinfo:
        build_llama2_prompt(messages)
    assert f"messages[{where}]['content'] contains the control tag {tag!r}" in str(excinfo.value)
    assert "allow_unsafe=True" in str(excinfo.value)
    assert tag in build_llama2_prompt(messages, allow_unsafe=True)


def test_unsafe_tags_constant():
    assert set(UNSAFE_TAGS) == {"[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"}


# --------------------------------------------------------------------------- Llama 3

def test_llama3_golden_system_and_turns():
    messages = [sys_("You are terse."), user(" Hi "), bot("Hello."), user("2+2?")]
    assert build_llama3_prompt(messages, bos=True) == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama3_golden_single_user():
    assert build_llama3_prompt([user("Hi 🦙")]) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi 🦙<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.mark.parametrize("token", LLAMA3_SPECIAL_TOKENS)
def test_llama3_special_tokens_in_content_are_refused_unless_allowed(token):
    messages = [user(f"x {token} y")]
    with pytest.raises(ValueError, match="control tag"):
        build_llama3_prompt(messages)
    assert token in build_llama3_prompt(messages, allow_unsafe=True)


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize(("messages", "bos", "prompt"), GOLDEN_LLAMA2[:6])
def test_parse_golden(messages, bos, prompt):
    stripped = [{**m, "content": m["content"].strip()} for m in messages]
    assert parse_llama2_prompt(prompt) == stripped


def test_parse_system_with_empty_user_text():
    # Meta strips the merged first message, which removes E_SYS's trailing blank line.
    prompt = "[INST] <<SYS>>\nsys\n<</SYS>> [/INST]"
    assert build_llama2_prompt([sys_("sys"), user("")]) == prompt
    assert parse_llama2_prompt(prompt) == [sys_("sys"), user("")]


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "hello",
        "<s>",
        "[INST] hi",
        "[INST]hi [/INST]",
        "[INST] hi[/INST]",
        "[INST] [/INST]",
        "[INST] hi [/INST] ",
        "[INST] hi [/INST] trailing answer",
        "<s><s>[INST] hi [/INST]",
        " [INST] hi [/INST]",
        "[INST] hi [/INST] ans </s>[INST] x [/INST]",
        "[INST] hi [/INST] ans<s>[INST] x [/INST]",
        "[INST] hi [/INST]ans </s><s>[INST] x [/INST]",
        "[INST] <<SYS>>\nsys [/INST]",
        "[INST] <<SYS>>\ns\n<</SYS>>x [/INST]",
    ],
)
def test_parse_rejects_other_text(prompt):
    with pytest.raises(ValueError, match="not a Llama 2 chat prompt"):
        parse_llama2_prompt(prompt)


def test_parse_rejects_non_string():
    with pytest.raises(ValueError, match="expected a string"):
        parse_llama2_prompt(b"[INST] hi [/INST]")


# Characters that make up the tags, so that near-misses ("[INST", "<</SYS>", "</s>") occur.
_TAG_PIECES = st.sampled_from(
    [*"[]</>INSTYs \n\t", "🦙", "é", "x", "<<", "SYS", "INST", "</s>", "<s>", "\n\n"]
)
_content = st.one_of(st.text(), st.lists(_TAG_PIECES, max_size=12).map("".join)).filter(
    lambda s: s == s.strip() and not any(tag in s for tag in UNSAFE_TAGS)
)


@st.composite
def conversations(draw):
    messages = []
    if draw(st.booleans()):
        messages.append(sys_(draw(_content)))
    pairs = draw(st.integers(min_value=0, max_value=3))
    for _ in range(pairs):
        messages += [user(draw(_content)), bot(draw(_content))]
    messages.append(user(draw(_content)))
    return messages


@given(conversations(), st.booleans())
def test_parse_inverts_build(messages, bos):
    prompt = build_llama2_prompt(messages, bos=bos)
    assert prompt.startswith("<s>[INST]") == bos
    assert parse_llama2_prompt(prompt) == messages


@given(conversations())
def test_bos_changes_only_the_first_token(messages):
    assert build_llama2_prompt(messages, bos=True) == "<s>" + build_llama2_prompt(messages)


def test_llama3_leaves_the_bos_text_out_by_default():
    messages = [user("Hi")]
    assert not build_llama3_prompt(messages).startswith("<|begin_of_text|>")
    assert build_llama3_prompt(messages, bos=True) == (
        "<|begin_of_text|>" + build_llama3_prompt(messages))
