"""The stand-in's containers (request parsing, output framing) and its replay backend."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.local.backends import (
    END_TOKEN,
    REPLAY_LABEL,
    Backend,
    GenerationRequest,
    ReplayBackend,
    compose_answer,
    llama_tokens,
)
from common.local.containers import (
    LMI,
    TGI,
    ContainerRejected,
    approx_tokens,
    container_for_image,
    open_session,
    parse_request,
)
from common.prompts import build_llama2_prompt

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
TGI_OLD_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
                 "2.0.1-tgi1.0.3-gpu-py39-cu118-ubuntu20.04")
TGI_2_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
               "2.1.1-tgi2.0.0-gpu-py310-cu121-ubuntu22.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"

TGI_SPEC = container_for_image(TGI_IMAGE)
LMI_SPEC = container_for_image(LMI_IMAGE)
MESSAGES = [
    {"role": "system", "content": "You write short marketing emails."},
    {"role": "user", "content": "Write an email for AnyCloud Internet Service. "
                                "Mention the code EARLYB1RD."},
]
PROMPT = build_llama2_prompt(MESSAGES)
REPLAY = ReplayBackend(ttft_s=0, tokens_per_s=0)


def _body(**payload) -> bytes:
    return json.dumps(payload).encode()


def _run(spec, payload: dict, backend: Backend = REPLAY, env: dict | None = None):
    """Parse ``payload`` and generate through a session; return (parsed, session, bytes)."""
    parsed = parse_request(spec, json.dumps(payload).encode(), env or {})
    session = open_session(parsed)
    out = bytearray(session.start())
    generator = backend.generate(parsed.generation)
    finished = False
    for token in generator:
        data, finished = session.push(token)
        out += data
        if finished:
            break
    generator.close()
    assert finished, "the replay always finishes (EOS or budget)"
    out += session.end()
    return parsed, session, bytes(out)


def _sse(data: bytes, prefix: str = "data: ") -> list[str]:
    """The data fields of an SSE stream (our own reader; every event is one data line)."""
    text = data.decode()
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    assert all(e.startswith(prefix) for e in events), events
    return [e[len(prefix):] for e in events]


def _lines(data: bytes) -> list[str]:
    text = data.decode()
    assert text.endswith("\n")
    return text[:-1].split("\n")


# --------------------------------------------------------------------------- images


def test_images_map_to_their_containers_and_versions():
    assert (TGI_SPEC.kind, TGI_SPEC.version) == (TGI, (3, 3, 6))
    assert (LMI_SPEC.kind, LMI_SPEC.version) == (LMI, (0, 38, 0))
    assert container_for_image(TGI_OLD_IMAGE).version == (1, 0, 3)
    assert container_for_image("123.dkr.ecr.us-east-1.amazonaws.com/my-own-image:1") is None


# --------------------------------------------------------------------------- TGI


def test_tgi_streams_sse_events_with_a_space_from_index_1_and_no_done():
    _, session, data = _run(TGI_SPEC, {"inputs": PROMPT, "parameters": {
        "max_new_tokens": 500, "return_full_text": False}, "stream": True})
    events = [json.loads(e) for e in _sse(data)]
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert "[DONE]" not in data.decode()
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    last = events[-1]
    assert last["token"] == {"id": 2, "text": "</s>", "logprob": END_TOKEN.logprob,
                             "special": True}
    text = "".join(e["token"]["text"] for e in events if not e["token"]["special"])
    assert last["generated_text"] == text == session.text
    assert last["details"] is None  # only when asked
    assert "AnyCloud Internet Service" in text and "EARLYB1RD" in text
    assert session.content_type == "text/event-stream"


def test_tgi_details_when_asked_and_the_prompt_by_default():
    parsed, _, data = _run(TGI_SPEC, {"inputs": PROMPT, "parameters": {
        "max_new_tokens": 7, "details": True}, "stream": True})
    last = json.loads(_sse(data)[-1])
    assert last["details"] == {"finish_reason": "length", "generated_tokens": 7, "seed": None,
                               "input_length": approx_tokens(PROMPT)}
    # TGI's SageMaker route defaults return_full_text to true for text-generation models.
    assert parsed.return_full_text
    assert last["generated_text"].startswith(PROMPT)


def test_tgi_v3_generates_until_eos_when_max_new_tokens_is_absent():
    _, session, _ = _run(TGI_SPEC, {"inputs": PROMPT, "stream": True})
    assert session.finish_reason == "eos_token"
    assert session.count == len(REPLAY.tokens_for(GenerationRequest(prompt=PROMPT)))


@pytest.mark.parametrize(("image", "default", "prefix"),
                         [(TGI_OLD_IMAGE, 20, "data:"), (TGI_2_IMAGE, 100, "data:")])
def test_older_tgi_defaults_and_sse_prefix(image, default, prefix):
    spec = container_for_image(image)
    long_answer = ReplayBackend(0, 0, answer=" word" * 300)
    parsed, session, data = _run(spec, {"inputs": "Hi", "stream": True}, backend=long_answer)
    assert parsed.max_new_tokens == default == session.count
    assert all(not line.startswith("data: ") for line in data.decode().split("\n\n") if line)
    assert len(_sse(data, prefix)) == default


def test_tgi_without_stream_answers_one_json_list():
    _, session, data = _run(TGI_SPEC, {"inputs": PROMPT, "parameters": {
        "max_new_tokens": 9, "return_full_text": False}})
    assert json.loads(data) == [{"generated_text": session.text}]
    assert session.content_type == "application/json"


def test_tgi_stop_ends_with_the_stop_sequence_and_stop_sequences_is_ignored():
    parsed, _, data = _run(TGI_SPEC, {"inputs": PROMPT, "parameters": {
        "stop": [" Service"], "stop_sequences": ["Meet"], "return_full_text": False,
        "details": True}, "stream": True})
    last = json.loads(_sse(data)[-1])
    assert last["generated_text"].endswith(" Service")
    assert "Meet" in last["generated_text"]
    assert last["details"]["finish_reason"] == "stop_sequence"
    assert parsed.ignored == ["stop_sequences"]


@pytest.mark.parametrize(("parameters", "message"), [
    ({"temperature": 0}, "`temperature` must be strictly positive"),
    ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"top_k": 0}, "`top_k` must be strictly positive"),
    ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences"),
    ({"max_new_tokens": 5000}, "`inputs` tokens + `max_new_tokens` must be <= 4096"),
])
def test_tgi_validation_errors_are_422_or_an_sse_event_when_streaming(parameters, message):
    with pytest.raises(ContainerRejected) as plain:
        parse_request(TGI_SPEC, _body(inputs=PROMPT, parameters=parameters), {})
    assert plain.value.status == 422
    error = json.loads(plain.value.body)
    assert error["error_type"] == "validation" and message in error["error"]
    assert plain.value.stream_body is None
    with pytest.raises(ContainerRejected) as streaming:
        parse_request(TGI_SPEC, _body(inputs=PROMPT, parameters=parameters, stream=True), {})
    (event,) = _sse(streaming.value.stream_body)
    assert json.loads(event) == error


def test_tgi_max_total_tokens_comes_from_the_environment():
    with pytest.raises(ContainerRejected, match="must be <= 100"):
        parse_request(TGI_SPEC, _body(inputs=PROMPT, parameters={"max_new_tokens": 90}),
                      {"MAX_TOTAL_TOKENS": "100", "MAX_INPUT_TOKENS": "99"})


@pytest.mark.parametrize("payload", [
    {"inputs": PROMPT, "parameters": {"max_new_tokens": "20"}},
    {"inputs": PROMPT, "parameters": {"max_new_tokens": 20.5}},
    {"inputs": PROMPT, "parameters": {"details": "yes"}},
    {"inputs": [PROMPT]},
    {"prompt_text": PROMPT},
    ["not", "an", "object"],
])
def test_tgi_rejects_bodies_that_do_not_deserialise(payload):
    with pytest.raises(ContainerRejected) as caught:
        parse_request(TGI_SPEC, json.dumps(payload).encode(), {})
    assert caught.value.status == 422
    assert caught.value.body.startswith(b"Failed to deserialize the JSON body")


def test_tgi_rejects_a_body_that_is_not_json():
    with pytest.raises(ContainerRejected) as caught:
        parse_request(TGI_SPEC, b"{not json", {})
    assert caught.value.status == 400


def test_tgi_sampling_parameters_reach_the_backend():
    parsed = parse_request(TGI_SPEC, _body(inputs=PROMPT, parameters={
        "do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 1.1, "seed": 7, "max_new_tokens": 64}), {})
    generation = parsed.generation
    assert (generation.do_sample, generation.temperature, generation.top_p, generation.top_k,
            generation.repetition_penalty, generation.seed, generation.max_new_tokens) == (
        True, 0.6, 0.9, 50, 1.1, 7, 64)
    assert generation.prompt == PROMPT and generation.messages is None


def test_tgi_messages_api_streams_chat_chunks_ending_with_done():
    parsed, session, data = _run(TGI_SPEC, {"messages": MESSAGES, "stream": True,
                                            "max_tokens": 400})
    events = _sse(data)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == session.text and "EARLYB1RD" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert parsed.prompt == build_llama2_prompt(MESSAGES, bos=True)
    assert parsed.generation.messages == MESSAGES


def test_tgi_messages_api_usage_chunk_and_non_streaming_completion():
    _, _, data = _run(TGI_SPEC, {"messages": MESSAGES, "stream": True, "max_tokens": 5,
                                 "stream_options": {"include_usage": True}})
    chunks = [json.loads(e) for e in _sse(data)[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    _, session, data = _run(TGI_SPEC, {"messages": MESSAGES, "max_tokens": 5})
    completion = json.loads(data)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant",
                                                   "content": session.text}


def test_tgi_messages_in_the_wrong_order_are_a_template_error():
    with pytest.raises(ContainerRejected) as caught:
        parse_request(TGI_SPEC, _body(messages=[{"role": "assistant", "content": "Hi"}],
                                      stream=True), {})
    assert caught.value.status == 422 and caught.value.stream_body is None
    assert json.loads(caught.value.body)["error_type"] == "template_error"


def test_tgi_container_error_events():
    parsed = parse_request(TGI_SPEC, _body(inputs=PROMPT, stream=True), {})
    (event,) = _sse(open_session(parsed).error("CUDA out of memory"))
    assert json.loads(event) == {"error": "Request failed during generation: CUDA out of memory",
                                 "error_type": "generation"}
    (event,) = _sse(open_session(parsed).incomplete())
    assert json.loads(event)["error_type"] == "incomplete_generation"
    plain = parse_request(TGI_SPEC, _body(inputs=PROMPT), {})
    with pytest.raises(ContainerRejected) as caught:
        open_session(plain).error("boom")
    assert caught.value.status == 424


# --------------------------------------------------------------------------- LMI


def test_lmi_streams_tgi_shaped_json_lines_then_two_empty_lines():
    _, session, data = _run(LMI_SPEC, {"inputs": PROMPT, "parameters": {"max_new_tokens": 500},
                                       "stream": True})
    lines = _lines(data)
    assert lines[-2:] == ["", ""]
    documents = [json.loads(line) for line in lines[:-2]]
    assert all(d["index"] == 0 and set(d["token"]) == {"id", "text", "logprob"}
               for d in documents)
    assert all(d["details"] is None for d in documents)
    assert documents[-1]["token"]["id"] == 2 and documents[-1]["token"]["text"] == ""
    text = "".join(d["token"]["text"] for d in documents)
    assert documents[-1]["generated_text"] == text == session.text
    assert session.content_type == "application/jsonlines"


def test_lmi_max_new_tokens_defaults_to_30():
    parsed, session, data = _run(LMI_SPEC, {"inputs": PROMPT, "stream": True})
    assert parsed.max_new_tokens == 30 == session.count
    assert len([line for line in _lines(data) if line]) == 30
    assert session.finish_reason == "length"


def test_lmi_details_when_asked_and_return_full_text_prepends_the_prompt():
    _, _, data = _run(LMI_SPEC, {"inputs": PROMPT, "stream": True, "parameters": {
        "max_new_tokens": 4, "details": True, "return_full_text": True, "seed": 3}})
    last = json.loads(_lines(data)[-3])
    assert last["details"] == {"finish_reason": "length", "seed": 3, "generated_tokens": 4,
                               "input_length": approx_tokens(PROMPT)}
    assert last["generated_text"].startswith(PROMPT)


def test_lmi_without_stream_answers_one_json_object():
    _, session, data = _run(LMI_SPEC, {"inputs": PROMPT, "parameters": {"max_new_tokens": 6}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"generated_text": session.text}


def test_lmi_honours_stop_and_ignores_stop_sequences():
    parsed, session, data = _run(LMI_SPEC, {"inputs": PROMPT, "stream": True, "parameters": {
        "stop": [" Service"], "stop_sequences": ["Meet"], "max_new_tokens": 200}})
    last = json.loads(_lines(data)[-3])
    # vLLM cuts the answer before the stop string.
    assert last["generated_text"] == " Subject: Meet AnyCloud Internet"
    assert session.finish_reason == "stop"
    assert parsed.ignored == ["stop_sequences"]


def test_lmi_do_sample_false_means_temperature_zero():
    parsed = parse_request(LMI_SPEC, _body(inputs=PROMPT, parameters={
        "do_sample": False, "temperature": 0.7, "top_p": 0.9}), {})
    assert parsed.generation.temperature == 0.0 and not parsed.generation.do_sample
    assert parsed.generation.top_p == 0.9


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 424, "Input parsing failed"),
    (_body(text="hi"), 424, "must contain prompt, inputs, or messages"),
    (_body(inputs="hi", parameters={"max_new_tokens": "many"}), 424, "Input parsing failed"),
    (_body(inputs="hi", parameters={"temperature": -1}), 400, "temperature must be non-neg"),
    (_body(inputs="hi", parameters={"top_p": 0}), 400, "top_p must be in (0, 1]"),
    (_body(inputs="hi", parameters={"max_new_tokens": 5000}), 400, "maximum context length"),
])
def test_lmi_errors_are_its_status_with_code_and_error(body, status, message):
    with pytest.raises(ContainerRejected) as caught:
        parse_request(LMI_SPEC, body, {})
    assert caught.value.status == status
    document = json.loads(caught.value.body)
    assert document["code"] == status and message in document["error"]


def test_lmi_messages_api_streams_chat_chunks_as_json_lines():
    _, session, data = _run(LMI_SPEC, {"messages": MESSAGES, "stream": True,
                                       "max_tokens": 300})
    lines = _lines(data)
    assert lines[-1] == ""  # [DONE]
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == session.text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_lmi_messages_api_without_stream_is_one_chat_completion():
    _, session, data = _run(LMI_SPEC, {"messages": MESSAGES, "max_tokens": 8})
    completion = json.loads(data)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == session.text
    assert completion["choices"][0]["finish_reason"] == "length"


def test_lmi_container_error_is_vllms_error_line():
    parsed = parse_request(LMI_SPEC, _body(inputs=PROMPT, stream=True), {})
    (line,) = _lines(open_session(parsed).error("engine died"))
    assert json.loads(line)["error"]["message"] == "engine died"


# --------------------------------------------------------------------------- every request


@given(container=st.sampled_from([TGI_SPEC, LMI_SPEC]), max_new=st.integers(1, 140),
       stream=st.booleans())
def test_every_budget_gives_the_same_prefix_of_the_answer(container, max_new, stream):
    payload = {"inputs": PROMPT, "parameters": {"max_new_tokens": max_new,
                                                "return_full_text": False},
               "stream": stream}
    _, session, _ = _run(container, payload)
    tokens = REPLAY.tokens_for(GenerationRequest(prompt=PROMPT))
    assert session.count == min(max_new, len(tokens))
    expected = "".join(t.text for t in tokens[:session.count] if not t.special)
    assert session.text == expected


# --------------------------------------------------------------------------- the replay


@given(st.text(max_size=300))
def test_every_text_is_cut_into_pieces_that_join_back_to_it(text):
    pieces = llama_tokens(text)
    assert "".join(piece for _, piece in pieces) == text
    assert all(0 <= token_id < 32000 for token_id, _ in pieces)


def test_an_emoji_is_four_byte_tokens_and_only_the_last_carries_it():
    pieces = llama_tokens(" go 🚀")
    assert pieces[-4:] == [(3 + 0xF0, ""), (3 + 0x9F, ""), (3 + 0x9A, ""), (3 + 0x80, "🚀")]


def test_the_replay_is_a_realistic_deterministic_answer_ending_with_eos():
    request = GenerationRequest(prompt=PROMPT)
    tokens = list(REPLAY.generate(request))
    assert tokens == list(REPLAY.generate(request))
    assert tokens[-1] == END_TOKEN and [t.special for t in tokens].count(True) == 1
    text = "".join(t.text for t in tokens[:-1])
    assert text.startswith(" ")
    assert "AnyCloud Internet Service" in text and "EARLYB1RD" in text
    assert "—" in text and "é" in text and "🚀" in text
    assert any(t.text == "" for t in tokens)
    assert all(t.logprob <= 0 for t in tokens)
    assert isinstance(REPLAY, Backend)
    assert REPLAY.label == REPLAY_LABEL and "not a real model" in REPLAY.label


def test_without_a_product_the_replay_gives_a_generic_answer():
    answer = compose_answer("how do I cook rice?")
    assert "Happy to help" in answer and "🙂" in answer
    email = compose_answer("Write an email for Quantum Toaster Pro")
    assert "Quantum Toaster Pro" in email and "é" in email and "code" not in email


def test_the_replay_is_paced_by_its_clock():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    backend = ReplayBackend(ttft_s=0.5, tokens_per_s=10, answer="a b c",
                            sleep=sleep, clock=lambda: now[0])
    tokens = list(backend.generate(GenerationRequest(prompt="x")))
    assert len(tokens) == 4
    assert sleeps == [0.5, 0.1, 0.1, 0.1]
    with pytest.raises(ValueError):
        ReplayBackend(ttft_s=-1)
