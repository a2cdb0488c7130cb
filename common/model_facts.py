"""What a Hub model says about itself: architecture, weights, special tokens, chat template,
recommended sampling -- read the way transformers reads it.

:func:`read_model_facts` downloads a few small files with ``huggingface_hub.hf_hub_download``
(with the user's ``HF_TOKEN`` for gated repositories) and reads them into a
:class:`ModelFacts`:

* ``config.json`` -- layers, attention and KV heads, head dim, hidden and intermediate size,
  positions, vocabulary, dtype, ``model_type`` and ``architectures``. A multimodal model
  (Llama 4, Llama 3.2 Vision) nests the language model's sizes under ``text_config``, with a
  ``vision_config`` beside it: the sizes come from ``text_config`` then, as transformers'
  ``get_text_config()`` does. A Llama 4 mixture of experts adds ``num_local_experts``;
* the chat template, from the first of ``chat_template.jinja`` (what transformers >= 4.47
  saves), ``chat_template.json`` (a processor's template) and ``tokenizer_config.json``'s
  ``chat_template`` (a string, or a list of named templates: ``default``);
* ``tokenizer_config.json`` -- the BOS/EOS texts and the id -> text map of the special tokens
  (``added_tokens_decoder``; transformers 5 no longer saves it there, so an end token id it
  lacks is looked up in ``tokenizer.json``'s ``added_tokens``, downloaded only then);
* ``generation_config.json`` -- the EOS ids that end an answer (Llama 3.x lists several) and the
  ``temperature`` / ``top_p`` the model's authors recommend;
* ``model.safetensors.index.json`` -- ``metadata.total_size``, the weights' bytes: every
  expert of a mixture of experts, and a vision tower, count. A model stored in one
  ``model.safetensors`` has no index (Llama 3.2 1B): then the weights are counted from
  ``config.json`` (exact for the Llama and Llama 4 text architectures) and
  :attr:`ModelFacts.weights_source` says so.

Files other than ``config.json`` and ``tokenizer_config.json`` are optional: a repository
without one is read as transformers reads it (the file is simply absent). Every failure raises
:class:`~common.errors.ModelFactsError` naming the file, the reason and the ``python -m
common.notebooks new`` flag that supplies the fact by hand. Nothing falls back to Llama 2
silently.

:func:`prompt_builder_for` -- the public ``common.prompt_builder_for`` -- lives here, next to the
facts it reads, so that :mod:`common.prompts` (the copyable client core) imports nothing from
this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import ModelFactsError
from common.prompts import PromptBuilder

__all__ = [
    "FACT_FILES",
    "LICENCES",
    "MODEL_ID_PATTERN",
    "TEMPLATE_FILES",
    "ModelFacts",
    "active_weight_bytes",
    "chat_template_from_files",
    "chat_templates_by_file",
    "count_weight_bytes",
    "language_config",
    "model_facts_from_documents",
    "model_facts_from_files",
    "model_family",
    "parse_fact_file",
    "prompt_builder_for",
    "read_model_facts",
]

FACT_FILES = ("config.json", "tokenizer_config.json", "generation_config.json",
              "model.safetensors.index.json", "chat_template.jinja", "chat_template.json")
"""The files :func:`read_model_facts` reads, in order."""

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
"""Where a chat template may be, in the order it is looked for (the first one found wins)."""

MODEL_ID_PATTERN = re.compile(r"[\w.-]+/[\w.-]+")
"""What a Hugging Face model id looks like (``owner/name``); match it with ``fullmatch``."""

_REQUIRED = ("config.json", "tokenizer_config.json")

# What supplies each file's facts by hand (python -m common.notebooks new ...).
_FLAGS = {
    "config.json": "--instance-type with --max-total-tokens and --params-billion",
    "tokenizer.json": "--prompt-format llama2|llama3",
    "tokenizer_config.json": "--prompt-format llama2|llama3",
    "generation_config.json": "--prompt-format llama2|llama3",
    "model.safetensors.index.json": "--params-billion",
    "chat_template.jinja": "--prompt-format llama2|llama3",
    "chat_template.json": "--prompt-format llama2|llama3",
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
    "Llama 4": ("Llama 4 Community License",
                "https://www.llama.com/llama4/license/"),
}

_FAMILIES = (  # (pattern on the repo name, family), most specific first
    (re.compile(r"codellama", re.I), "Code Llama"),
    (re.compile(r"llama-?4", re.I), "Llama 4"),
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
        intermediate_size / max_position_embeddings / vocab_size: the language model's, from
            ``config.json`` (its ``text_config`` for a multimodal model).
        dtype: the checkpoint's ``torch_dtype`` (``bfloat16``, ``float16``).
        weight_bytes: the weights' bytes in 16-bit precision -- all of them: every expert of
            a mixture of experts, and a vision tower.
        weights_source: where :attr:`weight_bytes` came from.
        bos_token / eos_token: the tokenizer's BOS and EOS texts.
        end_tokens: every token text that ends an answer (generation config EOS ids, then the
            tokenizer's EOS), no duplicates.
        chat_template: the chat template, or ``None``.
        adds_bos: whether the tokenizer puts BOS first itself.
        model_type / architectures: ``config.json``'s (what the containers look a model up by).
        multimodal: the configuration has a ``vision_config`` (served here for text only).
        num_experts / experts_per_token: a mixture of experts' experts per MoE layer and
            experts each token uses (``None`` for a dense model).
        active_weight_bytes: the 16-bit bytes of the parameters one token uses (an MoE model;
            ``None`` for a dense model, where it is :attr:`weight_bytes`).
        template_files: every file that holds a chat template, in :data:`TEMPLATE_FILES`
            order (a server that reads only some of them may see another one, or none: TGI
            3.3.6 never reads ``chat_template.jinja``); the first is :attr:`template_source`,
            the file the chat template came from.
        sampling: the ``temperature`` / ``top_p`` that ``generation_config.json`` recommends
            (empty when it recommends none, or says ``do_sample: false``).
        revision: the branch, tag or commit the files were read at (``None``: the default
            branch).
        special_tokens_by_id: the special tokens' texts by id: ``added_tokens_decoder``,
            then ``tokenizer.json``'s ``added_tokens`` for ids it lacks when that file was
            read (what :attr:`end_tokens` were looked up in).
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
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    multimodal: bool = False
    num_experts: int | None = None
    experts_per_token: int | None = None
    active_weight_bytes: int | None = None
    template_files: tuple[str, ...] = ()
    sampling: Mapping[str, float] = field(default_factory=dict)
    revision: str | None = None
    special_tokens_by_id: Mapping[int, str] = field(default_factory=dict, repr=False,
                                                    compare=False)

    @property
    def params_billion(self) -> float:
        """Parameters in billions (16-bit weight bytes / 2): all of them."""
        return self.weight_bytes / 2 / 1e9

    @property
    def active_params_billion(self) -> float:
        """Parameters one token uses, in billions (:attr:`params_billion` for a dense model)."""
        return (self.active_weight_bytes or self.weight_bytes) / 2 / 1e9

    @property
    def is_moe(self) -> bool:
        """Whether the model is a mixture of experts."""
        return bool(self.num_experts)

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes per token in fp16/bf16: 2 (K and V) x layers x KV heads x head dim
        x 2 bytes (the language model's layers and KV heads; experts add none)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 2

    @property
    def template_source(self) -> str | None:
        """The file :attr:`chat_template` came from (the first of :attr:`template_files`;
        ``None`` without a template)."""
        return self.template_files[0] if self.template_files else None

    @property
    def family(self) -> str | None:
        """The Llama family (``"Llama 3.1"``...), from the model id."""
        return model_family(self.model_id)

    def prompt_builder(self) -> PromptBuilder:
        """Return a :class:`common.prompts.PromptBuilder` for this model.

        Raises:
            ModelFactsError: the model has no chat template.
        """
        if not self.chat_template:
            raise ModelFactsError(
                f"{self.model_id}: none of {', '.join(TEMPLATE_FILES)} holds a chat template, "
                "so the prompt layout is unknown. Pass --prompt-format llama2|llama3 to "
                "`python -m common.notebooks new`, or call common.build_prompt(messages, "
                "chat_template=...) with a template.", model_id=self.model_id,
                filename="tokenizer_config.json", reason="no chat_template",
                flag=_FLAGS["tokenizer_config.json"])
        return PromptBuilder(model_id=self.model_id, chat_template=self.chat_template,
                             bos_token=self.bos_token, eos_token=self.eos_token,
                             stop_tokens=self.end_tokens, adds_bos=self.adds_bos)


# --------------------------------------------------------------------------- parsing


def _token_text(value: Any) -> str | None:
    if isinstance(value, Mapping):  # {"content": "<s>", "__type": "AddedToken", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _special_tokens(tokenizer_config: Mapping[str, Any],
                    tokenizer_json: Mapping[str, Any] | None) -> dict[int, str | None]:
    """id -> text of the special tokens (``None``: an entry without a text):
    ``added_tokens_decoder``, then ``tokenizer.json``'s ``added_tokens`` for ids it lacks."""
    decoder = tokenizer_config.get("added_tokens_decoder") or {}
    id_to_text = {int(key): _token_text(value) for key, value in decoder.items()
                  if str(key).isdigit()}
    for added in (tokenizer_json or {}).get("added_tokens") or ():
        if isinstance(added, Mapping) and isinstance(added.get("id"), int):
            id_to_text.setdefault(added["id"], _token_text(added.get("content")))
    return id_to_text


def _missing(model_id: str, filename: str, what: str) -> ModelFactsError:
    flag = _FLAGS[filename]
    return ModelFactsError(
        f"{model_id}: {filename} has no {what}, which the recipe needs. Supply it by hand "
        f"with {flag} ({_MANUAL}).", model_id=model_id, filename=filename,
        reason=f"no {what}", flag=flag)


def _int(config: Mapping[str, Any], key: str, model_id: str, where: str = "") -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _missing(model_id, "config.json", f"positive integer {where}{key!r}")
    return value


def language_config(config: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """Return the language model's part of ``config.json`` and where it is: the
    ``text_config`` of a multimodal (or Llama 4) configuration, else the whole file -- what
    transformers' ``PretrainedConfig.get_text_config()`` returns.

    Returns:
        ``(sizes, prefix)``; ``prefix`` is ``"text_config."`` or ``""`` (for messages).
    """
    text = config.get("text_config")
    if isinstance(text, Mapping):
        return text, "text_config."
    return config, ""


def _moe_shape(text: Mapping[str, Any], model_id: str, where: str
               ) -> tuple[int, int, int, int, int] | None:
    """(experts, experts per token, MoE layers, expert MLP size, dense MLP size) of a Llama 4
    mixture of experts, or ``None`` for a dense model."""
    experts = text.get("num_local_experts")
    if not experts:
        return None
    layers = _int(text, "num_hidden_layers", model_id, where)
    step = text.get("interleave_moe_layer_step") or 1
    moe_layers = text.get("moe_layers")
    count = (len(moe_layers) if isinstance(moe_layers, list)
             else len(range(step - 1, layers, step)))
    inter = _int(text, "intermediate_size", model_id, where)
    dense = text.get("intermediate_size_mlp") or inter
    per_token = text.get("num_experts_per_tok") or 1
    return int(experts), int(per_token), count, inter, int(dense)


def count_weight_bytes(config: Mapping[str, Any]) -> int:
    """Return the 16-bit weights' bytes of a Llama-architecture ``config.json`` (or Llama 4's
    text model): embeddings (and an untied LM head), per layer q/k/v/o, the MLP (a Llama 4
    MoE layer: every expert's gated MLP, the shared expert and the router) and two norms, and
    the final norm, at 2 bytes each.

    Raises:
        ModelFactsError: a size the count needs is missing, or the configuration has a vision
            tower (whose weights only the safetensors index can tell).
    """
    model_id = str(config.get("_name_or_path") or "the model")
    if isinstance(config.get("vision_config"), Mapping):
        raise ModelFactsError(
            f"{model_id}: config.json describes a multimodal model (a vision_config), whose "
            "weights cannot be counted from the configuration: the repository's "
            "model.safetensors.index.json (metadata.total_size) says how big they are. Supply "
            f"the size by hand with --params-billion ({_MANUAL}).", model_id=model_id,
            filename="model.safetensors.index.json", reason="multimodal, no index",
            flag=_FLAGS["model.safetensors.index.json"])
    return 2 * _language_model_parameters(config, model_id)


def _language_model_parameters(config: Mapping[str, Any], model_id: str) -> int:
    text, where = language_config(config)
    layers = _int(text, "num_hidden_layers", model_id, where)
    heads = _int(text, "num_attention_heads", model_id, where)
    hidden = _int(text, "hidden_size", model_id, where)
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or hidden // heads
    intermediate = _int(text, "intermediate_size", model_id, where)
    vocab = _int(text, "vocab_size", model_id, where)
    attention = 2 * hidden * head_dim * (heads + kv_heads)  # q, o + k, v
    per_layer = attention + 2 * hidden
    moe = _moe_shape(text, model_id, where)
    if moe is None:
        mlps = layers * 3 * hidden * intermediate
    else:
        experts, _, moe_layers, expert_size, dense_size = moe
        moe_mlp = (experts + 1) * 3 * hidden * expert_size + hidden * experts
        mlps = moe_layers * moe_mlp + (layers - moe_layers) * 3 * hidden * dense_size
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings"))
    embeddings = vocab * hidden * (1 if tied else 2)
    return layers * per_layer + mlps + embeddings + hidden


def active_weight_bytes(config: Mapping[str, Any]) -> int | None:
    """Return the 16-bit bytes of the language model's parameters one token uses in a
    mixture of experts -- every weight but the experts it does not use in each MoE layer (and
    no vision tower) -- or ``None`` for a dense model. (Llama 4 Scout: about 17B, the "17B"
    in its id, of 109B in all.)

    Raises:
        ModelFactsError: a size the count needs is missing.
    """
    model_id = str(config.get("_name_or_path") or "the model")
    text, where = language_config(config)
    moe = _moe_shape(text, model_id, where)
    if moe is None:
        return None
    experts, per_token, moe_layers, expert_size, _ = moe
    hidden = _int(text, "hidden_size", model_id, where)
    unused = moe_layers * (experts - per_token) * 3 * hidden * expert_size
    return 2 * (_language_model_parameters(config, model_id) - unused)


def _named_template(value: Any) -> str | None:
    """A template value as transformers stores it: a string, or a list of ``{"name",
    "template"}`` of which ``default`` is the one ``apply_chat_template`` uses."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
        value = named.get("default")
    return value if isinstance(value, str) and value.strip() else None


def chat_templates_by_file(
    tokenizer_config: Mapping[str, Any] | None,
    chat_template_jinja: str | None = None,
    chat_template_json: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Return ``{file: chat template}`` for every file that holds one, in
    :data:`TEMPLATE_FILES` order: ``chat_template.jinja``'s text (when not blank), a
    processor's ``chat_template.json`` and ``tokenizer_config.json``'s ``chat_template``
    (named ``default`` when it is a list); empty when none has one."""
    jinja = (chat_template_jinja if isinstance(chat_template_jinja, str)
             and chat_template_jinja.strip() else None)
    found = {"chat_template.jinja": jinja,
             "chat_template.json": _named_template(
                 (chat_template_json or {}).get("chat_template")),
             "tokenizer_config.json": _named_template(
                 (tokenizer_config or {}).get("chat_template"))}
    return {name: found[name] for name in TEMPLATE_FILES if found[name] is not None}


def chat_template_from_files(
    tokenizer_config: Mapping[str, Any] | None,
    chat_template_jinja: str | None = None,
    chat_template_json: Mapping[str, Any] | None = None,
) -> tuple[str | None, str | None]:
    """Return ``(template, the file it came from)``: the first of
    :func:`chat_templates_by_file` -- ``chat_template.jinja`` first (transformers gives a
    separate template file priority over ``tokenizer_config.json``), then a processor's
    ``chat_template.json``, then ``tokenizer_config.json``'s ``chat_template``; ``(None,
    None)`` when none has one."""
    found = chat_templates_by_file(tokenizer_config, chat_template_jinja, chat_template_json)
    return next(((template, name) for name, template in found.items()), (None, None))


def _sampling(generation_config: Mapping[str, Any] | None) -> dict[str, float]:
    if not generation_config or generation_config.get("do_sample") is False:
        return {}
    return {name: float(value) for name in ("temperature", "top_p")
            if isinstance(value := generation_config.get(name), (int, float))
            and not isinstance(value, bool) and value > 0}


def model_facts_from_files(
    model_id: str,
    config: Mapping[str, Any],
    tokenizer_config: Mapping[str, Any],
    generation_config: Mapping[str, Any] | None,
    index: Mapping[str, Any] | None,
    *,
    chat_template_jinja: str | None = None,
    chat_template_json: Mapping[str, Any] | None = None,
    tokenizer_json: Mapping[str, Any] | None = None,
    revision: str | None = None,
    read_file: Callable[[str], Any] | None = None,
) -> ModelFacts:
    """Build :class:`ModelFacts` from the files' parsed JSON (``None`` for a file the
    repository does not have; ``chat_template_jinja`` is the file's text; ``tokenizer_json``
    is needed only when ``added_tokens_decoder`` lacks an end token id). Without
    ``tokenizer_json``, ``read_file("tokenizer.json")`` (the parsed file, or ``None`` when the
    repository lacks it) is called in that case only.

    Raises:
        ModelFactsError: a fact the recipe needs is missing or malformed (or what
            ``read_file`` raises).
    """
    text, where = language_config(config)
    layers = _int(text, "num_hidden_layers", model_id, where)
    heads = _int(text, "num_attention_heads", model_id, where)
    kv_heads = text.get("num_key_value_heads") or heads
    hidden = _int(text, "hidden_size", model_id, where)
    head_dim = text.get("head_dim") or hidden // heads
    intermediate = _int(text, "intermediate_size", model_id, where)
    positions = _int(text, "max_position_embeddings", model_id, where)
    vocab = _int(text, "vocab_size", model_id, where)
    dtype = str(text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype")
                or config.get("dtype") or "float16")
    if dtype not in _DTYPE_BYTES:
        raise _missing(model_id, "config.json", f"16- or 32-bit float torch_dtype (got {dtype!r})")
    named = {**config, "_name_or_path": model_id}
    if index is not None:
        total = (index.get("metadata") or {}).get("total_size")
        if not isinstance(total, int) or total <= 0:
            raise _missing(model_id, "model.safetensors.index.json", "metadata.total_size")
        weight_bytes = total * 2 // _DTYPE_BYTES[dtype]
        source = "model.safetensors.index.json metadata.total_size"
    else:
        weight_bytes = count_weight_bytes(named)
        source = "counted from config.json (the repository has no model.safetensors.index.json)"
    id_to_text = _special_tokens(tokenizer_config, tokenizer_json)
    bos = _token_text(tokenizer_config.get("bos_token"))
    eos = _token_text(tokenizer_config.get("eos_token"))
    end_ids: list[int] = []
    for source_ids in ((generation_config or {}).get("eos_token_id"), text.get("eos_token_id"),
                       config.get("eos_token_id")):
        if source_ids is not None:
            ids = source_ids if isinstance(source_ids, list) else [source_ids]
            end_ids.extend(i for i in ids if isinstance(i, int))
            break
    if (tokenizer_json is None and read_file is not None
            and any(id_to_text.get(i) is None for i in end_ids)):
        tokenizer_json = read_file("tokenizer.json")  # transformers 5 keeps them there only
        id_to_text = _special_tokens(tokenizer_config, tokenizer_json)
    ends: list[str] = []
    for token_id in end_ids:
        token_text = id_to_text.get(token_id)
        if token_text is None:
            raise _missing(model_id, "tokenizer_config.json",
                           f"added_tokens_decoder entry for the end token id {token_id} (nor "
                           "has tokenizer.json one)" if tokenizer_json else
                           f"added_tokens_decoder entry for the end token id {token_id}")
        if token_text not in ends:
            ends.append(token_text)
    if eos and eos not in ends:
        ends.append(eos)
    if not ends:
        raise _missing(model_id, "generation_config.json", "eos_token_id")
    templates = chat_templates_by_file(tokenizer_config, chat_template_jinja, chat_template_json)
    moe = _moe_shape(text, model_id, where)
    architectures = config.get("architectures") or text.get("architectures") or ()
    model_type = config.get("model_type") or text.get("model_type")
    return ModelFacts(
        model_id=model_id, num_layers=layers, num_attention_heads=heads,
        num_kv_heads=int(kv_heads), head_dim=int(head_dim), hidden_size=hidden,
        intermediate_size=intermediate, max_position_embeddings=positions, vocab_size=vocab,
        dtype=dtype, weight_bytes=int(weight_bytes), weights_source=source,
        bos_token=bos, eos_token=eos, end_tokens=tuple(ends),
        chat_template=next(iter(templates.values()), None), template_files=tuple(templates),
        adds_bos=bool(tokenizer_config.get("add_bos_token", True)),
        model_type=str(model_type) if model_type else None,
        architectures=tuple(str(a) for a in architectures if isinstance(a, str)),
        multimodal=isinstance(config.get("vision_config"), Mapping),
        num_experts=moe[0] if moe else None, experts_per_token=moe[1] if moe else None,
        active_weight_bytes=active_weight_bytes(named),
        sampling=_sampling(generation_config), revision=revision,
        special_tokens_by_id={i: t for i, t in id_to_text.items() if t is not None},
    )


def model_facts_from_documents(model_id: str, documents: Mapping[str, Any], *,
                               revision: str | None = None,
                               read_file: Callable[[str], Any] | None = None) -> ModelFacts:
    """Build :class:`ModelFacts` from ``{file name: parsed JSON, or text for
    chat_template.jinja}`` of :data:`FACT_FILES` and, when needed, ``tokenizer.json`` (a file
    the repository lacks is absent or ``None``). When ``documents`` has no ``tokenizer.json``
    and an end token id is in no ``added_tokens_decoder``, ``read_file("tokenizer.json")``
    supplies it (the parsed file, or ``None``).

    Raises:
        ModelFactsError: a fact the recipe needs is missing or malformed (or what
            ``read_file`` raises).
    """
    return model_facts_from_files(
        model_id, documents.get("config.json") or {},
        documents.get("tokenizer_config.json") or {},
        documents.get("generation_config.json"), documents.get("model.safetensors.index.json"),
        chat_template_jinja=documents.get("chat_template.jinja"),
        chat_template_json=documents.get("chat_template.json"),
        tokenizer_json=documents.get("tokenizer.json"), revision=revision, read_file=read_file)


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


def parse_fact_file(filename: str, text: str) -> Any:
    """Return a fact file's content: the text itself for a ``.jinja`` template, else the
    parsed JSON (any JSON value).

    Raises:
        ValueError: (``json.JSONDecodeError``) the file is not valid JSON.
    """
    return text if filename.endswith(".jinja") else json.loads(text)


def _parse(model_id: str, filename: str, path: str) -> Any:
    """The file's content: text for a ``.jinja`` template, else a JSON object."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        document = parse_fact_file(filename, text)
    except json.JSONDecodeError as exc:
        raise ModelFactsError(
            f"Cannot read {filename} of {model_id}: it is not valid JSON ({exc}). Supply the "
            f"fact by hand with {_FLAGS[filename]} ({_MANUAL}).", model_id=model_id,
            filename=filename, reason="not valid JSON", flag=_FLAGS[filename]) from exc
    if not filename.endswith(".jinja") and not isinstance(document, dict):
        raise _missing(model_id, filename, "JSON object")
    return document


def _read_file(model_id: str, filename: str, *, token: str | None, revision: str | None
               ) -> Any:
    """Download and parse one file; ``None`` for an optional file the repository (or, offline,
    the cache) does not have -- as transformers treats a missing optional file."""
    from huggingface_hub import errors, hf_hub_download

    try:
        path = hf_hub_download(model_id, filename, token=token, revision=revision)
    except errors.EntryNotFoundError:  # also LocalEntryNotFoundError: offline, not cached
        if filename in _REQUIRED:
            raise
        return None
    return _parse(model_id, filename, path)


def read_model_facts(model_id: str, *, token: str | None = None,
                     revision: str | None = None) -> ModelFacts:
    """Read a model's facts from the Hugging Face Hub (or its local cache when offline).

    Args:
        model_id: ``owner/name``.
        token: a Hugging Face read token; ``None`` uses ``HF_TOKEN`` / the saved login.
        revision: a branch, tag or commit (default: ``main``); the facts remember it.

    Returns:
        The :class:`ModelFacts`.

    Raises:
        ModelFactsError: a file cannot be read -- offline and not cached, no token or a
            licence not accepted for a gated repository, an unknown id or revision, a missing
            ``config.json`` / ``tokenizer_config.json`` -- or lacks a fact. The message names
            the file, the reason and the ``new`` flag that supplies the fact by hand.
    """
    from huggingface_hub import errors

    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise ModelFactsError(
            f"model id {model_id!r} is not 'owner/name' (e.g. meta-llama/Llama-3.1-8B-Instruct)."
            " Copy it from the model's page on huggingface.co.", model_id=str(model_id),
            reason="not owner/name")

    def read(filename: str) -> Any:
        try:
            return _read_file(model_id, filename, token=token, revision=revision)
        except ModelFactsError:
            raise
        except (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.EntryNotFoundError,
                OSError, ValueError) as exc:
            raise _download_error(model_id, filename, exc, token) from exc

    documents = {filename: read(filename) for filename in FACT_FILES}
    return model_facts_from_documents(model_id, documents, revision=revision, read_file=read)


def prompt_builder_for(model_id: str, *, token: str | None = None,
                       revision: str | None = None) -> PromptBuilder:
    """Return the :class:`~common.prompts.PromptBuilder` of a Hub model, read from its files.

    Reads the chat template (``chat_template.jinja``, ``chat_template.json`` or
    ``tokenizer_config.json``), the special tokens and the end tokens with ``huggingface_hub``
    (see :func:`read_model_facts`), using ``token`` or ``HF_TOKEN`` for gated repositories.

    Raises:
        common.errors.ModelFactsError: a file cannot be read (offline and not cached, no
            token, licence not accepted, unknown id), or the model has no chat template;
            the message says which file, why, and what to do.
    """
    return read_model_facts(model_id, token=token, revision=revision).prompt_builder()
