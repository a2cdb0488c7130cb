"""Which model an endpoint of the stand-in serves, and what its files say: chat template,
special tokens, end token -- read the way the container reads them.

* **TGI** names the model in ``HF_MODEL_ID`` and downloads its files from the Hub: the stand-in
  reads them from the hub it serves (its own cache and any ``--hub-cache``; see
  :func:`use_hub`). TGI 3.3.6 takes the chat template from ``chat_template.json`` or
  ``tokenizer_config.json`` only (:data:`common.support.TGI_TEMPLATE_FILES`).
* **LMI** is configured with ``serving.properties`` inside the model's ``model.tar.gz``
  (``ModelDataUrl``), whose ``option.model_id`` is the S3 prefix of the uploaded files (or a
  hub id). LMI loads the model -- and its tokenizer and chat template, with transformers, so
  ``chat_template.jinja`` first -- from there; :func:`served_model_id` reads the same files from
  moto's S3. The model's name is the uploaded ``config.json``'s ``_name_or_path`` (what the
  request log shows), else the S3 prefix.

The Messages API route renders with the template found (:func:`render_chat`), and the replay
backend ends its answer with the model's end token (:func:`end_token`). A model whose files
cannot be found is served as Llama 2, as before.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ServedModel",
    "last_user_text",
    "lookup",
    "render_chat",
    "served_model_from_documents",
    "served_model_id",
    "split_s3_uri",
    "use_hub",
]

ReadObject = Callable[[str, str], "bytes | None"]
SnapshotFolder = Callable[[str, str, str], "Path | None"]
ReadFile = Callable[[str], Any]

_LOG = logging.getLogger("common.local.served_model")


@dataclass(frozen=True)
class ServedModel:
    """What a container knows of the model it serves.

    Attributes:
        model_id: the model's name (hub id, or the S3 prefix).
        chat_template: the template transformers (and so vLLM/LMI) uses: ``chat_template.jinja``,
            ``chat_template.json``, ``tokenizer_config.json``.
        tgi_chat_template: the template TGI 3.3.6 finds (never ``chat_template.jinja``).
        bos_token / eos_token: the tokenizer's texts.
        end_token / end_token_id: the token a chat answer ends with: the tokenizer's EOS when
            ``generation_config.json`` lists it among the end ids, else the first end id.
    """

    model_id: str
    chat_template: str | None
    tgi_chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    end_token: str
    end_token_id: int

    def template_for(self, container: str) -> str | None:
        """The template ``container`` (``"tgi"`` / ``"lmi"``) renders messages with."""
        return self.tgi_chat_template if container == "tgi" else self.chat_template


def served_model_from_documents(model_id: str, documents: Mapping[str, Any],
                                read_file: ReadFile | None = None) -> ServedModel | None:
    """Read a :class:`ServedModel` from ``{file name: parsed JSON, or text for
    chat_template.jinja}``; ``None`` when the files do not describe a chat model (no
    tokenizer configuration, no end token).

    ``read_file(name)`` (the parsed file, or ``None``) supplies ``tokenizer.json`` when
    ``documents`` lacks it and the special tokens are needed from it: an end token id that no
    ``added_tokens_decoder`` names, or a tokenizer EOS text it does not name.
    """
    from common.errors import ModelFactsError
    from common.model_facts import chat_templates_by_file, model_facts_from_documents
    from common.support import TGI_TEMPLATE_FILES

    tokenizer = documents.get("tokenizer_config.json")
    if not isinstance(tokenizer, Mapping):
        return None
    files = dict(documents)

    def read_once(name: str) -> Any:
        if name not in files:
            files[name] = read_file(name) if read_file is not None else None
        return files[name]

    try:
        facts = model_facts_from_documents(model_id, files, read_file=read_once)
        if (read_file is not None and "tokenizer.json" not in files
                and facts.eos_token is not None
                and facts.eos_token not in facts.special_tokens_by_id.values()):
            read_once("tokenizer.json")  # the EOS's id may be there only
            facts = model_facts_from_documents(model_id, files)
    except ModelFactsError as exc:
        _LOG.warning("serving %s as Llama 2: its files cannot be read (%s)", model_id, exc)
        return None
    templates = chat_templates_by_file(tokenizer, documents.get("chat_template.jinja"),
                                       documents.get("chat_template.json"))
    tgi_template = next((template for name, template in templates.items()
                         if name in TGI_TEMPLATE_FILES), None)
    ids: dict[str, int] = {}  # text -> its first id
    for token_id, text in facts.special_tokens_by_id.items():
        ids.setdefault(text, token_id)
    generation = files.get("generation_config.json") or {}
    listed = generation.get("eos_token_id")
    listed = listed if isinstance(listed, list) else [listed]
    listed_texts = [t for t, i in ids.items() if i in listed]
    end = (facts.eos_token if facts.eos_token in listed_texts or not listed_texts
           else facts.end_tokens[0])
    if end is None or end not in ids:
        end = next((t for t in facts.end_tokens if t in ids), None)
    if end is None:
        return None
    return ServedModel(model_id=model_id, chat_template=facts.chat_template,
                       tgi_chat_template=tgi_template, bos_token=facts.bos_token,
                       eos_token=facts.eos_token, end_token=end, end_token_id=ids[end])


def _file_reader(read: Callable[[str], bytes | None]) -> ReadFile:
    """``read_file(name)``: the file's parsed content (of ``tokenizer.json`` only its
    ``added_tokens``), or ``None`` when it is absent or not valid JSON (logged)."""
    from common.model_facts import parse_fact_file

    def read_file(name: str) -> Any:
        data = read(name)
        if data is None:
            return None
        try:
            document = parse_fact_file(name, data.decode("utf-8", "replace"))
        except ValueError:
            _LOG.warning("%s is not valid JSON; the stand-in ignores it", name)
            return None
        if name == "tokenizer.json" and isinstance(document, dict):
            document = {"added_tokens": document.get("added_tokens") or []}  # all we need
        return document

    return read_file


def _documents(read_file: ReadFile) -> dict[str, Any]:
    """The fact files (:data:`~common.model_facts.FACT_FILES`) ``read_file`` finds
    (``tokenizer.json`` is read later, only when they need it)."""
    from common.model_facts import FACT_FILES

    return {name: document for name in FACT_FILES if (document := read_file(name)) is not None}


# --------------------------------------------------------------------------- the registry


class _Registry:
    """Served models by name: those read from S3 (LMI), then the hub's, then the catalogue's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s3: dict[str, ServedModel] = {}
        self._s3_keys: dict[tuple[str, str], tuple[str, ServedModel | None]] = {}
        self._hub: SnapshotFolder | None = None
        self._hub_cache: dict[str, ServedModel | None] = {}  # the default branch's

    def use_hub(self, snapshot: SnapshotFolder | None) -> SnapshotFolder | None:
        with self._lock:
            previous, self._hub = self._hub, snapshot
            self._hub_cache.clear()
            self._s3.clear()
            self._s3_keys.clear()
        return previous

    def remember_s3(self, key: tuple[str, str],
                    read: Callable[[], tuple[str, ServedModel | None]]) -> str:
        with self._lock:
            if key in self._s3_keys:
                return self._s3_keys[key][0]
        name, model = read()
        with self._lock:
            self._s3_keys[key] = (name, model)
            if model is not None:
                self._s3[name] = model
        return name

    def lookup(self, model_id: str) -> ServedModel | None:
        with self._lock:
            model = self._s3.get(model_id)
            hub = self._hub
            cached = model_id in self._hub_cache
            if model is None and cached:
                model = self._hub_cache[model_id]
        if model is not None or cached:
            return model
        folder = hub("model", model_id, "main") if hub is not None else None
        if folder is not None:
            read_file = _file_reader(lambda name: _read_path(folder / name))
            model = served_model_from_documents(model_id, _documents(read_file), read_file)
        else:
            from common.variants import variant_files

            files = variant_files(model_id)
            model = None if files is None else served_model_from_documents(model_id, files)
        with self._lock:
            self._hub_cache[model_id] = model
        return model


def _read_path(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


_REGISTRY = _Registry()


def use_hub(snapshot: SnapshotFolder | None) -> SnapshotFolder | None:
    """Read TGI's (and LMI's hub-id) models from this hub: ``snapshot(repo_type, repo_id,
    revision) -> folder | None`` (``HubApiServer.snapshot``); ``None`` forgets it (the
    catalogue's files are used then). Clears what was remembered; returns the hub used
    before (to put it back)."""
    return _REGISTRY.use_hub(snapshot)


def lookup(model_id: str | None) -> ServedModel | None:
    """The model served under ``model_id``: read from S3 for an LMI endpoint, else from the hub
    the stand-in serves (the default branch), else from the catalogue; ``None`` when unknown."""
    return _REGISTRY.lookup(model_id) if model_id else None


def render_chat(messages: list[dict[str, Any]], model_id: str | None, container: str) -> str:
    """Render a Messages API conversation as ``container``'s tokenizer would, BOS text included:
    with the template the container finds for the served model, or in the Llama 2 layout for
    a model the stand-in does not know.

    Raises:
        ValueError: the model is known but the container finds no template for it (TGI 3.3.6
            and a template only in ``chat_template.jinja``: "template not found"), or the
            template refuses the conversation.
    """
    from common.prompts import build_llama2_prompt, build_prompt

    served = lookup(model_id)
    if served is None:
        return build_llama2_prompt(messages, bos=True, allow_unsafe=True)
    template = served.template_for(container)
    if template is None:
        raise ValueError("template not found")
    return build_prompt(messages, template, bos_token=served.bos_token,
                        eos_token=served.eos_token, strip_bos=False)


def last_user_text(prompt: str, model_id: str | None) -> str | None:
    """The last user message of a text prompt in the served model's template layout, or
    ``None`` when it cannot be told (unknown model, a prompt of another layout).

    The template is rendered around marker texts: ``[user A, assistant B, user C]`` gives the
    text between two turns (what precedes a later user message) and the text after the last
    user message (end of turn and the assistant's header); the prompt's last user message is
    what lies between the last such separator and that ending.
    """
    from common.errors import PayloadError
    from common.prompts import build_prompt

    served = lookup(model_id)
    template = served.chat_template if served is not None else None
    if template is None:
        return None
    marks = ["\x00user-a\x00", "\x00assistant-b\x00", "\x00user-c\x00"]
    try:
        text = build_prompt([{"role": "user", "content": marks[0]},
                             {"role": "assistant", "content": marks[1]},
                             {"role": "user", "content": marks[2]}], template,
                            bos_token=served.bos_token, eos_token=served.eos_token,
                            strip_bos=False)
    except (PayloadError, ValueError):
        return None
    if any(text.count(mark) != 1 for mark in marks):
        return None
    between = text[text.index(marks[1]) + len(marks[1]):text.index(marks[2])]
    ending = text[text.index(marks[2]) + len(marks[2]):]
    if not between or not prompt.endswith(ending):
        return None
    body = prompt[:len(prompt) - len(ending)] if ending else prompt
    header = between
    while header and header not in body:
        header = header[1:]  # the first turn has the user header without a previous turn
    return body[body.rindex(header) + len(header):] if header else None


# --------------------------------------------------------------------------- LMI's S3 files


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> ``(bucket, key)``, else ``None``."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://"):].partition("/")
    return (bucket, key) if bucket else None


def _serving_properties(archive: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        member = next((m for m in tar.getmembers()
                       if m.name.rsplit("/", 1)[-1] == "serving.properties"), None)
        handle = tar.extractfile(member) if member is not None else None
        text = handle.read().decode("utf-8", "replace") if handle is not None else ""
    properties = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


def served_model_id(model_data_url: str | None, read_object: ReadObject) -> str | None:
    """Return the model id an LMI container with this ``ModelDataUrl`` serves, or ``None``;
    for weights in S3, remember what the uploaded tokenizer files say (:func:`lookup`).

    Args:
        model_data_url: the model's ``s3://.../model.tar.gz``.
        read_object: ``read_object(bucket, key) -> bytes | None`` (``None``: no such object).
    """
    location = split_s3_uri(model_data_url or "")
    archive = read_object(*location) if location else None
    if not archive:
        return None
    try:
        model_id = _serving_properties(archive).get("option.model_id", "")
    except (tarfile.TarError, OSError):
        return None
    weights = split_s3_uri(model_id)
    if weights is None:
        return model_id or None  # a hub id
    bucket, prefix = weights
    base = prefix.rstrip("/") + "/"

    def read() -> tuple[str, ServedModel | None]:
        read_file = _file_reader(lambda name: read_object(bucket, base + name))
        documents = _documents(read_file)
        name = (documents.get("config.json") or {}).get("_name_or_path")
        named = name if isinstance(name, str) and "/" in name and not name.startswith(
            ("/", ".")) else f"s3://{bucket}/{base}"
        # Without tokenizer files in S3 the name is all there is: the hub or the catalogue
        # may still know it (lookup).
        return named, served_model_from_documents(named, documents, read_file)

    return _REGISTRY.remember_s3((str(model_data_url), hashlib.sha1(archive).hexdigest()),
                                 read)
