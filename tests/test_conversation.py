"""common.Conversation: the context that fits, and the token counters."""

from __future__ import annotations

import json

import pytest

import common
from common.conversation import TokenCounter


def words(text: str) -> int:
    """One token per whitespace-separated word: easy numbers for the tests."""
    return len(text.split())


def conversation(**options):
    defaults = {"max_input_tokens": 60, "max_total_tokens": 100, "max_new_tokens": 30,
                "count_tokens": words}
    defaults.update(options)
    return common.Conversation("Be brief.", **defaults)


def test_the_first_turn_is_a_llama2_prompt_with_the_system_prompt():
    chat = conversation()
    turn = chat.prepare("Hello there")
    assert turn.payload["inputs"] == common.build_llama2_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}])
    assert turn.payload["parameters"]["max_new_tokens"] == 30
    assert turn.payload["stream"] is True
    assert turn.dropped == [] and turn.notice() is None
    assert turn.prompt_limit == 60 and turn.prompt_tokens == words(turn.payload["inputs"])


def test_the_history_is_in_the_next_prompt():
    chat = conversation()
    chat.prepare("first question")
    chat.record_answer("first answer")
    turn = chat.prepare("second question")
    prompt = turn.payload["inputs"]
    assert "first question" in prompt and "first answer" in prompt
    assert prompt.endswith("second question [/INST]")


def test_oldest_turns_are_dropped_and_reported_the_system_prompt_kept():
    chat = conversation()
    for index in range(6):
        turn = chat.prepare(f"question {index} " + "word " * 8)
        chat.record_answer(f"answer {index} " + "word " * 8)
    assert chat.dropped_turns > 0
    assert chat.dropped[0]["content"].startswith("question 0")
    turn = chat.prepare("last question")
    prompt = turn.payload["inputs"]
    assert prompt.startswith("[INST] <<SYS>>\nBe brief.")
    assert "question 0" not in prompt
    assert turn.prompt_tokens <= turn.prompt_limit
    assert words(prompt) + 30 <= 100
    assert chat.messages[0] == {"role": "system", "content": "Be brief."}
    # Dropping happens turn by turn and is said out loud.
    dropped_now = [t for t in [turn] if t.dropped]
    for prepared in dropped_now:
        assert "Dropped the oldest" in prepared.notice()


def test_a_drop_is_reported_in_the_turn_that_needed_it():
    chat = conversation()
    chat.prepare("a " * 20)
    chat.record_answer("b " * 20)
    turn = chat.prepare("c " * 20)
    assert turn.dropped_turns == 1
    assert [m["role"] for m in turn.dropped] == ["user", "assistant"]
    assert "Dropped the oldest 1 turn" in turn.notice()


def test_a_message_that_cannot_fit_alone_raises_with_the_numbers_and_the_fix():
    chat = conversation()
    chat.prepare("short")
    chat.record_answer("short answer")
    with pytest.raises(common.PayloadError) as caught:
        chat.prepare("word " * 100)
    message = str(caught.value)
    assert "over the limit of 60 prompt tokens" in message
    assert "Shorten the message" in message and "max_new_tokens" in message
    # The conversation is unchanged.
    assert [m["content"] for m in chat.messages] == ["Be brief.", "short", "short answer"]


def test_the_limit_is_the_total_minus_new_tokens_when_that_is_lower():
    chat = conversation(max_input_tokens=90, max_total_tokens=100, max_new_tokens=50)
    assert chat.prompt_limit == 50
    lmi = conversation(max_input_tokens=None, max_total_tokens=100, max_new_tokens=30)
    assert lmi.prompt_limit == 70


def test_from_preset_takes_the_limits_and_the_container():
    preset = common.get_preset("7b", "tgi")
    chat = common.Conversation.from_preset(preset, "sys", temperature=0.6)
    assert chat.max_input_tokens == preset.max_input_tokens
    assert chat.max_total_tokens == preset.max_total_tokens
    assert chat.max_new_tokens == preset.max_new_tokens
    turn = chat.prepare("Hi")
    assert turn.payload["parameters"]["temperature"] == 0.6
    assert turn.payload["parameters"]["return_full_text"] is False
    lmi = common.Conversation.from_preset(common.get_preset("7b", "lmi"), "sys")
    assert lmi.max_input_tokens is None and lmi.container == "lmi"


def test_messages_api_sends_messages_and_counts_them():
    chat = conversation(messages_api=True, max_input_tokens=None, max_total_tokens=200)
    chat.prepare("one two")
    chat.record_answer("three")
    turn = chat.prepare("four")
    assert turn.payload["messages"][-1] == {"role": "user", "content": "four"}
    assert turn.payload["max_tokens"] == 30 and "inputs" not in turn.payload
    assert turn.prompt_tokens == sum(words(m["content"]) + 8 for m in turn.payload["messages"])


def test_a_stopped_answer_is_recorded_and_a_failed_question_withdrawn():
    chat = conversation()
    chat.prepare("q1")
    chat.record_answer("partial ans")
    chat.prepare("q2")
    chat.withdraw_question()
    assert [m["content"] for m in chat.messages][-2:] == ["q1", "partial ans"]
    with pytest.raises(common.PayloadError):
        chat.record_answer("no question")
    chat.prepare("q3")
    with pytest.raises(common.PayloadError, match="no answer yet"):
        chat.prepare("q4")


def test_clear_keeps_the_system_prompt():
    chat = conversation()
    chat.prepare("q")
    chat.record_answer("a")
    chat.clear()
    assert chat.messages == [{"role": "system", "content": "Be brief."}]


def test_the_estimate_says_it_is_one_and_is_high():
    counter = TokenCounter.estimate()
    assert counter.exact is False and "estimate" in counter.source
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert counter(text) > len(text) / 4  # Llama averages about 4 characters per token


def _tokenizer_file(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_token_counter_uses_a_real_tokenizer_file(tmp_path):
    counter = common.token_counter(tokenizer_file=_tokenizer_file(tmp_path))
    assert counter.exact is True and "tokenizer" in counter.source
    assert counter("hello world hello") == 3


def test_token_counter_reads_tokenizer_json_through_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(_tokenizer_file(tmp_path))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    counter = common.token_counter("meta-llama/Llama-2-7b-chat-hf")
    assert calls == [("meta-llama/Llama-2-7b-chat-hf", "tokenizer.json")]
    assert counter.exact and counter.source == "tokenizer.json of meta-llama/Llama-2-7b-chat-hf"


def test_token_counter_falls_back_to_the_estimate_and_says_why(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    counter = common.token_counter("meta-llama/Llama-2-7b-chat-hf")
    assert counter.exact is False
    assert "not available: LocalEntryNotFoundError" in counter.source
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"not": "a tokenizer"}))
    assert common.token_counter(tokenizer_file=broken).exact is False
