"""The catalogue of known Llama variants: what each repository on the Hub says about itself.

Product data, read by ``python -m common.notebooks variants`` (the table of what ``new`` picks
for each) and by the local stand-in's offline hub (:mod:`common.local.hub`), which serves these
files so that ``new --model-id ID`` runs offline for every id listed here.

Each entry gives what ``config.json``, ``tokenizer_config.json`` (with a chat template of the
model's real layout), ``generation_config.json`` and ``model.safetensors.index.json`` say on
the Hub (and ``chat_template.json`` where the repository has one). Architecture numbers are
the published ones (sources in DESIGN.md, "Variant facts"); ``metadata.total_size`` is counted
from them (2 bytes per parameter), which is how the real index files add up -- for Llama 4,
whose vision tower the count does not cover, it is the parameter count transformers builds
from the same configuration (a test checks it). Weights are not part of the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CODELLAMA_70B_TEMPLATE",
    "CODELLAMA_TEMPLATE",
    "LLAMA2_TEMPLATE",
    "LLAMA3_TEMPLATE",
    "LLAMA4_TEMPLATE",
    "LLAMA31_TEMPLATE",
    "LLAMA32_TEMPLATE",
    "VARIANTS",
    "Variant",
    "variant_files",
]

# --------------------------------------------------------------------------- chat templates
# The layouts of the templates in each family's tokenizer_config.json.

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

CODELLAMA_TEMPLATE = LLAMA2_TEMPLATE.replace("content.strip()", "content | trim")

CODELLAMA_70B_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set user_index = 1 %}{% else %}"
    "{% set user_index = 0 %}{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != ((loop.index0 + user_index) % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 %}{{ '<s>' }}{% endif %}"
    "{% set content = 'Source: ' + message['role'] + '\\n\\n ' + message['content'] | trim %}"
    "{{ content + ' <step> ' }}{% endfor %}{{'Source: assistant\\nDestination: user\\n\\n '}}"
)

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

_LLAMA31_HEAD = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
{DATE}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {{- message.content }}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""  # noqa: E501 - the template's own lines

LLAMA31_TEMPLATE = _LLAMA31_HEAD.replace("{DATE}", '    {%- set date_string = "26 Jul 2024" %}')
LLAMA32_TEMPLATE = _LLAMA31_HEAD.replace("{DATE}", """    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}""")

# Llama 4's layout (the text parts of the template in the Llama 4 Scout repository): headers
# <|header_start|>role<|header_end|>, each turn closed by <|eot|>; a system turn only when one
# is given; a message's content may be a string or a list of typed parts.
LLAMA4_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- if messages[0]['content'] is string %}
        {%- set system_message = messages[0]['content']|trim %}
    {%- else %}
        {%- set system_message = messages[0]['content'][0]['text']|trim %}
    {%- endif %}
    {%- set messages = messages[1:] %}
    {{- "<|header_start|>system<|header_end|>\\n\\n" }}
    {{- system_message }}
    {{- "<|eot|>" }}
{%- endif %}
{%- for message in messages %}
    {{- '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' }}
    {%- if message['content'] is string %}
        {{- message['content'] }}
    {%- else %}
        {%- for content in message['content'] %}
            {%- if content['type'] == 'image' %}
                {{- '<|image|>' }}
            {%- elif content['type'] == 'text' %}
                {{- content['text'] }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- "<|eot|>" }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|header_start|>assistant<|header_end|>\\n\\n' }}
{%- endif %}
"""

# --------------------------------------------------------------------------- the variants


@dataclass(frozen=True)
class Variant:
    """One model's published facts (see DESIGN.md for the source of each number).

    Attributes:
        repo_id: the Hugging Face id.
        layers / heads / kv_heads / hidden / intermediate / positions / vocab / dtype: the
            (text) model's architecture, as its ``config.json`` says.
        template: the chat template.
        family: the tokenizer family (``llama2``, ``codellama70b``, ``llama3``, ``llama31``,
            ``llama4``): special tokens and end tokens.
        head_dim, tie_embeddings, rope_theta: more ``config.json`` values.
        experts / intermediate_mlp / moe_step: a Llama 4 mixture of experts (experts per MoE
            layer, the dense layers' MLP size, every how many layers an MoE layer comes).
        vision: the ``vision_config`` of a multimodal model (its sizes nest under
            ``text_config`` then), else ``None``.
        total_params: the parameter count when it is not counted from the text architecture
            (a multimodal model: transformers' count of the whole model).
        template_files: the files that carry the chat template.
    """

    repo_id: str
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    intermediate: int
    positions: int
    vocab: int
    dtype: str
    template: str
    family: str
    head_dim: int | None = None
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    experts: int | None = None
    intermediate_mlp: int | None = None
    moe_step: int = 1
    vision: dict[str, Any] | None = None
    total_params: int | None = None
    template_files: tuple[str, ...] = field(default=("tokenizer_config.json",))

    @property
    def total_size(self) -> int:
        """The 16-bit weights' bytes (``metadata.total_size``)."""
        if self.total_params is not None:
            return 2 * self.total_params
        from common.model_facts import count_weight_bytes

        return count_weight_bytes(_text_config(self))

    @property
    def special_tokens(self) -> tuple[str, str]:
        """The tokenizer's (BOS, EOS) texts, as its ``tokenizer_config.json`` gives them."""
        tokenizer, _, _ = _tokens(self)
        return tokenizer["bos_token"], tokenizer["eos_token"]


_v = Variant  # the catalogue below: one positional row per variant


# Llama 4 Scout's vision tower (config.json "vision_config").
_LLAMA4_VISION: dict[str, Any] = {
    "attention_dropout": 0.0, "hidden_act": "gelu", "hidden_size": 1408, "image_size": 336,
    "initializer_range": 0.02, "intermediate_size": 5632, "model_type": "llama4_vision_model",
    "multi_modal_projector_bias": False, "norm_eps": 1e-05, "num_attention_heads": 16,
    "num_channels": 3, "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
    "projector_dropout": 0.0, "projector_input_dim": 4096, "projector_output_dim": 4096,
    "rope_theta": 10000, "vision_feature_layer": -1,
    "vision_feature_select_strategy": "default", "vision_output_dim": 4096,
}

VARIANTS: dict[str, Variant] = {v.repo_id: v for v in (
    _v("meta-llama/Llama-2-7b-chat-hf", 32, 32, 32, 4096, 11008, 4096, 32000, "float16",
       LLAMA2_TEMPLATE, "llama2"),
    _v("meta-llama/Llama-2-13b-chat-hf", 40, 40, 40, 5120, 13824, 4096, 32000, "float16",
       LLAMA2_TEMPLATE, "llama2"),
    _v("meta-llama/Llama-2-70b-chat-hf", 80, 64, 8, 8192, 28672, 4096, 32000, "float16",
       LLAMA2_TEMPLATE, "llama2"),
    _v("codellama/CodeLlama-7b-Instruct-hf", 32, 32, 32, 4096, 11008, 16384, 32016,
       "bfloat16", CODELLAMA_TEMPLATE, "llama2", rope_theta=1e6),
    _v("codellama/CodeLlama-13b-Instruct-hf", 40, 40, 40, 5120, 13824, 16384, 32016,
       "bfloat16", CODELLAMA_TEMPLATE, "llama2", rope_theta=1e6),
    _v("codellama/CodeLlama-34b-Instruct-hf", 48, 64, 8, 8192, 22016, 16384, 32000,
       "bfloat16", CODELLAMA_TEMPLATE, "llama2", rope_theta=1e6),
    _v("codellama/CodeLlama-70b-Instruct-hf", 80, 64, 8, 8192, 28672, 16384, 32016,
       "bfloat16", CODELLAMA_70B_TEMPLATE, "codellama70b", rope_theta=1e6),
    _v("meta-llama/Meta-Llama-3-8B-Instruct", 32, 32, 8, 4096, 14336, 8192, 128256,
       "bfloat16", LLAMA3_TEMPLATE, "llama3", rope_theta=500000.0),
    _v("meta-llama/Meta-Llama-3-70B-Instruct", 80, 64, 8, 8192, 28672, 8192, 128256,
       "bfloat16", LLAMA3_TEMPLATE, "llama3", rope_theta=500000.0),
    _v("meta-llama/Llama-3.1-8B-Instruct", 32, 32, 8, 4096, 14336, 131072, 128256,
       "bfloat16", LLAMA31_TEMPLATE, "llama31", rope_theta=500000.0),
    _v("meta-llama/Llama-3.1-70B-Instruct", 80, 64, 8, 8192, 28672, 131072, 128256,
       "bfloat16", LLAMA31_TEMPLATE, "llama31", rope_theta=500000.0),
    _v("meta-llama/Llama-3.2-1B-Instruct", 16, 32, 8, 2048, 8192, 131072, 128256,
       "bfloat16", LLAMA32_TEMPLATE, "llama31", head_dim=64, tie_embeddings=True,
       rope_theta=500000.0),
    _v("meta-llama/Llama-3.2-3B-Instruct", 28, 24, 8, 3072, 8192, 131072, 128256,
       "bfloat16", LLAMA32_TEMPLATE, "llama31", head_dim=128, tie_embeddings=True,
       rope_theta=500000.0),
    _v("meta-llama/Llama-3.3-70B-Instruct", 80, 64, 8, 8192, 28672, 131072, 128256,
       "bfloat16", LLAMA31_TEMPLATE, "llama31", rope_theta=500000.0),
    # Llama 4 Scout: 16 experts in every layer, 17B parameters active per token of 109B.
    _v("meta-llama/Llama-4-Scout-17B-16E-Instruct", 48, 40, 8, 5120, 8192, 10485760, 202048,
       "bfloat16", LLAMA4_TEMPLATE, "llama4", head_dim=128, rope_theta=500000.0, experts=16,
       intermediate_mlp=16384, moe_step=1, vision=_LLAMA4_VISION,
       total_params=108_641_793_536,
       template_files=("tokenizer_config.json", "chat_template.json")),
)}
"""Every variant the catalogue knows, by repo id."""


def _special(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


def _tokens(variant: Variant) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tokenizer_config, generation_config, config additions) of a family."""
    if variant.family == "llama4":
        names = {200000: "<|begin_of_text|>", 200001: "<|end_of_text|>",
                 200005: "<|header_start|>", 200006: "<|header_end|>", 200007: "<|eom|>",
                 200008: "<|eot|>", 200018: "<|finetune_right_pad|>", 200080: "<|image_start|>",
                 200081: "<|image_end|>", 200092: "<|image|>"}
        ends = [200001, 200007, 200008]
        tokenizer = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>",
                     "pad_token": "<|finetune_right_pad|>",
                     "added_tokens_decoder": {str(i): _special(t) for i, t in names.items()},
                     "clean_up_tokenization_spaces": False, "model_max_length": 10485760,
                     "tokenizer_class": "PreTrainedTokenizerFast"}
        generation = {"bos_token_id": 200000, "do_sample": True, "eos_token_id": ends,
                      "pad_token_id": 200018, "temperature": 0.6, "top_p": 0.9}
        return tokenizer, generation, {"bos_token_id": 200000, "eos_token_id": ends,
                                       "pad_token_id": 200018}
    if variant.family in ("llama3", "llama31"):
        decoder = {"128000": _special("<|begin_of_text|>"), "128001": _special("<|end_of_text|>"),
                   "128006": _special("<|start_header_id|>"),
                   "128007": _special("<|end_header_id|>"), "128008": _special("<|eom_id|>"),
                   "128009": _special("<|eot_id|>")}
        ends = [128001, 128009] if variant.family == "llama3" else [128001, 128008, 128009]
        tokenizer = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                     "added_tokens_decoder": decoder, "clean_up_tokenization_spaces": True,
                     "model_max_length": 131072 if variant.family == "llama31" else 1000000000,
                     "tokenizer_class": "PreTrainedTokenizerFast"}
        generation = {"bos_token_id": 128000, "eos_token_id": ends, "do_sample": True,
                      "temperature": 0.6, "top_p": 0.9}
        return tokenizer, generation, {"bos_token_id": 128000, "eos_token_id": ends}
    decoder = {"0": _special("<unk>"), "1": _special("<s>"), "2": _special("</s>")}
    ends: Any = 2
    if variant.family == "codellama70b":
        decoder["32015"] = _special("<step>")
        ends = 32015
    tokenizer = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                 "eos_token": "</s>", "unk_token": "<unk>", "added_tokens_decoder": decoder,
                 "legacy": False, "tokenizer_class": "LlamaTokenizer"}
    generation = {"bos_token_id": 1, "eos_token_id": ends, "pad_token_id": 0}
    return tokenizer, generation, {"bos_token_id": 1, "eos_token_id": ends}


def _text_config(variant: Variant) -> dict[str, Any]:
    """The language model's configuration: all of ``config.json`` for a text model, its
    ``text_config`` for a multimodal one."""
    config: dict[str, Any] = {
        "_name_or_path": variant.repo_id, "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu", "hidden_size": variant.hidden,
        "intermediate_size": variant.intermediate,
        "max_position_embeddings": variant.positions, "model_type": "llama",
        "num_attention_heads": variant.heads, "num_hidden_layers": variant.layers,
        "num_key_value_heads": variant.kv_heads, "rms_norm_eps": 1e-05,
        "rope_theta": variant.rope_theta, "tie_word_embeddings": variant.tie_embeddings,
        "torch_dtype": variant.dtype, "use_cache": True, "vocab_size": variant.vocab,
    }
    if variant.head_dim is not None:
        config["head_dim"] = variant.head_dim
    if variant.experts is not None:
        del config["_name_or_path"]
        config.update({
            "architectures": None, "model_type": "llama4_text",
            "attention_chunk_size": 8192, "attention_bias": False,
            "interleave_moe_layer_step": variant.moe_step,
            "intermediate_size_mlp": variant.intermediate_mlp,
            "num_experts_per_tok": 1, "num_local_experts": variant.experts,
            "rope_scaling": {"factor": 16.0, "high_freq_factor": 1.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192,
                             "rope_type": "llama3"},
            "use_qk_norm": True,
        })
    return config


def _config(variant: Variant) -> dict[str, Any]:
    """``config.json``: the text model's, or a multimodal model's with the text model's sizes
    nested under ``text_config`` and a ``vision_config`` beside it."""
    text = _text_config(variant)
    if variant.vision is None:
        return text
    return {
        "_name_or_path": variant.repo_id,
        "architectures": ["Llama4ForConditionalGeneration"],
        "boi_token_index": 200080, "eoi_token_index": 200081, "image_token_index": 200092,
        "model_type": "llama4", "text_config": text, "tie_word_embeddings": False,
        "torch_dtype": variant.dtype, "vision_config": dict(variant.vision),
    }


def variant_files(repo_id: str) -> dict[str, Any] | None:
    """Return ``{file name: JSON document}`` for ``repo_id``'s fact files (``config.json``,
    ``tokenizer_config.json``, ``generation_config.json``, ``model.safetensors.index.json``,
    and ``chat_template.json`` where the repository has one), or ``None`` for a repository
    the catalogue does not know."""
    variant = VARIANTS.get(repo_id)
    if variant is None:
        return None
    tokenizer, generation, ids = _tokens(variant)
    config = _config(variant)
    if variant.vision is None:
        config = {**config, **ids}
    else:
        config["text_config"] = {**config["text_config"], **ids}
    files: dict[str, Any] = {"config.json": config}
    if "tokenizer_config.json" in variant.template_files:
        tokenizer = {**tokenizer, "chat_template": variant.template}
    files["tokenizer_config.json"] = tokenizer
    files["generation_config.json"] = generation
    files["model.safetensors.index.json"] = {
        "metadata": {"total_size": variant.total_size},
        "weight_map": {"model.embed_tokens.weight": "model.safetensors",
                       "lm_head.weight": "model.safetensors"}}
    if "chat_template.json" in variant.template_files:
        files["chat_template.json"] = {"chat_template": variant.template}
    return files
