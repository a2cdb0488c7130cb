"""Which model an LMI endpoint of the stand-in serves, read the way LMI reads it.

An LMI recipe configures its container with ``serving.properties`` inside the model's
``model.tar.gz`` (``ModelDataUrl``), whose ``option.model_id`` is the S3 prefix of the uploaded
weights (or a hub id). LMI loads the model -- and its tokenizer and chat template -- from
there; the stand-in reads the same files from moto's S3 to learn which model it is (the
``_name_or_path`` of the uploaded ``config.json``), so the Messages API route renders that
model's template and the replay ends with that model's end token.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable

__all__ = ["served_model_id", "split_s3_uri"]

ReadObject = Callable[[str, str], "bytes | None"]


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
    """Return the model id an LMI container with this ``ModelDataUrl`` serves, or ``None``.

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
    config = read_object(bucket, prefix.rstrip("/") + "/config.json")
    try:
        name = json.loads(config or b"{}").get("_name_or_path")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None
