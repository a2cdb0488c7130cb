"""transformers' own rendering of a chat template: the oracle the prompt tests compare with."""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=16)
def _tokenizer(template: str, bos: str, eos: str):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    backend = Tokenizer(WordLevel({"<unk>": 0, bos: 1, eos: 2}, unk_token="<unk>"))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token="<unk>")
    tokenizer.chat_template = template
    return tokenizer


def apply_chat_template(template: str, bos: str, eos: str, messages: list[dict]) -> str:
    """Return ``apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`` of
    a tokenizer with this template and these special tokens."""
    return _tokenizer(template, bos, eos).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
