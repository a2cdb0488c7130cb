"""Model repositories the tests write themselves (no downloads): a fine-tune whose chat template
is in ``chat_template.jinja`` (as transformers >= 4.47 saves it), a Llama 3.2 Vision-shaped
multimodal model, and the small tokenizer files that let transformers load each of them.

The fine-tune is a Llama 3.1 8B (model_type ``llama``) retrained on a ChatML-style layout
with its own end token ``<|im_end|>``: nothing about it is in any list, so a test that gets its
prompt and end token right got them from the files.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from common.local.hub import safetensors_bytes, write_snapshot
from common.variants import variant_files

FINE_TUNE_ID = "acme/llama-3.1-8b-support-chat"
VISION_ID = "acme/llama-3.2-11b-vision-shaped"

CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_LLAMA3_SPECIALS = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
                    128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
                    128008: "<|eom_id|>", 128009: "<|eot_id|>"}
_CHATML_SPECIALS = {**_LLAMA3_SPECIALS, 128010: "<|im_start|>", 128011: "<|im_end|>"}
_WORDS = ["<unk>", "Hello", "!", "This", "is", "a", "tiny", "stand-in", "model", "."]


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _special_token(text: str) -> dict[str, Any]:
    """One added special token, as both ``tokenizer.json`` and ``tokenizer_config.json``
    describe it (the former adds its ``id``)."""
    return {"content": text, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


def _added(specials: dict[int, str]) -> dict[str, Any]:
    return {str(i): _special_token(text) for i, text in specials.items()}


def tokenizer_json(specials: dict[int, str]) -> dict[str, Any]:
    """A word-level ``tokenizer.json`` whose added special tokens have the given ids."""
    vocab = {word: index for index, word in enumerate(_WORDS)}
    vocab.update({text: token_id for token_id, text in specials.items()})
    added = [{"id": i, **_special_token(t)} for i, t in specials.items()]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None, "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}}


def tokenizer_config(specials: dict[int, str], bos: str, eos: str, **more: Any) -> dict[str, Any]:
    """A ``tokenizer_config.json`` for :func:`tokenizer_json`'s tokenizer."""
    return {"added_tokens_decoder": _added(specials), "bos_token": bos, "eos_token": eos,
            "clean_up_tokenization_spaces": False, "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast", **more}


def fine_tune_documents() -> dict[str, Any]:
    """The fine-tune's fact files as parsed documents (``chat_template.jinja`` as text)."""
    base = variant_files("meta-llama/Llama-3.1-8B-Instruct")
    assert base is not None
    config = {**base["config.json"], "_name_or_path": FINE_TUNE_ID,
              "eos_token_id": [128011, 128009]}
    return {
        "config.json": config,
        "tokenizer_config.json": tokenizer_config(_CHATML_SPECIALS, "<|begin_of_text|>",
                                                  "<|im_end|>"),
        "chat_template.jinja": CHATML_TEMPLATE,
        # The fine-tune's authors recommend their own sampling.
        "generation_config.json": {"bos_token_id": 128000, "do_sample": True,
                                   "eos_token_id": [128011, 128009], "temperature": 0.7,
                                   "top_p": 0.95},
        "model.safetensors.index.json": base["model.safetensors.index.json"],
    }


def vision_documents() -> dict[str, Any]:
    """A Llama 3.2 11B Vision-shaped model (``mllama``): the language model's sizes under
    ``text_config``, a ``vision_config`` beside it, the template in ``chat_template.json``."""
    base = variant_files("meta-llama/Llama-3.2-3B-Instruct")
    assert base is not None
    text = {"cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38], "hidden_size": 4096,
            "intermediate_size": 14336, "max_position_embeddings": 131072,
            "model_type": "mllama_text_model", "num_attention_heads": 32,
            "num_hidden_layers": 40, "num_key_value_heads": 8, "rope_theta": 500000.0,
            "torch_dtype": "bfloat16", "vocab_size": 128256,
            "eos_token_id": [128001, 128008, 128009]}
    vision = {"hidden_size": 1280, "image_size": 560, "intermediate_size": 5120,
              "model_type": "mllama_vision_model", "num_attention_heads": 16,
              "num_hidden_layers": 32, "num_global_layers": 8, "patch_size": 14}
    tokenizer = dict(base["tokenizer_config.json"])
    template = tokenizer.pop("chat_template")
    return {
        "config.json": {"_name_or_path": VISION_ID,
                        "architectures": ["MllamaForConditionalGeneration"],
                        "image_token_index": 128256, "model_type": "mllama",
                        "text_config": text, "torch_dtype": "bfloat16",
                        "vision_config": vision},
        "tokenizer_config.json": tokenizer,
        "chat_template.json": {"chat_template": template},
        "generation_config.json": base["generation_config.json"],
        "model.safetensors.index.json": {"metadata": {"total_size": 21_340_000_000},
                                         "weight_map": {}},
    }


def repository_files(documents: dict[str, Any], specials: dict[int, str] | None = None,
                     *, weights: bool = True) -> dict[str, bytes]:
    """The files of a repository: ``documents`` serialised, a ``tokenizer.json`` for the
    special tokens of its ``tokenizer_config.json`` and (``weights``) a tiny
    ``model.safetensors`` -- a user's cache may hold no weights at all."""
    files = {name: (doc.encode() if isinstance(doc, str) else _json(doc))
             for name, doc in documents.items()}
    if specials is None:
        decoder = documents["tokenizer_config.json"]["added_tokens_decoder"]
        specials = {int(k): v["content"] for k, v in decoder.items()}
    files["tokenizer.json"] = _json(tokenizer_json(specials))
    if weights:
        files["model.safetensors"] = safetensors_bytes({"lm_head.weight": ([1, 2], [0.5, 1.0])})
    return files


def write_user_cache(cache_dir: Path, *, weights: bool = False) -> Path:
    """Write the fine-tune and the vision-shaped model into a Hugging Face hub cache, as
    ``hf download`` leaves it (config and tokenizer files; no weights unless ``weights``)."""
    write_snapshot(cache_dir, FINE_TUNE_ID,
                   repository_files(fine_tune_documents(), weights=weights))
    write_snapshot(cache_dir, VISION_ID, repository_files(vision_documents(), weights=weights))
    return cache_dir


def write_model_folder(folder: Path, documents: dict[str, Any]) -> Path:
    """Write a model folder (``save_pretrained`` layout) that transformers can load."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in repository_files(documents, weights=False).items():
        (folder / name).write_bytes(data)
    return folder


def go_offline(monkeypatch: Any, cache: Path) -> Path:
    """Point huggingface_hub at ``cache`` in offline mode (it reads both when imported, so
    the module constants are patched too); returns ``cache``."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def serving_properties_tarball(properties: str) -> bytes:
    """A ``model.tar.gz`` holding one ``serving.properties`` (an LMI model's code archive)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = properties.encode()
        member = tarfile.TarInfo("serving.properties")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return archive.getvalue()
