"""Fuzz the stream decoders: whatever bytes arrive, they fail only with StreamError.

Hypothesis throws random bytes, mutated valid streams of every format (bytes flipped,
inserted, deleted, duplicated; framing characters spliced in; truncated) and well-framed
events with wrong JSON types at :func:`common.iter_tokens` under every ``container=``
setting, cut into parts at random offsets. For every input:

* decoding ends (a SIGALRM guard fails the example instead of hanging the suite);
* it ends either normally or with :class:`common.errors.StreamError` (or a subclass) whose
  ``partial_text`` is the stream's ``.text`` -- never another exception;
* the outcome does not depend on the cuts: the same bytes in one part give the same tokens,
  the same text and the same exception type;
* the async face (``aiter_tokens``) gives exactly what the sync one gives: tokens, text,
  attributes, exception type and ``partial_text``.

``FUZZ_EXAMPLES`` (environment) is the total number of examples across these tests
(default 6000, which CI runs); raise it for a longer hunt.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import warnings

import pytest
import stream_samples as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import StreamError
from common.streaming import CONTAINERS, LineIterator, iter_tokens

TOTAL_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6000"))
HANG_LIMIT_S = 10


def fuzz_settings(share: float) -> settings:
    return settings(max_examples=max(10, int(TOTAL_EXAMPLES * share)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(Exception):
    """Raised by the alarm when one decode takes longer than HANG_LIMIT_S."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_LIMIT_S):
    if not hasattr(signal, "setitimer"):  # no SIGALRM (Windows): run unguarded
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"decoding did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(event_list: list, container: str) -> tuple:
    """Decode; return what must not depend on the cuts. Only StreamError may escape."""
    stream = iter_tokens(event_list, container=container)
    tokens = []
    error = None
    with hang_guard(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unknown events may be spliced in
        try:
            for token in stream:
                tokens.append(token)
        except StreamError as exc:
            error = exc
    for token in tokens:  # the types Token promises, whatever the JSON held
        assert type(token.text) is str and type(token.special) is bool
        assert token.id is None or type(token.id) is int
        assert token.logprob is None or type(token.logprob) is float
    for value in (stream.finish_reason, stream.generated_text):
        assert value is None or type(value) is str
    for value in (stream.details, stream.usage):
        assert value is None or type(value) is dict
    text = "".join(t.text for t in tokens if not t.special)
    assert stream.text == text
    if error is not None:
        assert error.partial_text == text
        assert str(error)  # the message renders
    with hang_guard(), warnings.catch_warnings():  # the async face agrees exactly
        warnings.simplefilter("ignore", RuntimeWarning)
        twin = ss.decode_async(event_list, container)
    assert twin.key() == ss.decode_sync_result(stream, tokens, error).key()
    if stream.format == "lmi-document":
        tokens = None  # its tokens are the text per part: they follow the cuts
    return type(error), text, tokens, stream.format, stream.finish_reason


def assert_cut_invariant(data: bytes, cut_at: list[int], container: str) -> None:
    whole = outcome(ss.one_event(data), container)
    assert outcome(ss.cut_events(data, cut_at), container) == whole


# ----------------------------------------------------------------------------- mutations

SPLICES = [b"\n", b"\r\n", b"\n\n", b"\\", b'"', b"\\u", b"\\ud83d", b"\\udc00", b"{", b"}",
           b"[", b"]", b":", b",", b"data:", b"data: ", b"data: [DONE]\n\n", b": ping\n\n",
           b"\xf0", b"\xf0\x9f", b"\xff", b"\x00", b'{"error": "boom"}\n', b"null", b"true",
           b"-1", b"1e999", b"[[[[[[[[", b'"token"', b'"generated_text"', b'{"generated_text": "']


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid stream of any format with a few byte-level mutations."""
    data = bytearray(draw(ss.samples(max_tokens=6)).data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "splice", "duplicate",
                                   "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "splice":
            data[at:at] = draw(st.sampled_from(SPLICES))
        elif op == "duplicate":
            data[at:at] = data[max(0, at - draw(st.integers(1, 16))):at]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@fuzz_settings(0.4)
@given(data=st.data(), container=st.sampled_from(CONTAINERS))
def test_mutated_streams_fail_only_with_stream_error_whatever_the_cuts(data, container):
    body = data.draw(mutated(), label="bytes")
    assert_cut_invariant(body, data.draw(ss.cuts(body), label="cuts"), container)


@fuzz_settings(0.2)
@given(data=st.data(), container=st.sampled_from(CONTAINERS))
def test_random_bytes_fail_only_with_stream_error_whatever_the_cuts(data, container):
    prefix = data.draw(st.sampled_from([b"", b"data: ", b"{", b'{"generated_text": "', b"\n"]))
    body = prefix + data.draw(st.binary(max_size=200), label="bytes")
    assert_cut_invariant(body, data.draw(ss.cuts(body), label="cuts"), container)


# ----------------------------------------------------------------------------- wrong types

KEYS = ["token", "text", "id", "logprob", "log_prob", "special", "special_token", "choices",
        "delta", "content", "finish_reason", "details", "generated_text", "error",
        "error_type", "code", "usage", "index", "object", "message", "error_msg"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | ss.texts
    | st.sampled_from(["error", "stop", "</s>", ""]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    max_leaves=12,
)
TEMPLATES = [
    {"index": 0, "token": {"id": 1, "text": "a", "logprob": -0.5, "special": False},
     "generated_text": "a", "details": {"finish_reason": "length", "generated_tokens": 1}},
    {"token": {"id": 1, "text": "a", "log_prob": -0.5, "special_token": True},
     "generated_text": "a", "details": {"finish_reason": "error", "error_msg": "x"}},
    {"object": "chat.completion.chunk", "usage": {"total_tokens": 1},
     "choices": [{"index": 0, "delta": {"content": "a"}, "text": "b", "finish_reason": None}]},
    {"error": "boom", "error_type": "generation", "code": 424},
]


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _paths(child, (*prefix, index))
    return paths


@st.composite
def shaped(draw: st.DrawFn) -> object:
    """A real event shape with one or two fields (at any depth) swapped for random JSON
    values or removed."""
    event = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))  # a deep copy
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(_paths(event)))
        if not path:
            return draw(json_values)
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return event


events_json = st.one_of(shaped(), shaped(),
                        st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5),
                        json_values)


@fuzz_settings(0.3)
@given(data=st.data(), container=st.sampled_from(CONTAINERS),
       framing=st.sampled_from(["sse", "jsonlines"]))
def test_well_framed_events_with_wrong_types_fail_only_with_stream_error(data, container,
                                                                         framing):
    docs = data.draw(st.lists(events_json, min_size=1, max_size=5), label="events")
    if framing == "sse":
        body = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs)
    else:
        body = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
    assert_cut_invariant(body, data.draw(ss.cuts(body), label="cuts"), container)


WRONG_VALUES = [None, True, False, 0, -1, 2**70, 1.5, "", "stop", "error", [], ["x"], {},
                {"text": "x"}]


def _variants(template: dict):
    """Every single-field change of ``template``: each field removed or set to each value."""
    for path in _paths(template)[1:]:
        for value in [_REMOVE, *WRONG_VALUES]:
            event = json.loads(json.dumps(template))
            parent = event
            for step in path[:-1]:
                parent = parent[step]
            if value is _REMOVE:
                if isinstance(parent, list):
                    continue
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield event


_REMOVE = object()


@pytest.mark.parametrize("template", TEMPLATES, ids=["tgi", "lmi", "chunk", "error"])
def test_every_field_of_every_event_shape_with_every_wrong_type(template):
    """Exhaustive companion of the test above: one field changed at a time, every framing,
    every container setting, followed by a valid event."""
    tail = {"token": {"id": 9, "text": "z", "logprob": -1.0, "special": False}}
    for event in _variants(template):
        for body in (b"data: " + json.dumps(event).encode() + b"\n\n"
                     + b"data: " + json.dumps(tail).encode() + b"\n\n",
                     json.dumps(event).encode() + b"\n" + json.dumps(tail).encode() + b"\n"):
            for container in CONTAINERS:
                outcome(ss.one_event(body), container)


# ----------------------------------------------------------------------------- lines


@fuzz_settings(0.1)
@given(body=st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")), data=st.data())
def test_line_iterator_never_loses_or_invents_a_byte(body, data):
    with hang_guard():
        lines = list(LineIterator(ss.cut_events(body, data.draw(ss.cuts(body)))))
    assert b"\n".join(lines) + (b"\n" if body.endswith(b"\n") else b"") == body


@pytest.mark.parametrize("container", CONTAINERS)
def test_unknown_events_between_fuzzed_parts_only_warn(container):
    sample = ss.tgi_sse([ss.EOS])
    event_list = [{"Mystery": {}}, *ss.byte_events(sample.data), {"Mystery": {}}]
    with pytest.warns(RuntimeWarning):
        assert list(iter_tokens(event_list, container=container)) == [ss.EOS]
