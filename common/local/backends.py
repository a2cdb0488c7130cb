"""What generates the tokens behind a local endpoint: the :class:`Backend` protocol and the
canned :class:`ReplayBackend`.

A backend only turns a :class:`GenerationRequest` into a stream of :class:`GeneratedToken`;
everything a container adds on top -- parsing the request body, ``max_new_tokens``, stop
sequences, ``details``, output framing -- is done by :mod:`common.local.containers` and
:mod:`common.local.runtime`, the same way for every backend. Two implement it:

* :class:`ReplayBackend` (here): replays a deterministic, realistic chat answer at a chosen
  time to first token and token rate. It is labelled plainly as a replay wherever it shows.
* ``common.local.model_backend.ModelBackend``: a small real model generating on the CPU.
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "END_TOKEN",
    "REPLAY_LABEL",
    "Backend",
    "GeneratedToken",
    "GenerationRequest",
    "ReplayBackend",
    "compose_answer",
    "end_token_for",
    "llama_tokens",
]

REPLAY_LABEL = "replay backend: canned answer, not a real model"


@dataclass
class GenerationRequest:
    """One generation, as a container hands it to its model.

    Attributes:
        prompt: the prompt text (a ``{"inputs": ...}`` request, or the chat template's
            rendering of ``messages``); ``None`` when only ``messages`` are given.
        messages: the conversation of a Messages API request (``[{"role", "content"}]``),
            else ``None``.
        max_new_tokens: the most tokens the server will take (the server enforces it; a
            backend may stop there too).
        stop: stop sequences (the server enforces them).
        temperature, top_p, top_k, do_sample, repetition_penalty, seed: sampling
            parameters as the container passes them on; ``None`` means the model's default.
        model_id: the model the container serves (``HF_MODEL_ID``), when it says.
    """

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    do_sample: bool = False
    repetition_penalty: float | None = None
    seed: int | None = None
    model_id: str | None = None


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token.

    Attributes:
        id: the token id in the model's vocabulary.
        text: its text as the container streams it: a character split over several byte
            tokens is empty on all but the token that completes it, which carries it whole.
        logprob: the log-probability of the token (<= 0).
        special: an end-of-sequence (or other special) token; the answer ends with it.
    """

    id: int
    text: str
    logprob: float
    special: bool = False


@runtime_checkable
class Backend(Protocol):
    """Generates tokens for the local runtime server.

    Attributes:
        name: a short key (``"replay"``, ``"model"``).
        label: one line that says plainly what answers (shown with every answer).
    """

    name: str
    label: str

    def generate(self, request: GenerationRequest) -> Iterator[GeneratedToken]:
        """Yield tokens as they are produced, ending with (and including) a special
        end-of-sequence token -- or never ending.

        The server, not the backend, enforces ``max_new_tokens`` and stop sequences: it stops
        iterating and closes the generator, which must then stop at once.

        Raises:
            common.errors.PayloadError: the request cannot be generated (no prompt, bad
                parameters); raised on the first ``next()``.
        """
        ...


END_TOKEN = GeneratedToken(id=2, text="</s>", logprob=-0.0021, special=True)
"""Llama 2's end-of-sequence token as TGI streams it (``special: true``)."""


def end_token_for(model_id: str | None) -> GeneratedToken:
    """The token that ends an answer of ``model_id``, from the served model's files
    (:func:`common.local.served_model.lookup`: ``<|eot_id|>`` for Llama 3.x, ``<|eot|>`` for
    Llama 4, ``<step>`` for Code Llama 70B); Llama 2's :data:`END_TOKEN` for a model the
    stand-in does not know."""
    from common.local.served_model import lookup

    served = lookup(model_id)
    if served is None:
        return END_TOKEN
    return GeneratedToken(id=served.end_token_id, text=served.end_token,
                          logprob=END_TOKEN.logprob, special=True)

# --------------------------------------------------------------------------- the answer

_CAPITALISED_RUN = re.compile(r"[A-Z][\w'’&-]*(?:[ \t]+[A-Z][\w'’&-]*)+")
_CODE = re.compile(r"\b(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{5,}\b")
_EMAIL_WORDS = re.compile(r"\b(e-?mail|newsletter|announce|campaign|promot|market)", re.I)


def _last_user_text(request: GenerationRequest) -> str:
    """The last user message of ``request``: from its messages, or read out of its prompt in
    the Llama 2 layout or the served model's template layout (else the whole prompt)."""
    if request.messages:
        for message in reversed(request.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return "".join(part.get("text", "") for part in content
                                   if isinstance(part, dict))
                return str(content or "")
    prompt = request.prompt or ""
    from common.errors import PayloadError
    from common.prompts import parse_llama2_prompt

    try:
        messages = parse_llama2_prompt(prompt)
    except PayloadError:
        from common.local.served_model import last_user_text

        return last_user_text(prompt, request.model_id) or prompt
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), prompt)


def _product(text: str) -> str | None:
    runs = [run.strip() for run in _CAPITALISED_RUN.findall(text)]
    runs = [run for run in runs if not _CODE.fullmatch(run.split()[-1])]
    return max(runs, key=lambda run: len(run.split()), default=None)


def compose_answer(user_text: str) -> str:
    """Return the replayed answer to ``user_text``.

    A short marketing email about the product the message names (the longest run of
    capitalised words, e.g. "AnyCloud Internet Service"), quoting a coupon code when one is
    there (an upper-case word with a digit, e.g. "EARLYB1RD"); otherwise a generic helpful
    answer. Both hold an emoji and non-ASCII characters ("—", "é").
    """
    product = _product(user_text)
    code = _CODE.search(user_text)
    if product is None and not _EMAIL_WORDS.search(user_text):
        return (
            "Happy to help! Here is a short answer — clear, friendly and ready to use 🙂\n\n"
            "Tell me a little more about your audience and goal, and I can tailor the tone, "
            "add a call to action and keep it under 120 words. À bientôt!"
        )
    product = product or "our new service"
    brand = product.split()[0] if product[0].isupper() else "Product"
    offer = (
        f"For a limited time, use code {code.group(0)} when you sign up to claim your "
        "early-bird discount."
        if code else "Sign up today and feel the difference from the very first day."
    )
    return (
        f"Subject: Meet {product} — fast, simple and ready when you are 🚀\n\n"
        "Hi there,\n\n"
        f"Say hello to {product}: dependable speed, friendly support and a price that stays "
        "put. Stream, work and play anywhere, from the living room to the café, without "
        "the wait.\n\n"
        f"{offer}\n\n"
        "Cheers,\n"
        f"The {brand} team"
    )


# --------------------------------------------------------------------------- tokens

_VOCAB = 32000
_FIRST_PIECE_ID = 259  # Llama 2: 0-2 are <unk> <s> </s>, 3-258 the byte tokens <0x00>..<0xFF>
_SEGMENTS = re.compile(r"\n| ?[^\W\d_]+| ?\d+| ?[^\w\s]| ?_| +|\s")


def _piece_id(piece: str) -> int:
    return _FIRST_PIECE_ID + zlib.crc32(piece.encode()) % (_VOCAB - _FIRST_PIECE_ID)


def _logprob(piece: str, position: int) -> float:
    spread = zlib.crc32(f"{position}:{piece}".encode()) % 1800
    return -round(0.0005 + spread / 1000.0, 4)


def _word_pieces(word: str) -> list[str]:
    """Split a long word into 2 or 3 pieces, the leading space staying on the first."""
    core = word.lstrip(" ")
    lead = word[: len(word) - len(core)]
    if len(core) <= 7:
        return [word]
    count = 3 if len(core) > 11 else 2
    size = -(-len(core) // count)
    parts = [core[i:i + size] for i in range(0, len(core), size)]
    return [lead + parts[0], *parts[1:]]


def _byte_tokens(char: str) -> list[tuple[int, str]]:
    """A character outside the vocabulary as byte-fallback tokens: the last one carries it."""
    data = char.encode("utf-8")
    return [(3 + byte, char if i == len(data) - 1 else "") for i, byte in enumerate(data)]


def llama_tokens(text: str) -> list[tuple[int, str]]:
    """Cut ``text`` into Llama-like ``(id, text)`` pieces, the way TGI streams them.

    Words keep their leading space (SentencePiece's "▁"), long words split into 2-3 pieces,
    digits go one per token, a newline is the byte token ``<0x0A>`` (id 13) -- other
    whitespace but the space is a byte token too -- and a character
    outside the Basic Multilingual Plane (an emoji) becomes its UTF-8 byte tokens (id
    ``3 + byte``) of which only the last carries text. Ids are deterministic.
    Joining the texts gives ``text`` back exactly.
    """
    pieces: list[tuple[int, str]] = []
    for segment in _SEGMENTS.findall(text):
        if segment == "\n":
            pieces.append((13, "\n"))
            continue
        if segment.isspace() and segment[0] != " ":  # tab, CR, ...: byte-fallback tokens
            pieces.extend(_byte_tokens(segment))
            continue
        core = segment.lstrip(" ")
        lead = segment[: len(segment) - len(core)]
        if not core:
            pieces.extend((_piece_id(" "), " ") for _ in segment)
        elif core.isdigit():
            if lead:
                pieces.append((_piece_id(lead), lead))
            pieces.extend((_piece_id(digit), digit) for digit in core)
        elif len(core) == 1 and ord(core) > 0xFFFF:
            if lead:
                pieces.append((_piece_id(lead), lead))
            pieces.extend(_byte_tokens(core))
        else:
            pieces.extend((_piece_id(piece), piece) for piece in _word_pieces(segment))
    return pieces


@functools.lru_cache(maxsize=256)
def _replay_tokens(answer: str, model_id: str | None) -> tuple[GeneratedToken, ...]:
    """``answer`` cut into tokens, ``model_id``'s end token last; kept, since many requests
    replay the same answer (the tokens are frozen)."""
    tokens = [GeneratedToken(id=token_id, text=text, logprob=_logprob(text, i))
              for i, (token_id, text) in enumerate(llama_tokens(answer))]
    return (*tokens, end_token_for(model_id))


# --------------------------------------------------------------------------- the backend


class ReplayBackend:
    """Replays a canned, deterministic chat answer, paced like a 7B model on a g5.

    The answer is :func:`compose_answer` of the request's last user message (or ``answer``),
    cut by :func:`llama_tokens`, followed by :data:`END_TOKEN`. Sampling parameters do not
    change it: it is a replay, not a model (see :attr:`label`).

    Args:
        ttft_s: seconds before the first token (0: none).
        tokens_per_s: tokens per second after it (0: no delay between tokens).
        answer: replay this text instead of the composed answer.
        sleep: the sleep function (tests inject a fake one).
        clock: the monotonic clock that paces the tokens.

    Raises:
        ValueError: ``ttft_s`` or ``tokens_per_s`` is negative.
    """

    name = "replay"
    label = REPLAY_LABEL

    def __init__(
        self,
        ttft_s: float = 0.06,
        tokens_per_s: float = 60.0,
        answer: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if ttft_s < 0 or tokens_per_s < 0:
            raise ValueError(
                f"ttft_s and tokens_per_s must be >= 0 (0 means no delay); got {ttft_s}, "
                f"{tokens_per_s}"
            )
        self.ttft_s = float(ttft_s)
        self.tokens_per_s = float(tokens_per_s)
        self.answer = answer
        self._sleep = sleep
        self._clock = clock

    def answer_for(self, request: GenerationRequest) -> str:
        """Return the text this backend replays for ``request`` (``answer`` as given, or the
        composed answer with the leading space a Llama 2 answer starts with)."""
        if self.answer is not None:
            return self.answer
        # Llama 2 answers start with a word piece "▁...", which TGI streams as " ...".
        return " " + compose_answer(_last_user_text(request))

    def tokens_for(self, request: GenerationRequest) -> list[GeneratedToken]:
        """Return every token of the replay for ``request``, the model's end token last
        (:func:`end_token_for`: :data:`END_TOKEN` for Llama 2)."""
        return list(_replay_tokens(self.answer_for(request), request.model_id))

    def generate(self, request: GenerationRequest) -> Iterator[GeneratedToken]:
        """Yield the replay's tokens, sleeping ``ttft_s`` before the first and
        ``1/tokens_per_s`` between the others (on a schedule, so delays do not add up)."""
        tokens = self.tokens_for(request)
        start = self._clock()
        gap = 1.0 / self.tokens_per_s if self.tokens_per_s else 0.0
        for index, token in enumerate(tokens):
            due = start + self.ttft_s + index * gap
            wait = due - self._clock()
            if wait > 0:
                self._sleep(wait)
            yield token

    def __repr__(self) -> str:
        return (f"ReplayBackend(ttft_s={self.ttft_s}, tokens_per_s={self.tokens_per_s}) "
                f"-- {self.label}")
