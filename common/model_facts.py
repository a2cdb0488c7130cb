"""What a Hub model says about itself: architecture, weights, special tokens, chat template.

:func:`read_model_facts` downloads four small files with ``huggingface_hub.hf_hub_download``
(with the user's ``HF_TOKEN`` for gated repositories) and reads them into a
:class:`ModelFacts`:

* ``config.json`` -- layers, attention and KV heads, head dim, hidden and intermediate size,
  positions, vocabulary, dtype;
* ``tokenizer_config.json`` -- the chat template, the BOS/EOS texts and the id -> text map of
  the special tokens (``added_tokens_decoder``);
* ``generation_config.json`` -- the EOS ids that end an answer (Llama 3.x lists several);
* ``model.safetensors.index.json`` -- ``metadata.total_size``, the weights' bytes. A model
  stored in one ``model.safetensors`` has no index (Llama 3.2 1B): then the weights are
  counted from ``config.json`` (exact for the Llama architecture) and :attr:`ModelFacts.
  weights_source` says so.

Every failure raises :class:`~common.errors.ModelFactsError` naming the file, the reason and
the ``python -m common.notebooks new`` flag that supplies the fact by hand. Nothing falls back
to Llama 2 silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ModelFactsError

__all__ = [
    "FACT_FILES",
    "LICENCES",
    "ModelFacts",
    "count_weight_bytes",
    "model_facts_from_files",
    "model_family",
    "read_model_facts",
]

FACT_FILES = ("config.json", "tokenizer_config.json", "generation_config.json",
              "model.safetensors.index.json")
"""The files :func:`read_model_facts` reads, in order."""

# What supplies each file's facts by hand (python -m common.notebooks new ...).
_FLAGS = {
    "config.json": "--instance-type with --max-total-tokens and --params-billion",
    "tokenizer_config.json": "--prompt-format llama2|llama3",
    "generation_config.json": "--prompt-format llama2|llama3",
    "model.safetensors.index.json": "--params-billion",
}
_MANUAL = ("or give --prompt-format, --params-billion, --instance-type and --max-total-tokens "
           "together to write the pair without the Hub")

_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "fp16": 2, "bf16": 2}

#: Licence page per model family (the licence each model card links to).
LICENCES: dict[str, tuple[str, str]] = {
    "Llama 2": ("Llama 2 Community License",
                "https://ai.meta.com/llama/license/"),
    "Code Llama": ("Llama 2 Community License (Code Llama is released under it)",
                   "https://ai.meta.com/llama/license/"),
    "Llama 3": ("Meta Llama 3 Community License",
                "https://llama.meta.com/llama3/license/"),
    "Llama 3.1": ("Llama 3.1 Community License",
                  "https://llama.meta.com/llama3_1/license/"),
    "Llama 3.2": ("Llama 3.2 Community License",
                  "https://llama.meta.com/llama3_2/license/"),
    "Llama 3.3": ("Llama 3.3 Community License",
                  "https://llama.meta.com/llama3_3/license/"),
}

_FAMILIES = (  # (pattern on the repo name, family), most specific first
    (re.compile(r"codellama", re.I), "Code Llama"),
    (re.compile(r"llama-?3\.3", re.I), "Llama 3.3"),
    (re.compile(r"llama-?3\.2", re.I), "Llama 3.2"),
    (re.compile(r"llama-?3\.1", re.I), "Llama 3.1"),
    (re.compile(r"llama-?3", re.I), "Llama 3"),
    (re.compile(r"llama-?2", re.I), "Llama 2"),
)


def model_family(model_id: str) -> str | None:
    """Return the Llama family a model id names (``"Llama 3.1"``, ``"Code Llama"``...), or
    ``None`` when it names none."""
    name = str(model_id).rsplit("/", 1)[-1]
    return next((family for pattern, family in _FAMILIES if pattern.search(name)), None)


@dataclass(frozen=True)
class ModelFacts:
    """The facts of one model that sizing and prompting need.

    Attributes:
        model_id: the Hugging Face model id.
        num_layers / num_attention_heads / num_kv_heads / head_dim / hidden_size /
        intermediate_size / max_position_embeddings / vocab_size: from ``config.json``.
        dtype: the checkpoint's ``torch_dtype`` (``bfloat16``, ``float16``).
        weight_bytes: the weights' bytes in 16-bit precision.
        weights_source: where :attr:`weight_bytes` came from.
        bos_token / eos_token: the tokenizer's BOS and EOS texts.
        end_tokens: every token text that ends an answer (generation config EOS ids, then the
            tokenizer's EOS), no duplicates.
        chat_template: the tokenizer's chat template, or ``None``.
        adds_bos: whether the tokenizer puts BOS first itself.
    """

    model_id: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int
    dtype: str
    weight_bytes: int
    weights_source: str
    bos_token: str | None
    eos_token: str | None
    end_tokens: tuple[str, ...]
    chat_template: str | None
    adds_bos: bool = True

    @property
    def params_billion(self) -> float:
        """Parameters in billions (16-bit weight bytes / 2)."""
        return self.weight_bytes / 2 / 1e9

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes per token in fp16/bf16: 2 (K and V) x layers x KV heads x head dim
        x 2 bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 2

    @property
    def family(self) -> str | None:
        """The Llama family (``"Llama 3.1"``...), from the model id."""
        return model_family(self.model_id)

    def prompt_builder(self) -> Any:
        """Return a :class:`common.prompts.PromptBuilder` for this model.

        Raises:
            ModelFactsError: the tokenizer has no chat template.
        """
        from common.prompts import PromptBuilder

        if not self.chat_template:
            raise ModelFactsError(
                f"{self.model_id}: tokenizer_config.json has no chat_template, so the prompt "
                "layout is unknown. Pass --prompt-format llama2|llama3 to `python -m "
                "common.notebooks new`, or call common.build_prompt(messages, chat_template=...) "
                "with a template.", model_id=self.model_id, filename="tokenizer_config.json",
                reason="no chat_template", flag=_FLAGS["tokenizer_config.json"])
        return PromptBuilder(model_id=self.model_id, chat_template=self.chat_template,
                             bos_token=self.bos_token, eos_token=self.eos_token,
                             stop_tokens=self.end_tokens, adds_bos=self.adds_bos)


# --------------------------------------------------------------------------- parsing


def _token_text(value: Any) -> str | None:
    if isinstance(value, Mapping):  # {"content": "<s>", "__type": "AddedToken", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _missing(model_id: str, filename: str, what: str) -> ModelFactsError:
    flag = _FLAGS[filename]
    return ModelFactsError(
        f"{model_id}: {filename} has no {what}, which the recipe needs. Supply it by hand "
        f"with {flag} ({_MANUAL}).", model_id=model_id, filename=filename,
        reason=f"no {what}", flag=flag)


def _int(config: Mapping[str, Any], key: str, model_id: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _missing(model_id, "config.json", f"positive integer {key!r}")
    return value


def count_weight_bytes(config: Mapping[str, Any]) -> int:
    """Return the 16-bit weights' bytes of a Llama-architecture ``config.json``: embeddings
    (and an untied LM head), per layer q/k/v/o, the gated MLP and two norms, and the final
    norm, at 2 bytes each.

    Raises:
        ModelFactsError: a size the count needs is missing.
    """
    model_id = str(config.get("_name_or_path") or "the model")
    layers = _int(config, "num_hidden_layers", model_id)
    heads = _int(config, "num_attention_heads", model_id)
    hidden = _int(config, "hidden_size", model_id)
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    intermediate = _int(config, "intermediate_size", model_id)
    vocab = _int(config, "vocab_size", model_id)
    attention = 2 * hidden * head_dim * (heads + kv_heads)  # q, o + k, v
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return 2 * (layers * per_layer + embeddings + hidden)


def model_facts_from_files(
    model_id: str,
    config: Mapping[str, Any],
    tokenizer_config: Mapping[str, Any],
    generation_config: Mapping[str, Any] | None,
    index: Mapping[str, Any] | None,
) -> ModelFacts:
    """Build :class:`ModelFacts` from the four files' parsed JSON (``None`` for a file the
    repository does not have).

    Raises:
        ModelFactsError: a fact the recipe needs is missing or malformed.
    """
    layers = _int(config, "num_hidden_layers", model_id)
    heads = _int(config, "num_attention_heads", model_id)
    kv_heads = config.get("num_key_value_heads") or heads
    hidden = _int(config, "hidden_size", model_id)
    head_dim = config.get("head_dim") or hidden // heads
    intermediate = _int(config, "intermediate_size", model_id)
    positions = _int(config, "max_position_embeddings", model_id)
    vocab = _int(config, "vocab_size", model_id)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float16")
    if dtype not in _DTYPE_BYTES:
        raise _missing(model_id, "config.json", f"16- or 32-bit float torch_dtype (got {dtype!r})")
    if index is not None:
        total = (index.get("metadata") or {}).get("total_size")
        if not isinstance(total, int) or total <= 0:
            raise _missing(model_id, "model.safetensors.index.json", "metadata.total_size")
        weight_bytes = total * 2 // _DTYPE_BYTES[dtype]
        source = "model.safetensors.index.json metadata.total_size"
    else:
        weight_bytes = count_weight_bytes({**config, "_name_or_path": model_id})
        source = "counted from config.json (the repository has no model.safetensors.index.json)"
    decoder = tokenizer_config.get("added_tokens_decoder") or {}
    id_to_text = {int(key): _token_text(value) for key, value in decoder.items()
                  if str(key).isdigit()}
    bos = _token_text(tokenizer_config.get("bos_token"))
    eos = _token_text(tokenizer_config.get("eos_token"))
    end_ids: list[int] = []
    for source_ids in ((generation_config or {}).get("eos_token_id"), config.get("eos_token_id")):
        if source_ids is not None:
            ids = source_ids if isinstance(source_ids, list) else [source_ids]
            end_ids.extend(i for i in ids if isinstance(i, int))
            break
    ends: list[str] = []
    for token_id in end_ids:
        text = id_to_text.get(token_id)
        if text is None:
            raise _missing(model_id, "tokenizer_config.json",
                           f"added_tokens_decoder entry for the end token id {token_id}")
        if text not in ends:
            ends.append(text)
    if eos and eos not in ends:
        ends.append(eos)
    if not ends:
        raise _missing(model_id, "generation_config.json", "eos_token_id")
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default")
    return ModelFacts(
        model_id=model_id, num_layers=layers, num_attention_heads=heads,
        num_kv_heads=int(kv_heads), head_dim=int(head_dim), hidden_size=hidden,
        intermediate_size=intermediate, max_position_embeddings=positions, vocab_size=vocab,
        dtype=dtype, weight_bytes=int(weight_bytes), weights_source=source,
        bos_token=bos, eos_token=eos, end_tokens=tuple(ends),
        chat_template=template if isinstance(template, str) and template.strip() else None,
        adds_bos=bool(tokenizer_config.get("add_bos_token", True)),
    )


# --------------------------------------------------------------------------- the Hub


def _download_error(model_id: str, filename: str, exc: Exception, token: str | None
                    ) -> ModelFactsError:
    from huggingface_hub import errors

    flag = _FLAGS[filename]
    if isinstance(exc, errors.GatedRepoError):
        reason = "gated repository: access refused"
        why = (f"{model_id} is gated and the Hub refused this token"
               if token else f"{model_id} is gated and no Hugging Face token was given")
        fix = ("accept the licence on https://huggingface.co/" + model_id + " with the account "
               "whose read token you use, and export it as HF_TOKEN")
    elif isinstance(exc, errors.RevisionNotFoundError):
        reason, why = "unknown revision", f"the revision asked for does not exist in {model_id}"
        fix = "check the revision (branch, tag or commit)"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        reason = "unknown model id"
        why = (f"the Hub has no model {model_id!r} (or it is private and "
               + ("this token cannot see it)" if token else "no token was given)"))
        fix = "check the spelling (owner/name, as on huggingface.co), and export HF_TOKEN"
    elif isinstance(exc, errors.LocalEntryNotFoundError):
        reason = "offline and not cached"
        why = ("the Hub cannot be reached (no network, or HF_HUB_OFFLINE=1) and the file is "
               "not in the local cache")
        fix = "connect to the internet (or unset HF_HUB_OFFLINE), or download it once"
    elif isinstance(exc, errors.EntryNotFoundError):
        reason = "missing file"
        why = f"the repository {model_id} has no {filename}"
        fix = "check that the id names a Transformers-format model (the '-hf' repositories)"
    elif isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"HTTP {status}" if status else "Hub error"
        why = f"the Hub answered with an error: {exc}"
        fix = ("check HF_TOKEN (a read token)" if status in (401, 403)
               else "retry, or check https://status.huggingface.co")
    else:
        reason, why, fix = "cannot read", f"{type(exc).__name__}: {exc}", "retry"
    return ModelFactsError(
        f"Cannot read {filename} of {model_id}: {why}. Fix: {fix}; or supply the fact by hand "
        f"with {flag} ({_MANUAL}).",
        model_id=model_id, filename=filename, reason=reason, flag=flag)


def _read_json(model_id: str, filename: str, *, token: str | None, revision: str | None,
               optional: bool) -> dict[str, Any] | None:
    from huggingface_hub import errors, hf_hub_download

    try:
        path = hf_hub_download(model_id, filename, token=token, revision=revision)
    except (errors.LocalEntryNotFoundError, errors.GatedRepoError,
            errors.RepositoryNotFoundError):
        raise
    except errors.EntryNotFoundError:
        if optional:
            return None
        raise
    with open(path, encoding="utf-8") as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ModelFactsError(
                f"Cannot read {filename} of {model_id}: it is not valid JSON ({exc}). Supply the "
                f"fact by hand with {_FLAGS[filename]} ({_MANUAL}).", model_id=model_id,
                filename=filename, reason="not valid JSON", flag=_FLAGS[filename]) from exc
    if not isinstance(document, dict):
        raise _missing(model_id, filename, "JSON object")
    return document


def read_model_facts(model_id: str, *, token: str | None = None,
                     revision: str | None = None) -> ModelFacts:
    """Read a model's facts from the Hugging Face Hub (or its local cache when offline).

    Args:
        model_id: ``owner/name``.
        token: a Hugging Face read token; ``None`` uses ``HF_TOKEN`` / the saved login.
        revision: a branch, tag or commit (default: ``main``).

    Returns:
        The :class:`ModelFacts`.

    Raises:
        ModelFactsError: a file cannot be read -- offline and not cached, no token or a
            licence not accepted for a gated repository, an unknown id or revision, a missing
            ``config.json`` / ``tokenizer_config.json`` -- or lacks a fact. The message names
            the file, the reason and the ``new`` flag that supplies the fact by hand.
    """
    from huggingface_hub import errors

    if not isinstance(model_id, str) or not re.fullmatch(r"[\w.-]+/[\w.-]+", model_id):
        raise ModelFactsError(
            f"model id {model_id!r} is not 'owner/name' (e.g. meta-llama/Llama-3.1-8B-Instruct)."
            " Copy it from the model's page on huggingface.co.", model_id=str(model_id),
            reason="not owner/name")
    documents: dict[str, dict[str, Any] | None] = {}
    for filename in FACT_FILES:
        optional = filename in ("generation_config.json", "model.safetensors.index.json")
        try:
            documents[filename] = _read_json(model_id, filename, token=token, revision=revision,
                                             optional=optional)
        except ModelFactsError:
            raise
        except (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.EntryNotFoundError,
                OSError, ValueError) as exc:
            raise _download_error(model_id, filename, exc, token) from exc
    return model_facts_from_files(
        model_id, documents["config.json"] or {}, documents["tokenizer_config.json"] or {},
        documents["generation_config.json"], documents["model.safetensors.index.json"])
