"""Named examples of every wire format and regressions for failures users reported."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import warnings

import pytest
import stream_samples as ss
from botocore.exceptions import EventStreamError, ReadTimeoutError, ResponseStreamingError
from urllib3.exceptions import ProtocolError

from common.errors import (
    ContainerStreamError,
    IncompleteStreamError,
    InternalStreamFailure,
    ModelStreamError,
    StreamError,
    StreamTimeoutError,
)
from common.streaming import LineIterator, Token, TokenStream, iter_text, iter_tokens

EMOJI = "🦙"  # 4 bytes in UTF-8, a surrogate pair in a \u escape
TOKENS = [Token("Hello", 1, False, -0.5), Token(" wor", 2, False, -0.25),
          Token("ld", 3, False, -0.125), Token(" " + EMOJI, 4, False, -1.0),
          Token("", 5, False, -2.0), Token("!", 6, False, -0.5), ss.EOS]
ANSWER = "Hello world " + EMOJI + "!"


def sse(*payloads: object, space: bool = True) -> bytes:
    prefix = b"data: " if space else b"data:"
    return b"".join(prefix + json.dumps(p).encode() + b"\n\n" for p in payloads)


def tgi_event(index: int, text: str, *, special: bool = False, final: str | None = None,
              finish_reason: str | None = None) -> dict:
    return {"index": index,
            "token": {"id": index, "text": text, "logprob": -0.5, "special": special},
            "generated_text": final,
            "details": {"finish_reason": finish_reason} if finish_reason else None}


def run_in_thread(fn, timeout_s: float = 10.0):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it never ends."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the decoder hung"
    if "error" in result:
        raise result["error"]
    return result["value"]


def model_stream_error(code: str = "ModelInvocationTimeExceeded") -> EventStreamError:
    return EventStreamError(
        {"Error": {"Code": "ModelStreamError", "Message": "Model invocation time exceeded"},
         "ErrorCode": code},
        "InvokeEndpointWithResponseStream",
    )


# ----------------------------------------------------------------------------- LineIterator


def test_line_iterator_last_line_without_newline_comes_out_and_does_not_hang():
    events = ss.events([b'{"a": 1}\n{"b"', b": 2}"])
    assert run_in_thread(lambda: list(LineIterator(events))) == [b'{"a": 1}', b'{"b": 2}']


def test_original_line_iterator_hung_on_a_last_line_without_newline():
    """The regression above is real: the sample's iterator loops forever on this input."""
    lines = ss.OriginalSampleLineIterator(ss.events([b"a\nb"]))
    assert next(lines) == b"a"
    thread = threading.Thread(target=lambda: next(lines), daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # still spinning; the daemon thread dies with the test process


def test_line_iterator_several_lines_in_one_part_and_one_line_over_many_parts():
    events = ss.events([b"one\ntwo\r\nthr", b"e", b"e\n\nfour\n"])
    assert list(LineIterator(events)) == [b"one", b"two", b"three", b"", b"four"]


def test_line_iterator_has_no_total_size_limit():
    """sagemaker-core's LineIterator raises after 100 MiB in total; ours keeps nothing."""
    line = b"x" * (64 * 1024 - 1) + b"\n"
    part = line * 16  # 1 MiB
    count = sum(1 for _ in LineIterator({"PayloadPart": {"Bytes": part}}
                                        for _ in range(101)))
    assert count == 101 * 16


def test_line_iterator_skips_unknown_events_with_a_warning():
    events = [{"PayloadPart": {"Bytes": b"a\n"}}, {"SomethingNew": {}},
              {"PayloadPart": {"Bytes": b"b\n"}}]
    with pytest.warns(RuntimeWarning, match="SomethingNew"):
        assert list(LineIterator(events)) == [b"a", b"b"]


def test_line_iterator_lets_botocore_errors_through():
    with pytest.raises(EventStreamError):
        list(LineIterator(ss.raising_after(ss.events([b"a\n"]), model_stream_error())))


# ----------------------------------------------------------------------------- TGI SSE


def test_tgi_sse_tokens_text_and_final_fields():
    sample = ss.tgi_sse(TOKENS)
    stream = iter_tokens(ss.line_events(sample.data), container="tgi")
    assert list(stream) == TOKENS
    assert stream.text == ANSWER
    assert stream.generated_text == ANSWER
    assert stream.finish_reason == "eos_token"
    assert stream.details["generated_tokens"] == len(TOKENS)
    assert stream.format == "sse"


def test_tgi_special_eos_is_a_token_but_never_printed_into_the_answer():
    data = sse(tgi_event(0, "Hi"), tgi_event(1, "</s>", special=True, final="Hi"))
    stream = iter_tokens(ss.one_event(data))
    tokens = list(stream)
    assert tokens[-1] == Token("</s>", 1, True, -0.5)
    assert "".join(iter_text(ss.one_event(data))) == "Hi"
    assert stream.text == "Hi"


def test_several_sse_events_in_one_part_all_come_out():
    data = sse(*(tgi_event(i, f"t{i}") for i in range(5)))
    assert list(iter_text(ss.one_event(data))) == [f"t{i}" for i in range(5)]


def test_sse_with_and_without_space_keepalives_and_other_fields():
    data = (b": keep-alive\n\nevent: message\nid: 7\nretry: 100\n"
            + sse(tgi_event(0, "a"), space=False) + b":\n\n" + sse(tgi_event(1, "b")))
    assert "".join(iter_text(ss.byte_events(data), container="tgi")) == "ab"


def test_final_generated_text_is_not_duplicated_into_the_text():
    data = sse(tgi_event(0, "Hel"), tgi_event(1, "lo", final="Hello", finish_reason="length"))
    stream = iter_tokens(ss.one_event(data))
    assert [t.text for t in stream] == ["Hel", "lo"]
    assert stream.text == "Hello"
    assert stream.generated_text == "Hello"
    assert stream.finish_reason == "length"


def test_byte_fallback_tokens_with_empty_text_are_tokens_without_text():
    data = sse(tgi_event(0, ""), tgi_event(1, "é"))
    assert [t.text for t in iter_tokens(ss.one_event(data))] == ["", "é"]
    assert list(iter_text(ss.one_event(data))) == ["é"]


def test_data_prefix_is_removed_as_a_prefix_not_as_a_set_of_characters():
    """``str.lstrip("data:")`` would also eat a leading 'a', 't', 'd' or ':' of the JSON."""
    data = b'data: {"token": {"id": 1, "text": "data: at", "special": false}}\n\n'
    assert list(iter_text(ss.one_event(data))) == ["data: at"]


# ----------------------------------------------------------------------------- split characters


@pytest.mark.parametrize("build", [ss.tgi_sse, ss.lmi_jsonlines, ss.lmi_async_lines,
                                   ss.messages_sse, ss.messages_jsonlines])
def test_emoji_split_inside_its_utf8_bytes_never_gives_decode_errors_or_replacement(build):
    sample = build([Token(EMOJI + "你", 1, False, -0.5)])
    start = sample.data.index(EMOJI.encode())
    for cut in range(start + 1, start + 4):  # inside the 4 bytes of the emoji
        text = "".join(iter_text(ss.cut_events(sample.data, [cut])))
        assert text == EMOJI + "你"
        assert "\ufffd" not in text


def test_lmi_document_escape_and_surrogate_pair_split_anywhere():
    sample = ss.lmi_document([Token('say "' + EMOJI + '"\\n\n', 1)], ensure_ascii=True)
    assert b"\\ud83e\\udd99" in sample.data
    for cut in range(1, len(sample.data)):
        text = "".join(iter_text(ss.cut_events(sample.data, [cut]), container="lmi"))
        assert text == 'say "' + EMOJI + '"\\n\n'


def test_lmi_document_utf8_split_anywhere():
    sample = ss.lmi_document([Token(EMOJI + "你好", 1)], ensure_ascii=False)
    assert list(iter_text(ss.byte_events(sample.data))) == list(EMOJI + "你好")


# ----------------------------------------------------------------------------- LMI formats


def naive_lstrip_decode(events) -> str:
    """The original LMI sample's way: strip the prefix with lstrip (a set of characters)."""
    out = []
    for index, event in enumerate(events):
        piece = event["PayloadPart"]["Bytes"]
        if index == 0:
            piece = piece.lstrip(b'{"generated_text": "')
        out.append(piece.rstrip(b'"}').decode())
    return "".join(out)


@pytest.mark.parametrize("first", [" and then", "generated", "energy", "{braces}", '"quoted"',
                                   ": colon", "text"])
def test_lmi_document_keeps_leading_characters_that_lstrip_ate(first):
    sample = ss.lmi_document([Token(first, 1), Token(" more", 2)])
    events = ss.events([sample.data[:len('{"generated_text": "') + len(first)],
                        sample.data[len('{"generated_text": "') + len(first):]])
    assert "".join(iter_text(events)) == first + " more"


def test_original_lmi_sample_lost_leading_characters():
    """The regression above is real: " and then" came out as "hen"."""
    sample = ss.lmi_document([Token(" and then", 1)])
    assert naive_lstrip_decode(ss.one_event(sample.data)) == "hen"


def test_lmi_document_details_and_tgi_compat_brackets():
    sample = ss.lmi_document(TOKENS, details=True, tgi_compat=True)
    stream = iter_tokens(ss.byte_events(sample.data), container="lmi")
    assert all(t.id is None for t in stream)
    assert stream.text == ANSWER
    assert stream.generated_text == ANSWER
    assert stream.finish_reason == "length"
    assert stream.format == "lmi-document"


def test_lmi_document_lone_surrogates_decode_as_json_does():
    body = r'a\ud83d b\ude00 c\ud83d\u0041'
    data = ('{"generated_text": "' + body + '"}').encode()
    expected = json.loads('"' + body + '"')
    for cut in range(1, len(data)):
        assert "".join(iter_text(ss.cut_events(data, [cut]))) == expected


def test_lmi_document_error_finish_reason_is_a_container_error():
    data = b'{"generated_text": "partial", "details": {"finish_reason": "error"}}'
    with pytest.raises(ContainerStreamError) as info:
        list(iter_tokens(ss.one_event(data)))
    assert info.value.partial_text == "partial"
    assert info.value.error_code == "error"


def test_lmi_jsonlines_with_falsy_fields_absent():
    data = (b'{"token": {"id": 0, "log_prob": -0.1}}\n'
            b'{"token": {"id": 5, "text": " x", "log_prob": -0.2}}\n'
            b'{"token": {"id": 2, "text": "</s>", "log_prob": -0.3, "special_token": true}, '
            b'"generated_text": " x", "details": {"finish_reason": "eos_token"}}\n')
    stream = iter_tokens(ss.one_event(data), container="lmi")
    assert list(stream) == [Token("", 0, False, -0.1), Token(" x", 5, False, -0.2),
                            Token("</s>", 2, True, -0.3)]
    assert (stream.text, stream.finish_reason, stream.generated_text) == (" x", "eos_token",
                                                                          " x")


def test_lmi_async_lines_skip_empty_lines():
    sample = ss.lmi_async_lines(TOKENS, blank_lines=2, details=True)
    assert b"\n\n\n" in sample.data
    stream = iter_tokens(ss.line_events(sample.data), container="lmi")
    assert list(stream) == TOKENS
    assert stream.finish_reason == "length"


def test_tgi_shaped_final_line_is_not_taken_for_an_lmi_document():
    """Sniffing looks at the first key: a TGI-shaped line also has generated_text."""
    data = (json.dumps({"index": 0, "token": {"id": 1, "text": "A", "logprob": -1.0},
                        "generated_text": "A", "details": None}) + "\n").encode()
    stream = iter_tokens(ss.byte_events(data))
    assert [t.text for t in stream] == ["A"]
    assert stream.format == "jsonlines"


def test_non_streaming_lmi_answer_reads_as_one_document():
    data = b'{"generated_text": "whole answer"}'
    assert "".join(iter_text(ss.one_event(data))) == "whole answer"


def test_non_streaming_tgi_answer_says_to_ask_for_a_stream():
    data = b'[{"generated_text": null}]'
    with pytest.raises(StreamError, match='"stream": true'):
        list(iter_tokens(ss.one_event(data)))


# ----------------------------------------------------------------------------- Messages API


@pytest.mark.parametrize("container", ["tgi", "lmi", "auto"])
@pytest.mark.parametrize("build", [ss.messages_sse, ss.messages_jsonlines])
def test_messages_api_chunks_are_read_under_every_container_setting(build, container):
    sample = build(TOKENS)
    stream = iter_tokens(ss.byte_events(sample.data), container=container)
    assert list(stream) == [Token(t.text) for t in TOKENS if t.text and not t.special]
    assert stream.text == ANSWER
    assert stream.finish_reason == "stop"
    assert stream.usage["completion_tokens"] == len([t for t in TOKENS if not t.special])


def test_messages_api_done_marker_and_role_only_chunk():
    data = (b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":'
            b'{"role":"assistant"},"finish_reason":null}]}\n\n'
            b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":'
            b'{"content":"Hi"},"finish_reason":"length"}]}\n\n'
            b"data: [DONE]\n\n")
    stream = iter_tokens(ss.one_event(data))
    assert list(stream) == [Token("Hi")]
    assert stream.finish_reason == "length"


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("code", ["ModelInvocationTimeExceeded", "StreamBroken"])
def test_botocore_model_stream_error_mid_stream_keeps_the_partial_text(code):
    sample = ss.tgi_sse(TOKENS)
    parts = ss.line_events(sample.data)[:4]  # two events: "Hello", " wor"
    error = model_stream_error(code)
    with pytest.raises(ModelStreamError) as info:
        list(iter_tokens(ss.raising_after(parts, error)))
    assert info.value.partial_text == "Hello wor"
    assert info.value.error_code == code
    assert info.value.__cause__ is error


def test_botocore_internal_stream_failure_mid_stream():
    error = EventStreamError(
        {"Error": {"Code": "InternalStreamFailure", "Message": "Internal stream failure"}},
        "InvokeEndpointWithResponseStream")
    data = ss.lmi_jsonlines(TOKENS).data
    stream = iter_tokens(ss.raising_after(ss.events([data[:60]]), error))
    with pytest.raises(InternalStreamFailure) as info:
        list(stream)
    assert info.value.partial_text == "Hello" == stream.text
    assert "retry" in str(info.value)


@pytest.mark.parametrize(("error", "expected"), [
    (ReadTimeoutError(endpoint_url="https://runtime.sagemaker.test"), StreamTimeoutError),
    (ResponseStreamingError(error="Connection broken"), IncompleteStreamError),
    (ProtocolError("Connection broken: IncompleteRead"), IncompleteStreamError),
    (TimeoutError("timed out"), StreamTimeoutError),
])
def test_read_timeouts_and_broken_connections_become_stream_errors(error, expected):
    parts = ss.events([sse(tgi_event(0, "par"), tgi_event(1, "tial"))])
    with pytest.raises(expected) as info:
        list(iter_text(ss.raising_after(parts, error)))
    assert info.value.partial_text == "partial"
    assert info.value.__cause__ is error


def test_raw_error_event_dicts_are_mapped_too():
    events = [*ss.events([sse(tgi_event(0, "x"))]),
              {"ModelStreamError": {"Message": "broken", "ErrorCode": "StreamBroken"}}]
    with pytest.raises(ModelStreamError) as info:
        list(iter_tokens(events))
    assert (info.value.partial_text, info.value.error_code) == ("x", "StreamBroken")


def test_other_exceptions_from_the_event_stream_are_not_swallowed_or_relabelled():
    with pytest.raises(KeyboardInterrupt):
        list(iter_tokens(ss.raising_after([], KeyboardInterrupt())))
    with pytest.raises(ZeroDivisionError):
        list(iter_tokens(ss.raising_after([], ZeroDivisionError())))


def test_tgi_error_event_is_a_container_error_with_the_partial_text():
    data = sse(tgi_event(0, "Par"), {"error": "CUDA out of memory", "error_type": "generation"})
    with pytest.raises(ContainerStreamError) as info:
        list(iter_tokens(ss.one_event(data), container="tgi"))
    assert info.value.partial_text == "Par"
    assert info.value.error_code == "generation"
    assert "CUDA out of memory" in str(info.value)


def test_lmi_error_line_with_finish_reason_error():
    data = (b'{"token": {"id": 7, "text": "Par", "log_prob": -0.1}}\n'
            b'{"token": {"id": -1, "text": "", "log_prob": -1, "special_token": true}, '
            b'"generated_text": "", "details": {"finish_reason": "error", '
            b'"generated_tokens": null, "inputs": null}}\n')
    with pytest.raises(ContainerStreamError) as info:
        list(iter_tokens(ss.one_event(data), container="lmi"))
    assert info.value.partial_text == "Par"
    assert info.value.error_code == "error"


def test_lmi_validation_error_line():
    data = b'{"error": "Input too long", "code": 424}\n'
    with pytest.raises(ContainerStreamError, match="Input too long") as info:
        list(iter_tokens(ss.one_event(data)))
    assert info.value.error_code == "424"


@pytest.mark.parametrize("build", [ss.tgi_sse, ss.lmi_jsonlines, ss.lmi_async_lines,
                                   ss.lmi_document, ss.messages_sse, ss.messages_jsonlines])
def test_stream_cut_off_inside_its_last_document_is_incomplete(build):
    sample = build(TOKENS)
    stripped = sample.data.rstrip(b"\n")
    for end in (len(stripped) - 1, len(stripped) - 7):
        with pytest.raises(IncompleteStreamError) as info:
            list(iter_tokens(ss.byte_events(stripped[:end])))
        assert ANSWER.startswith(info.value.partial_text)


def test_stream_cut_inside_a_utf8_character_is_incomplete():
    data = (sse(tgi_event(0, "ok"))
            + b'data: {"token": {"id": 1, "text": "' + EMOJI.encode()[:2])
    with pytest.raises(IncompleteStreamError) as info:
        list(iter_tokens(ss.one_event(data)))
    assert info.value.partial_text == "ok"


def test_complete_but_invalid_json_line_is_a_stream_error_not_a_json_error():
    data = b'{"token": {"id": 1, "text": "a"}}\n{"token": oops}\n{"token": {"text": "b"}}\n'
    with pytest.raises(StreamError, match="invalid JSON") as info:
        list(iter_tokens(ss.one_event(data)))
    assert type(info.value) is StreamError
    assert info.value.partial_text == "a"
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


def test_invalid_utf8_is_a_stream_error():
    data = b'{"token": {"id": 1, "text": "\xff"}}\n'
    with pytest.raises(StreamError, match="UTF-8"):
        list(iter_tokens(ss.one_event(data)))


def test_unknown_event_type_warns_and_decoding_continues():
    data = sse(tgi_event(0, "a"), tgi_event(1, "b"))
    events = [{"PayloadPart": {"Bytes": data[:10]}}, {"FutureEvent": {"x": 1}},
              {"PayloadPart": {"Bytes": data[10:]}}]
    with pytest.warns(RuntimeWarning, match="FutureEvent"):
        assert "".join(iter_text(events)) == "ab"


def test_invalid_container_value_names_the_allowed_values():
    with pytest.raises(ValueError, match="'tgi', 'lmi', 'auto'"):
        iter_tokens([], container="vllm")
    with pytest.raises(ValueError, match="'tgi', 'lmi', 'auto'"):
        iter_text([], container="TGI")


def test_passing_the_whole_response_or_bytes_is_a_type_error_with_the_fix():
    with pytest.raises(TypeError, match=r"response\['Body'\]"):
        iter_tokens({"Body": [], "ContentType": "text/event-stream"})
    with pytest.raises(TypeError, match=r"response\['Body'\]"):
        iter_tokens(b"data: {}\n\n")
    with pytest.raises(TypeError, match="event dicts"):
        list(iter_tokens([b"data: {}\n\n"]))


def test_tgi_setting_refuses_lmi_formats_with_the_fix():
    for sample in (ss.lmi_jsonlines(TOKENS), ss.lmi_document(TOKENS)):
        with pytest.raises(StreamError, match="container='lmi'"):
            list(iter_tokens(ss.one_event(sample.data), container="tgi"))


def test_unknown_sse_line_and_unknown_event_object_are_stream_errors():
    with pytest.raises(StreamError, match="unexpected line"):
        list(iter_tokens(ss.one_event(b"data: [DONE]\n\nhello\n\n")))
    with pytest.raises(StreamError, match="no 'token', 'choices' or 'error'"):
        list(iter_tokens(ss.one_event(b'{"outputs": ["x"]}\n')))


def test_empty_and_blank_streams_give_no_tokens():
    for events in ([], ss.events([b"\n", b"\n\n"])):
        stream = iter_tokens(events)
        assert list(stream) == []
        assert (stream.text, stream.format, stream.finish_reason) == ("", "empty", None)


# ----------------------------------------------------------------------------- objects


def test_token_is_a_frozen_dataclass_with_defaults():
    token = Token("x")
    assert (token.id, token.special, token.logprob) == (None, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.text = "y"  # type: ignore[misc]


def test_token_stream_is_an_iterator_that_closes_its_source():
    closed = []

    class Body:
        def __iter__(self):
            return iter(ss.events([sse(tgi_event(0, "a"), tgi_event(1, "b"))]))

        def close(self):
            closed.append(True)

    with iter_tokens(Body()) as stream:
        assert isinstance(stream, TokenStream)
        assert iter(stream) is stream
        assert next(stream).text == "a"
        assert stream.text == "a"
    assert closed == [True]
    assert list(stream) == []


def test_text_so_far_is_kept_while_iterating():
    sample = ss.tgi_sse(TOKENS)
    stream = iter_tokens(ss.byte_events(sample.data))
    texts = [stream.text for _ in stream]
    assert texts == list(itertools.accumulate(t.text if not t.special else ""
                                              for t in TOKENS))


def test_no_warning_for_well_formed_streams():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for build in (ss.tgi_sse, ss.lmi_jsonlines, ss.lmi_document, ss.messages_sse):
            assert "".join(iter_text(ss.byte_events(build(TOKENS).data))) == ANSWER
