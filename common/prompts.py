"""Chat prompt builders for Llama 2 (and Llama 3) chat models, plus the Llama 2 reader.

Llama 2 chat models were fine-tuned on one exact text layout -- Meta's ``chat_completion`` in
``llama/generation.py`` (meta-llama/llama). Their Hugging Face containers (TGI, LMI) take the
prompt as plain text, so the layout must be rebuilt by the caller, byte for byte:

* ``B_INST, E_INST = "[INST]", "[/INST]"`` and ``B_SYS, E_SYS = "<<SYS>>\\n", "\\n<</SYS>>\\n\\n"``;
* an optional system message is merged into the first user message as
  ``B_SYS + system + E_SYS + user`` (on the raw contents, before any stripping);
* each finished (user, assistant) pair becomes ``<s>[INST] {user} [/INST] {answer} </s>``
  and the last user turn ``<s>[INST] {user} [/INST]``, each content ``.strip()``-ed;
  the turns are joined with no separator.

``bos=False`` (the default) leaves out only the very first ``<s>``: TGI and LMI tokenize a
text prompt with the tokenizer's special tokens on, which already puts the BOS token first, so
a literal ``<s>`` gives the model two BOS tokens. Later turns keep their ``</s><s>``.

Contents that contain Meta's control tags (``[INST]``, ``[/INST]``, ``<<SYS>>``,
``<</SYS>>``) could forge turns; Meta's own code refuses to answer them, and so do these
builders unless the caller passes ``allow_unsafe=True``.

Any other model: :func:`build_prompt` renders the model's own Hugging Face chat template
(``chat_template.jinja``, or the ``chat_template`` of its ``tokenizer_config.json``) exactly as
transformers' ``apply_chat_template(..., tokenize=False)`` does -- jinja2's
``ImmutableSandboxedEnvironment`` with ``trim_blocks``, ``lstrip_blocks``, the ``loopcontrols``
extension, the ``raise_exception`` and ``strftime_now`` globals and transformers' ``tojson``
filter -- and then leaves out the leading BOS text, which TGI and vLLM add themselves.
``common.prompt_builder_for`` reads a Hub model's template, special tokens and end tokens into
a :class:`PromptBuilder`; it lives in :mod:`common.model_facts`, next to the facts it reads, so
this module needs none of them.

This module imports only the standard library and :mod:`common.errors` (jinja2 when a
template is rendered), so it can be copied into another project on its own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.errors import PayloadError

__all__ = [
    "B_INST",
    "B_SYS",
    "E_INST",
    "E_SYS",
    "LLAMA3_SPECIAL_TOKENS",
    "UNSAFE_TAGS",
    "PromptBuilder",
    "build_llama2_prompt",
    "build_llama3_prompt",
    "build_prompt",
    "parse_llama2_prompt",
]

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
BOS, EOS = "<s>", "</s>"

#: The Llama 2 control tags that must not occur inside a message (Meta's ``SPECIAL_TAGS``).
UNSAFE_TAGS: tuple[str, ...] = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")

#: The Llama 3 header tokens; a text prompt containing one would be tokenized as the token.
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)

_ROLES = ("system", "user", "assistant")
_SHAPE_FIX = (
    'Pass a list of dicts such as [{"role": "system", "content": "..."}, '
    '{"role": "user", "content": "..."}].'
)


def _check_conversation(messages: Any) -> list[dict[str, Any]]:
    """Validate the conversation shape shared by every builder; return it as a list.

    Raises:
        PayloadError: (a ``ValueError``) naming what is wrong and how to fix it.
    """
    if not isinstance(messages, (list, tuple)):
        raise PayloadError(
            f"messages must be a list of messages, got {type(messages).__name__}. {_SHAPE_FIX}"
        )
    if not messages:
        raise PayloadError(
            "messages is empty: a chat prompt needs at least one user message. " + _SHAPE_FIX
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise PayloadError(
                f"messages[{index}] must be a dict with 'role' and 'content' keys, got "
                f"{message!r:.80}. {_SHAPE_FIX}"
            )
        role = message["role"]
        if role not in _ROLES:
            raise PayloadError(
                f"messages[{index}] has the unknown role {role!r}: use 'system', 'user' or "
                "'assistant'."
            )
        if not isinstance(message["content"], str):
            raise PayloadError(
                f"messages[{index}]['content'] must be a string, got "
                f"{type(message['content']).__name__}: convert it with str() or join the "
                "parts into one string."
            )
    system_positions = [i for i, m in enumerate(messages) if m["role"] == "system"]
    if len(system_positions) > 1:
        raise PayloadError(
            f"messages has {len(system_positions)} system messages (at positions "
            f"{system_positions}): Llama chat models take one. Merge them into one system "
            "message at position 0."
        )
    if system_positions and system_positions[0] != 0:
        raise PayloadError(
            f"the system message is at position {system_positions[0]}: it must be the first "
            "message. Move it to position 0."
        )
    turns = messages[1:] if system_positions else messages
    if not turns:
        raise PayloadError(
            "messages holds only a system message: add the user's message after it."
        )
    for offset, message in enumerate(turns):
        expected = "user" if offset % 2 == 0 else "assistant"
        if message["role"] != expected:
            index = offset + (1 if system_positions else 0)
            raise PayloadError(
                f"messages[{index}] has role {message['role']!r} where {expected!r} was "
                "expected: after the optional system message the roles must alternate user, "
                "assistant, user, ... Merge consecutive messages of the same role into one."
            )
    if turns[-1]["role"] != "user":
        raise PayloadError(
            "the last message is the assistant's: the prompt must end with a user message "
            "for the model to answer. Append the next user message (or drop the last "
            "assistant message)."
        )
    return list(messages)


def _check_unsafe(messages: Sequence[dict[str, Any]], tags: Sequence[str]) -> None:
    for index, message in enumerate(messages):
        for tag in tags:
            if tag in message["content"]:
                raise PayloadError(
                    f"messages[{index}]['content'] contains the control tag {tag!r}, which "
                    "would let the text forge conversation turns. Remove it, or pass "
                    "allow_unsafe=True if the text is trusted."
                )


def build_llama2_prompt(
    messages: Sequence[dict[str, Any]], *, bos: bool = False, allow_unsafe: bool = False
) -> str:
    """Render a conversation in Meta's Llama 2 chat layout.

    Args:
        messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` -- an
            optional system message first, then user and assistant messages alternating,
            ending with a user message. Other keys are ignored.
        bos: put the leading ``<s>`` in the text. Leave it ``False`` for TGI and LMI, which
            add the BOS token themselves; later turns always carry ``</s><s>``.
        allow_unsafe: accept contents that contain ``[INST]``, ``[/INST]``, ``<<SYS>>`` or
            ``<</SYS>>`` (see :data:`UNSAFE_TAGS`).

    Returns:
        The prompt text, ending with ``[/INST]``.

    Raises:
        PayloadError: (a ``ValueError``) when ``messages`` is not a list of such dicts, is
            empty, has an unknown role, a misplaced or second system message, roles that do
            not alternate, a last message that is not the user's, non-string content, or --
            unless ``allow_unsafe`` -- a control tag in a content.
    """
    conversation = _check_conversation(messages)
    if not allow_unsafe:
        _check_unsafe(conversation, UNSAFE_TAGS)
    if conversation[0]["role"] == "system":
        first = conversation[1]
        merged = B_SYS + conversation[0]["content"] + E_SYS + first["content"]
        conversation = [{"role": "user", "content": merged}, *conversation[2:]]
    users = conversation[0::2]
    answers = conversation[1::2]
    parts = [
        f"{BOS}{B_INST} {user['content'].strip()} {E_INST} {answer['content'].strip()} {EOS}"
        for user, answer in zip(users, answers, strict=False)
    ]
    parts.append(f"{BOS}{B_INST} {users[-1]['content'].strip()} {E_INST}")
    prompt = "".join(parts)
    return prompt if bos else prompt[len(BOS):]


def build_llama3_prompt(
    messages: Sequence[dict[str, Any]], *, bos: bool = False, allow_unsafe: bool = False
) -> str:
    """Render a conversation in Meta's Llama 3 header layout (``ChatFormat`` in meta-llama/llama3).

    The text is (with ``bos=True`` only) ``<|begin_of_text|>``, then for each message
    ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content.strip()}<|eot_id|>``, then the
    open assistant header ``<|start_header_id|>assistant<|end_header_id|>\\n\\n``.

    Args:
        messages: the same conversation shape as :func:`build_llama2_prompt`.
        bos: put the leading ``<|begin_of_text|>`` in the text. Leave it ``False`` for TGI and
            LMI (vLLM), which add the BOS token themselves when they tokenize a text prompt:
            a literal one would give the model two.
        allow_unsafe: accept contents that contain a Llama 3 special token
            (:data:`LLAMA3_SPECIAL_TOKENS`), which a text-prompt tokenizer would read as the
            token itself.

    Returns:
        The prompt text, ending with the open assistant header.

    Raises:
        PayloadError: (a ``ValueError``) for the same conversation errors as
            :func:`build_llama2_prompt`, and -- unless ``allow_unsafe`` -- a special token
            inside a content.
    """
    conversation = _check_conversation(messages)
    if not allow_unsafe:
        _check_unsafe(conversation, LLAMA3_SPECIAL_TOKENS)

    def header(role: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n"

    body = "".join(
        header(m["role"]) + m["content"].strip() + "<|eot_id|>" for m in conversation
    )
    return ("<|begin_of_text|>" if bos else "") + body + header("assistant")


def _not_a_prompt(reason: str) -> PayloadError:
    return PayloadError(
        f"not a Llama 2 chat prompt: {reason}. Build the prompt with "
        "common.build_llama2_prompt(messages)."
    )


def _read_turn(prompt: str, pos: int) -> tuple[str, int]:
    """Read ``[INST] {user} [/INST]`` at ``pos``; return the user text and the end position."""
    if not prompt.startswith(B_INST, pos):
        raise _not_a_prompt(f"expected {B_INST!r} at character {pos}")
    start = pos + len(B_INST)
    end = prompt.find(E_INST, start)
    if end < 0:
        raise _not_a_prompt(f"the {B_INST!r} at character {pos} has no closing {E_INST!r}")
    inner = prompt[start:end]
    if len(inner) < 2 or not inner.startswith(" ") or not inner.endswith(" "):
        raise _not_a_prompt(f"expected single spaces inside {B_INST} ... {E_INST} at {pos}")
    return inner[1:-1], end + len(E_INST)


def _split_system(first_user: str) -> tuple[str | None, str]:
    """Split ``<<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user}`` into (system, user)."""
    if not first_user.startswith(B_SYS):
        return None, first_user
    close = first_user.find(E_SYS.rstrip("\n"), len(B_SYS))
    if close < 0:
        raise _not_a_prompt("the <<SYS>> block has no closing '\\n<</SYS>>'")
    system = first_user[len(B_SYS):close]
    rest = first_user[close + len(E_SYS.rstrip("\n")):]
    if rest == "":
        return system, ""  # the user content was empty; Meta's strip() ate the "\n\n"
    if not rest.startswith("\n\n"):
        raise _not_a_prompt("expected a blank line after '<</SYS>>'")
    return system, rest[2:]


def parse_llama2_prompt(prompt: str) -> list[dict[str, str]]:
    """Read a Llama 2 chat prompt back into its messages (the inverse of the builder).

    ``parse_llama2_prompt(build_llama2_prompt(m, bos=b)) == m`` for every valid conversation
    whose contents are already stripped and hold no :data:`UNSAFE_TAGS` (the builder strips
    contents, and a prompt built with ``allow_unsafe=True`` may be ambiguous).

    Args:
        prompt: the prompt text, with or without the leading ``<s>``.

    Returns:
        The messages as ``[{"role": ..., "content": ...}, ...]``; a system message comes
        first when the prompt has a ``<<SYS>>`` block.

    Raises:
        PayloadError: (a ``ValueError``) when the text is not in the Llama 2 chat layout.
    """
    if not isinstance(prompt, str):
        raise _not_a_prompt(f"expected a string, got {type(prompt).__name__}")
    pos = len(BOS) if prompt.startswith(BOS) else 0
    messages: list[dict[str, str]] = []
    while True:
        user, pos = _read_turn(prompt, pos)
        messages.append({"role": "user", "content": user})
        if pos == len(prompt):
            break
        next_turn = prompt.find(B_INST, pos)
        if next_turn < 0:
            raise _not_a_prompt(
                f"text after the {E_INST!r} at character {pos} is not an answer followed by "
                "a new turn (the prompt must end with [/INST])"
            )
        between = prompt[pos:next_turn]
        closing = f" {EOS}{BOS}"
        if len(between) < 1 + len(closing) or not between.startswith(" ") or not (
            between.endswith(closing)
        ):
            raise _not_a_prompt(
                f"expected ' {{answer}} </s><s>' between turns at character {pos}"
            )
        messages.append({"role": "assistant", "content": between[1:-len(closing)]})
        pos = next_turn
    system, first_user = _split_system(messages[0]["content"])
    if system is None:
        return messages
    messages[0]["content"] = first_user
    return [{"role": "system", "content": system}, *messages]


# --------------------------------------------------------------------------- any chat template


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # transformers' override: no HTML escaping, and the options templates use.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=32)
def _compile(chat_template: str) -> Any:
    """Compile a chat template in the sandbox transformers uses (cached per template)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment.from_string(chat_template)


def _check_chat_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise PayloadError(
            "messages must be a non-empty list of messages. " + _SHAPE_FIX)
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise PayloadError(
                f"messages[{index}] must be a dict with 'role' and 'content' keys, got "
                f"{message!r:.80}. {_SHAPE_FIX}")
        if not isinstance(message["content"], str):
            raise PayloadError(
                f"messages[{index}]['content'] must be a string, got "
                f"{type(message['content']).__name__}: convert it with str() or join the "
                "parts into one string.")
    return [dict(message) for message in messages]


def build_prompt(
    messages: Sequence[Mapping[str, Any]],
    chat_template: str,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    add_generation_prompt: bool = True,
    strip_bos: bool = True,
    **template_kwargs: Any,
) -> str:
    """Render ``messages`` with a Hugging Face chat template, as transformers renders it.

    The result equals ``tokenizer.apply_chat_template(messages, tokenize=False,
    add_generation_prompt=add_generation_prompt)`` for a tokenizer with this template and
    these special tokens -- minus the leading ``bos_token`` text when ``strip_bos`` is true
    (the default): TGI and vLLM tokenize a text prompt with the special tokens on, so they put
    the BOS token first themselves, and a literal one would give the model two.

    Args:
        messages: ``[{"role": ..., "content": str}, ...]`` (the template decides which roles
            and orders it accepts).
        chat_template: the jinja2 source (``tokenizer_config.json``'s ``chat_template``).
        bos_token, eos_token: the tokenizer's special-token texts the template may use
            (``<s>``/``</s>``, ``<|begin_of_text|>``/``<|eot_id|>``...).
        add_generation_prompt: end with the open assistant turn (what a request needs).
        strip_bos: leave out a leading ``bos_token`` (once). Pass ``False`` for a tokenizer
            that does not add BOS itself.
        **template_kwargs: further variables for the template (e.g. ``date_string``).

    Returns:
        The prompt text.

    Raises:
        PayloadError: (a ``ValueError``) for messages that are not a non-empty list of
            ``{"role", "content": str}`` dicts, and -- with the template's own words -- for
            a conversation the template refuses (``raise_exception``).
        ValueError: for a template that is not valid jinja2, or one that reaches outside the
            sandbox (``__class__``...).
    """
    import jinja2

    conversation = _check_chat_messages(messages)
    if not isinstance(chat_template, str) or not chat_template.strip():
        raise ValueError(
            "chat_template is empty: pass the model's template (tokenizer_config.json's "
            "'chat_template'), or use common.prompt_builder_for(model_id) to read it.")
    try:
        template = _compile(chat_template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"chat_template is not valid jinja2 (line {exc.lineno}): "
                         f"{exc.message}") from exc
    specials = {"bos_token": bos_token, "eos_token": eos_token}
    variables = {key: value for key, value in specials.items() if value is not None}
    variables.update(template_kwargs)
    try:
        text = template.render(messages=conversation, tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.SecurityError as exc:
        raise ValueError(f"the chat template tried something the sandbox forbids ({exc}): it "
                         "is not a template to trust; use the model's published one.") from exc
    except jinja2.TemplateError as exc:
        raise PayloadError(
            f"the model's chat template refused the conversation: {exc}. Fix the messages "
            "(most Llama templates want an optional system message first, then user and "
            "assistant alternating, ending with the user).") from exc
    if strip_bos and bos_token and text.startswith(bos_token):
        text = text[len(bos_token):]
    return text


@dataclass(frozen=True)
class PromptBuilder:
    """A model's prompt recipe: call it with messages to get the text prompt to send.

    Attributes:
        model_id: the Hugging Face model id the template came from.
        chat_template: the jinja2 chat template.
        bos_token / eos_token: the tokenizer's BOS and EOS texts.
        stop_tokens: every text that ends an answer (``generation_config.json``'s EOS ids and
            the tokenizer's EOS, e.g. ``("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")``);
            pass them to ``common.iter_tokens(..., stop_tokens=...)``.
        adds_bos: whether the model's tokenizer puts BOS first itself (then the BOS text is
            left out of the prompt).
        template_kwargs: extra template variables passed on every call.
    """

    model_id: str
    chat_template: str
    bos_token: str | None = None
    eos_token: str | None = None
    stop_tokens: tuple[str, ...] = ()
    adds_bos: bool = True
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, messages: Sequence[Mapping[str, Any]], *,
                 add_generation_prompt: bool = True) -> str:
        """Return the prompt for ``messages`` (see :func:`build_prompt`).

        Raises:
            PayloadError: as :func:`build_prompt`.
        """
        return build_prompt(messages, self.chat_template, bos_token=self.bos_token,
                            eos_token=self.eos_token,
                            add_generation_prompt=add_generation_prompt,
                            strip_bos=self.adds_bos, **dict(self.template_kwargs))
