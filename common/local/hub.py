"""A tiny, offline Hugging Face Hub: model snapshots written into a real HF cache.

The LMI deploy notebooks call ``huggingface_hub.snapshot_download(repo_id,
allow_patterns=[...])`` and upload what it returns. With ``HF_HUB_OFFLINE=1`` and
``HF_HUB_CACHE`` pointing at a folder written by :func:`write_tiny_snapshot`,
``snapshot_download`` runs its own code (resolve ``refs/main``, find the snapshot, check it
against the cached tree listing and the patterns) and returns the snapshot folder -- exactly
what it does on a machine that downloaded the model before and has no network now.

The files mirror the layout of the ``meta-llama/Llama-2-*-chat-hf`` repositories (config,
generation config, tokenizer files, weights in safetensors *and* PyTorch ``.bin`` form, plus
the README, licence and policy documents), shrunk to a few kilobytes:

* ``model.safetensors`` is a complete one-layer Llama with random weights (hidden size 8) in
  the real safetensors format, so any safetensors reader opens it;
* ``tokenizer.json`` is a valid (word-level) ``tokenizers`` file over a tiny vocabulary;
* ``tokenizer.model``, ``pytorch_model.bin`` and the PDF are labelled stand-in bytes, not
  loadable SentencePiece / PyTorch / PDF files.

Layout written (the real one: ``huggingface_hub.constants`` / ``file_download``)::

    <cache>/models--<org>--<name>/blobs/<sha256 or git-sha1>
    <cache>/models--<org>--<name>/snapshots/<commit>/<file>  -> ../../blobs/<hash>
    <cache>/models--<org>--<name>/refs/main                  (the commit, no newline)
    <cache>/models--<org>--<name>/trees/<commit>.json        (huggingface_hub >= 2.x)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import random
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.variants import VARIANTS, variant_files

__all__ = [
    "DEFAULT_REPO_ID",
    "LLAMA2_CHAT_REPOS",
    "VARIANT_REPOS",
    "commit_for",
    "repo_files",
    "safetensors_bytes",
    "write_snapshot",
    "write_tiny_snapshot",
    "write_tiny_snapshots",
]

DEFAULT_REPO_ID = "meta-llama/Llama-2-7b-chat-hf"
LLAMA2_CHAT_REPOS: tuple[str, ...] = (
    "meta-llama/Llama-2-7b-chat-hf",
    "meta-llama/Llama-2-13b-chat-hf",
    "meta-llama/Llama-2-70b-chat-hf",
)

VARIANT_REPOS: tuple[str, ...] = tuple(VARIANTS)
"""Every repository the offline hub knows the published configuration of (Llama 2, Code Llama,
Llama 3, 3.1, 3.2, 3.3, 4): its ``config.json``, ``tokenizer_config.json``,
``generation_config.json`` and ``model.safetensors.index.json`` carry the real facts."""

# The tiny model's shape (a LlamaForCausalLM with one layer).
_VOCAB = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "Hello", "!",
          "This", "is", "a", "tiny", "stand-in", "model", "."]
_HIDDEN, _INTERMEDIATE, _HEADS, _KV_HEADS = 8, 16, 2, 1
_LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pdf")


def commit_for(repo_id: str) -> str:
    """Return the (made-up, stable) 40-hex commit hash the tiny snapshot of ``repo_id`` has."""
    return hashlib.sha1(f"tiny-stand-in:{repo_id}".encode()).hexdigest()


# --------------------------------------------------------------------------- safetensors


def safetensors_bytes(tensors: dict[str, tuple[Sequence[int], Sequence[float]]],
                      metadata: dict[str, str] | None = None) -> bytes:
    """Serialise float16 tensors in the safetensors format.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to
    ``{"dtype", "shape", "data_offsets"}`` (plus ``__metadata__``), padded with spaces to a
    multiple of 8, then the raw little-endian tensor bytes in header order.

    Args:
        tensors: name -> (shape, values in row-major order); ``len(values)`` must equal the
            product of the shape.
        metadata: string-to-string metadata (``{"format": "pt"}`` for PyTorch readers).

    Raises:
        ValueError: a tensor's value count does not match its shape.
    """
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        count = 1
        for dim in shape:
            count *= dim
        if count != len(values):
            raise ValueError(f"tensor {name!r}: shape {list(shape)} needs {count} values, "
                             f"got {len(values)}")
        data = struct.pack(f"<{count}e", *values)
        header[name] = {"dtype": "F16", "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _tiny_llama_tensors(seed: str) -> dict[str, tuple[list[int], list[float]]]:
    rng = random.Random(seed)
    head_dim = _HIDDEN // _HEADS
    vocab = len(_VOCAB)

    def weights(*shape: int) -> tuple[list[int], list[float]]:
        count = 1
        for dim in shape:
            count *= dim
        return list(shape), [round(rng.gauss(0.0, 0.02), 4) for _ in range(count)]

    def ones(size: int) -> tuple[list[int], list[float]]:
        return [size], [1.0] * size

    layer = "model.layers.0"
    return {
        "model.embed_tokens.weight": weights(vocab, _HIDDEN),
        f"{layer}.input_layernorm.weight": ones(_HIDDEN),
        f"{layer}.post_attention_layernorm.weight": ones(_HIDDEN),
        f"{layer}.self_attn.q_proj.weight": weights(_HIDDEN, _HIDDEN),
        f"{layer}.self_attn.k_proj.weight": weights(_KV_HEADS * head_dim, _HIDDEN),
        f"{layer}.self_attn.v_proj.weight": weights(_KV_HEADS * head_dim, _HIDDEN),
        f"{layer}.self_attn.o_proj.weight": weights(_HIDDEN, _HIDDEN),
        f"{layer}.mlp.gate_proj.weight": weights(_INTERMEDIATE, _HIDDEN),
        f"{layer}.mlp.up_proj.weight": weights(_INTERMEDIATE, _HIDDEN),
        f"{layer}.mlp.down_proj.weight": weights(_HIDDEN, _INTERMEDIATE),
        "model.norm.weight": ones(_HIDDEN),
        "lm_head.weight": weights(vocab, _HIDDEN),
    }


# --------------------------------------------------------------------------- repo files


def _json(document: object) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def repo_files(repo_id: str = DEFAULT_REPO_ID) -> dict[str, bytes]:
    """Return the tiny repository's files: path -> content.

    The names are those of the real ``meta-llama/Llama-2-*-chat-hf`` repositories (weights
    unsharded); the contents are small stand-ins (see the module docstring). For a repository
    of :data:`VARIANT_REPOS`, ``config.json``, ``tokenizer_config.json``,
    ``generation_config.json`` and ``model.safetensors.index.json`` hold the model's published
    facts and chat template instead (the weights stay tiny).
    """
    vocab = {token: index for index, token in enumerate(_VOCAB)}
    specials = [{"id": i, "content": t, "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True}
                for i, t in enumerate(_VOCAB[:3])]
    label = (f"Stand-in for {repo_id}, written by common.local.hub for offline tests; "
             "not Meta's model.\n")
    files = _tiny_files(repo_id, vocab, specials, label)
    facts = variant_files(repo_id)
    if facts is not None:
        files.update({name: _json(document) for name, document in facts.items()})
    return files


def _tiny_files(repo_id: str, vocab: dict[str, int], specials: list[dict[str, object]],
                label: str) -> dict[str, bytes]:
    return {
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
                          b"*.model filter=lfs diff=lfs merge=lfs -text\n"
                          b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "LICENSE.txt": ("LLAMA 2 COMMUNITY LICENSE AGREEMENT (placeholder text). " + label
                        ).encode(),
        "README.md": f"# {repo_id} (tiny stand-in)\n\n{label}".encode(),
        "Responsible-Use-Guide.pdf": b"%PDF-stand-in " + label.encode(),
        "USE_POLICY.md": f"# Llama 2 Acceptable Use Policy (placeholder)\n\n{label}".encode(),
        "config.json": _json({
            "_name_or_path": repo_id,
            "architectures": ["LlamaForCausalLM"],
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "hidden_size": _HIDDEN,
            "initializer_range": 0.02,
            "intermediate_size": _INTERMEDIATE,
            "max_position_embeddings": 4096,
            "model_type": "llama",
            "num_attention_heads": _HEADS,
            "num_hidden_layers": 1,
            "num_key_value_heads": _KV_HEADS,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": None,
            "tie_word_embeddings": False,
            "torch_dtype": "float16",
            "use_cache": True,
            "vocab_size": len(_VOCAB),
        }),
        "generation_config.json": _json({
            "bos_token_id": 1, "do_sample": True, "eos_token_id": 2, "max_length": 4096,
            "pad_token_id": 0, "temperature": 0.6, "top_p": 0.9,
        }),
        "model.safetensors": safetensors_bytes(_tiny_llama_tensors(repo_id)),
        "pytorch_model.bin": b"stand-in: not a PyTorch checkpoint. " + label.encode(),
        "special_tokens_map.json": _json({
            "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>",
            "unk_token": "<unk>",
        }),
        "tokenizer.json": _json({
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": specials, "normalizer": None,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        }),
        "tokenizer.model": b"stand-in: not a SentencePiece model. " + label.encode(),
        "tokenizer_config.json": _json({
            "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
            "clean_up_tokenization_spaces": False, "eos_token": "</s>",
            "legacy": False, "model_max_length": 1000000000000000019884624838656,
            "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
        }),
    }


# --------------------------------------------------------------------------- the cache


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _matches(path: str, allow_patterns: Iterable[str] | None) -> bool:
    if allow_patterns is None:
        return True
    return any(fnmatch.fnmatch(path, pattern) for pattern in allow_patterns)


def _write_tree_listing(storage: Path, commit: str, files: dict[str, bytes]) -> None:
    """Write the tree listing ``snapshot_download`` checks offline (huggingface_hub >= 2)."""
    try:
        from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
    except ImportError:  # older huggingface_hub: no tree cache, the snapshot alone suffices
        return
    entries = {}
    for path, data in files.items():
        lfs = path.endswith(_LFS_SUFFIXES)
        entries[path] = TreeCacheEntry(
            size=len(data), blob_id=_git_blob_id(data),
            lfs_sha256=hashlib.sha256(data).hexdigest() if lfs else None,
            lfs_size=len(data) if lfs else None,
        )
    write_tree_cache(str(storage), commit, entries)


def write_tiny_snapshot(
    cache_dir: str | os.PathLike[str],
    repo_id: str = DEFAULT_REPO_ID,
    revision: str = "main",
    *,
    allow_patterns: Iterable[str] | None = None,
) -> Path:
    """Write the tiny snapshot of ``repo_id`` into the HF hub cache at ``cache_dir``.

    Args:
        cache_dir: the hub cache folder (what ``HF_HUB_CACHE`` names, e.g.
            ``$HF_HOME/hub``); created when missing.
        repo_id: ``org/name`` of a model repository.
        revision: the ref (branch or tag) that points at the snapshot's commit.
        allow_patterns: write only the files matching these ``fnmatch`` patterns -- the
            cache a earlier ``snapshot_download(allow_patterns=...)`` leaves behind. The tree
            listing always names every file of the repository, so a later download that
            asks for more than was written fails offline, as it would for real.

    Returns:
        The snapshot folder (``.../snapshots/<commit>``), the path ``snapshot_download``
        returns for it.

    Raises:
        ValueError: ``repo_id`` is not ``org/name``.
        OSError: the cache folder cannot be written.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = commit_for(repo_id)
    snapshot = storage / "snapshots" / commit
    files = repo_files(repo_id)
    allow = None if allow_patterns is None else list(allow_patterns)
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        if not _matches(path, allow):
            continue
        lfs = path.endswith(_LFS_SUFFIXES)
        blob_name = hashlib.sha256(data).hexdigest() if lfs else _git_blob_id(data)
        blob = storage / "blobs" / blob_name
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks (e.g. Windows without developer mode): copy, as HF does
            link.write_bytes(data)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    _write_tree_listing(storage, commit, files)
    return snapshot


def write_tiny_snapshots(
    cache_dir: str | os.PathLike[str], repo_ids: Iterable[str] = LLAMA2_CHAT_REPOS
) -> dict[str, Path]:
    """Write :func:`write_tiny_snapshot` for each repo id; returns repo id -> snapshot folder."""
    return {repo_id: write_tiny_snapshot(cache_dir, repo_id) for repo_id in repo_ids}


def write_snapshot(cache_dir: str | os.PathLike[str], repo_id: str, files: dict[str, bytes],
                   revision: str = "main") -> Path:
    """Write a snapshot of ``repo_id`` holding exactly ``files`` (path -> content).

    For tests that need another repository shape than :func:`repo_files` (a model in many
    shards, say); the cache layout is the one :func:`write_tiny_snapshot` writes, with a
    commit of its own (from the file names and sizes), and ``refs/<revision>`` pointing at it.

    Returns:
        The snapshot folder.

    Raises:
        ValueError: ``repo_id`` is not ``org/name``.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    listing = ",".join(f"{path}:{len(data)}" for path, data in sorted(files.items()))
    commit = hashlib.sha1(f"{commit_for(repo_id)}:{listing}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        lfs = path.endswith(_LFS_SUFFIXES)
        blob = storage / "blobs" / (hashlib.sha256(data).hexdigest() if lfs
                                    else _git_blob_id(data))
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    _write_tree_listing(storage, commit, files)
    return snapshot
