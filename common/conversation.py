"""A chat conversation that always fits the model's context: messages, prompt, token budget.

A chat grows by one question and one answer per turn until the prompt no longer fits what the
endpoint accepts: TGI rejects a prompt over ``MAX_INPUT_TOKENS`` and a request whose prompt
plus ``max_new_tokens`` is over ``MAX_TOTAL_TOKENS`` ("inputs must have less than N
tokens"); LMI (vLLM) rejects prompt plus ``max_tokens`` over ``max_model_len``.
:class:`Conversation` keeps the messages and, before each turn, drops the oldest finished
turns -- never the system prompt -- until the prompt plus ``max_new_tokens`` fits. What it
dropped is reported in the :class:`PreparedTurn` (and in :attr:`Conversation.dropped`),
never silently; a single message that cannot fit even alone raises
:class:`~common.errors.PayloadError` with the numbers and the fix.

Tokens are counted by a :class:`TokenCounter`: the model's own tokenizer
(:func:`token_counter` loads ``tokenizer.json`` through ``huggingface_hub`` with the
``tokenizers`` library) where it can be had, otherwise a deliberately high estimate
(:func:`common.endpoints.approx_token_count`) that says it is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.endpoints import MESSAGE_OVERHEAD_TOKENS, approx_token_count, build_payload
from common.errors import PayloadError
from common.prompts import build_llama2_prompt

__all__ = [
    "Conversation",
    "PreparedTurn",
    "TokenCounter",
    "token_counter",
]

Message = dict[str, str]


class TokenCounter:
    """Counts the tokens of a text as the endpoint will, or estimates them high.

    Args:
        count: ``count(text) -> int``.
        exact: whether ``count`` is the model's own tokenizer.
        source: what counts, in words (shown in the chat's context meter and in errors).

    Call it: ``counter(text) -> int``.
    """

    def __init__(self, count: Callable[[str], int], *, exact: bool, source: str) -> None:
        self._count = count
        self.exact = exact
        self.source = source

    def __call__(self, text: str) -> int:
        """Return the number of tokens of ``text`` (the BOS token the container adds
        included)."""
        return self._count(text)

    @classmethod
    def estimate(cls, reason: str = "no tokenizer given") -> TokenCounter:
        """A conservative estimate (:func:`~common.endpoints.approx_token_count` plus the BOS
        token): English comes out about a third high, so a prompt it accepts fits."""
        return cls(lambda text: approx_token_count(text) + 1, exact=False,
                   source=f"estimate, high on purpose ({reason})")

    def __repr__(self) -> str:
        return f"TokenCounter({self.source})"


def token_counter(
    model_id: str | None = None,
    *,
    tokenizer_file: str | Path | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> TokenCounter:
    """Return a :class:`TokenCounter` for a model: its real tokenizer if it can be had.

    Args:
        model_id: the Hugging Face model id (``preset.model_id``); its ``tokenizer.json`` is
            fetched with ``huggingface_hub.hf_hub_download`` (from the local cache when
            offline; Llama 2 is gated, so pass ``token=`` or set ``HF_TOKEN``).
        tokenizer_file: a local ``tokenizer.json`` to use instead.
        revision: the model revision.
        token: a Hugging Face token for gated models.

    Returns:
        A counter with ``exact=True`` that encodes with the tokenizer (special tokens added,
        as TGI and vLLM do), or -- when the file or the ``tokenizers`` library cannot be
        had -- the high estimate, whose ``source`` says why.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return TokenCounter.estimate("the tokenizers library is not installed")
    if tokenizer_file is None:
        if model_id is None:
            return TokenCounter.estimate("no model id or tokenizer file given")
        try:
            from huggingface_hub import hf_hub_download

            tokenizer_file = hf_hub_download(model_id, "tokenizer.json", revision=revision,
                                             token=token)
        except Exception as exc:  # hub errors vary (offline, gated, missing): report, fall back
            return TokenCounter.estimate(
                f"tokenizer.json of {model_id} not available: {type(exc).__name__}")
        where = f"tokenizer.json of {model_id}"
    else:
        where = f"tokenizer {Path(tokenizer_file).name}"
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # a broken or foreign file: report it, fall back
        return TokenCounter.estimate(f"{where} unreadable: {type(exc).__name__}")
    return TokenCounter(lambda text: len(tokenizer.encode(text).ids), exact=True, source=where)


@dataclass
class PreparedTurn:
    """One turn, ready to send.

    Attributes:
        payload: the request body (``json.dumps`` it): a generate body built from the
            prompt, or a Messages API body.
        prompt_tokens: the prompt's tokens as counted (see ``counted_with``).
        prompt_limit: the most prompt tokens the endpoint takes with ``max_new_tokens``.
        max_new_tokens: the tokens asked for.
        dropped: the messages dropped before this turn to make it fit (oldest first).
        counted_with: the :class:`TokenCounter`'s ``source``.
    """

    payload: dict[str, Any]
    prompt_tokens: int
    prompt_limit: int
    max_new_tokens: int
    dropped: list[Message] = field(default_factory=list)
    counted_with: str = ""

    @property
    def dropped_turns(self) -> int:
        """How many earlier turns (question + answer) were dropped for this one."""
        return sum(1 for message in self.dropped if message["role"] == "user")

    def notice(self) -> str | None:
        """A sentence saying what was dropped, or ``None`` when nothing was."""
        if not self.dropped:
            return None
        turns = self.dropped_turns
        return (f"Dropped the oldest {turns} turn{'s' if turns != 1 else ''} "
                f"({len(self.dropped)} messages) so that the prompt fits: "
                f"{self.prompt_tokens} of {self.prompt_limit} prompt tokens now.")


class Conversation:
    """A chat's messages, kept within the endpoint's token limits.

    Args:
        system: the system prompt (kept whatever is dropped), or ``None``.
        max_input_tokens: the longest prompt the endpoint takes (TGI ``MAX_INPUT_TOKENS``;
            ``None`` for no such limit, as with LMI).
        max_total_tokens: prompt + new tokens of one request (TGI ``MAX_TOTAL_TOKENS``, LMI
            ``max_model_len``).
        max_new_tokens: the tokens each answer may have.
        container: ``"tgi"`` or ``"lmi"`` (the payload's shape and parameter checks).
        prompt_builder: renders the messages as the prompt text (default
            :func:`common.build_llama2_prompt`; ``common.prompt_builder_for(model_id)`` for
            other models). Ignored with ``messages_api=True``.
        messages_api: send OpenAI-style ``messages`` and let the container apply the
            model's chat template, instead of a prompt string.
        count_tokens: a :class:`TokenCounter` (``common.token_counter(model_id)``) or a
            plain ``count(text) -> int``; default: the high estimate.
        **parameters: generation parameters for every turn (``temperature=0.6`` ...).

    Raises:
        ValueError: for limits that leave no room for a prompt.
    """

    def __init__(
        self,
        system: str | None = None,
        *,
        max_input_tokens: int | None,
        max_total_tokens: int,
        max_new_tokens: int = 512,
        container: str = "tgi",
        prompt_builder: Callable[[list[Message]], str] = build_llama2_prompt,
        messages_api: bool = False,
        count_tokens: TokenCounter | Callable[[str], int] | None = None,
        **parameters: Any,
    ) -> None:
        self.system = system
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.max_new_tokens = max_new_tokens
        self.container = container
        self.prompt_builder = prompt_builder
        self.messages_api = messages_api
        if count_tokens is None:
            count_tokens = TokenCounter.estimate()
        elif not isinstance(count_tokens, TokenCounter):
            count_tokens = TokenCounter(count_tokens, exact=True, source="the count_tokens given")
        self.count_tokens: TokenCounter = count_tokens
        self.parameters = parameters
        self.turns: list[Message] = []
        self.dropped: list[Message] = []
        if self.prompt_limit < 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt within "
                f"max_total_tokens={max_total_tokens}: lower max_new_tokens.")

    @classmethod
    def from_preset(
        cls,
        preset: Any,
        system: str | None = None,
        *,
        max_new_tokens: int | None = None,
        **options: Any,
    ) -> Conversation:
        """A conversation within ``preset``'s limits (its ``max_input_tokens`` for TGI, its
        ``max_total_tokens``, and ``max_new_tokens`` by default); ``options`` as for the
        constructor."""
        return cls(
            system,
            max_input_tokens=preset.max_input_tokens if preset.container == "tgi" else None,
            max_total_tokens=preset.max_total_tokens,
            max_new_tokens=preset.max_new_tokens if max_new_tokens is None else max_new_tokens,
            container=preset.container,
            **options,
        )

    # -- what it holds
    @property
    def messages(self) -> list[Message]:
        """The messages that are sent: the system prompt, then the turns kept (copies)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [dict(m) for m in head + self.turns]

    @property
    def prompt_limit(self) -> int:
        """The most prompt tokens that leave room for ``max_new_tokens``."""
        room = self.max_total_tokens - self.max_new_tokens
        return room if self.max_input_tokens is None else min(self.max_input_tokens, room)

    @property
    def dropped_turns(self) -> int:
        """How many turns have been dropped so far, in all."""
        return sum(1 for message in self.dropped if message["role"] == "user")

    def count(self, messages: Sequence[Mapping[str, str]] | None = None) -> int:
        """The prompt tokens of ``messages`` (default: :attr:`messages`) as they are sent."""
        messages = self.messages if messages is None else [dict(m) for m in messages]
        if not messages:
            return 0
        if self.messages_api:
            return sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS
                       for m in messages)
        return self.count_tokens(self.prompt_builder(list(messages)))

    # -- turns
    def prepare(self, user_text: str) -> PreparedTurn:
        """Add the user's message and return the request for it, dropping the oldest turns
        (never the system prompt) until the prompt plus ``max_new_tokens`` fits.

        Raises:
            PayloadError: the message cannot fit even alone with the system prompt (the
                numbers and the fix in the message; the conversation is left unchanged), or
                the prompt builder / payload checks refuse it.
        """
        if not isinstance(user_text, str) or not user_text.strip():
            raise PayloadError("The message is empty: type a question first.")
        if self.turns and self.turns[-1]["role"] == "user":
            raise PayloadError("The last question has no answer yet: call record_answer() "
                               "with its answer (or its partial answer) before the next one.")
        head = [{"role": "system", "content": self.system}] if self.system else []
        kept = [*self.turns, {"role": "user", "content": user_text}]
        dropped: list[Message] = []
        limit = self.prompt_limit
        tokens = self.count(head + kept)
        while tokens > limit and len(kept) > 1:
            dropped += kept[:2]  # the oldest question and its answer
            kept = kept[2:]
            tokens = self.count(head + kept)
        if tokens > limit:
            alone = self.count_tokens(user_text)
            how = "counted" if self.count_tokens.exact else "estimated high"
            raise PayloadError(
                f"This message cannot fit: with the system prompt the prompt is {tokens} "
                f"tokens ({how}; the message alone about {alone}), over the limit of {limit} "
                f"prompt tokens (= {self._limit_reason()}). Shorten the message, lower "
                f"max_new_tokens (now {self.max_new_tokens}), or shorten the system prompt"
                + ("" if self.count_tokens.exact
                   else "; or pass count_tokens=common.token_counter(model_id) for an exact "
                        "count") + ".")
        payload = self._payload(head + kept)
        self.turns = kept
        self.dropped += dropped
        return PreparedTurn(payload, tokens, limit, self.max_new_tokens, dropped,
                            self.count_tokens.source)

    def record_answer(self, text: str) -> None:
        """Add the assistant's answer to the last question (a stopped answer's partial text
        is an answer too: the model sees what the reader saw).

        Raises:
            PayloadError: there is no question waiting for an answer.
        """
        if not self.turns or self.turns[-1]["role"] != "user":
            raise PayloadError("There is no question waiting for an answer: call prepare() "
                               "first.")
        self.turns.append({"role": "assistant", "content": text})

    def withdraw_question(self) -> None:
        """Remove the last question when its request failed before any answer, so that the
        roles keep alternating. Does nothing when the last message is an answer."""
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()

    def clear(self) -> None:
        """Forget every turn (the system prompt stays)."""
        self.turns = []
        self.dropped = []

    def _limit_reason(self) -> str:
        room = f"max_total_tokens {self.max_total_tokens} - max_new_tokens {self.max_new_tokens}"
        if self.max_input_tokens is not None and self.max_input_tokens < (
                self.max_total_tokens - self.max_new_tokens):
            return f"MAX_INPUT_TOKENS {self.max_input_tokens}"
        return room

    def _payload(self, messages: list[Message]) -> dict[str, Any]:
        if self.messages_api:
            return build_payload(messages, container=self.container,
                                 max_new_tokens=self.max_new_tokens, **self.parameters)
        return build_payload(self.prompt_builder(messages), container=self.container,
                             max_new_tokens=self.max_new_tokens, **self.parameters)

    def __repr__(self) -> str:
        return (f"<Conversation {len(self.turns)} messages, {self.dropped_turns} turns "
                f"dropped, limit {self.prompt_limit} prompt tokens, {self.count_tokens!r}>")
