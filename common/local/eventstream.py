"""Encoder for the ``application/vnd.amazon.eventstream`` framing SageMaker streams in.

botocore ships the decoder (``botocore.eventstream.EventStreamBuffer``) but no encoder; this is
the inverse, kept to exactly what ``InvokeEndpointWithResponseStream`` sends.

One message::

    [total length: uint32][headers length: uint32][prelude CRC32: uint32]
    [headers: name-length uint8, name, type 7 (string), value-length uint16, value]...
    [payload]
    [message CRC32: uint32]

All integers are big-endian; the prelude CRC covers the first 8 bytes, the message CRC every
byte before it. SageMaker's events (botocore service model ``sagemaker-runtime``):

* ``PayloadPart`` -- ``:message-type`` ``event``, ``:event-type`` ``PayloadPart``, the bytes as
  the payload (:func:`encode_payload_part`);
* ``ModelStreamError`` (with ``ErrorCode`` ``ModelInvocationTimeExceeded`` or ``StreamBroken``)
  and ``InternalStreamFailure`` -- ``:message-type`` ``exception``, ``:exception-type`` the
  name, a JSON payload ``{"Message": ...}`` (:func:`encode_exception`). botocore raises them
  as ``botocore.exceptions.EventStreamError`` while the caller iterates.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "encode_event",
    "encode_exception",
    "encode_message",
    "encode_payload_part",
]

MAX_HEADERS_LENGTH = 128 * 1024
"""The most header bytes botocore's decoder accepts in one message."""
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024
"""The most payload bytes botocore's decoder accepts in one message."""

_STRING_TYPE = 7
_PRELUDE = struct.Struct("!II")
_UINT32 = struct.Struct("!I")


def _encode_header(name: str, value: str) -> bytes:
    name_bytes = name.encode("utf-8")
    value_bytes = value.encode("utf-8")
    if not 0 < len(name_bytes) < 256:
        raise ValueError(f"header name {name!r} must be 1-255 bytes of UTF-8")
    if len(value_bytes) > 0xFFFF:
        raise ValueError(f"header {name!r}: value longer than 65535 bytes")
    return (
        struct.pack("!B", len(name_bytes)) + name_bytes
        + struct.pack("!BH", _STRING_TYPE, len(value_bytes)) + value_bytes
    )


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """Encode one event-stream message with string-typed headers.

    Args:
        headers: header names and values (sent as type 7, UTF-8 strings), in order.
        payload: the message body.

    Returns:
        The message bytes: prelude, prelude CRC32, headers, payload, message CRC32.

    Raises:
        ValueError: a header name is empty or over 255 bytes, a value is over 65535 bytes,
            or the headers / payload exceed what botocore's decoder accepts.
    """
    header_bytes = b"".join(_encode_header(name, value) for name, value in headers.items())
    return _encode_with_headers(header_bytes, payload)


def _encode_with_headers(header_bytes: bytes, payload: bytes) -> bytes:
    """One message from its encoded headers and its payload (the checks and the CRCs)."""
    if len(header_bytes) > MAX_HEADERS_LENGTH:
        raise ValueError(f"headers of {len(header_bytes)} bytes exceed {MAX_HEADERS_LENGTH}")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    total = _PRELUDE.size + _UINT32.size + len(header_bytes) + len(payload) + _UINT32.size
    prelude = _PRELUDE.pack(total, len(header_bytes))
    message = prelude + _UINT32.pack(zlib.crc32(prelude)) + header_bytes + bytes(payload)
    return message + _UINT32.pack(zlib.crc32(message))


_PAYLOAD_PART_HEADERS = b"".join(_encode_header(name, value) for name, value in (
    (":event-type", "PayloadPart"),
    (":content-type", "application/octet-stream"),
    (":message-type", "event"),
))
"""A ``PayloadPart``'s headers, encoded once: the stand-in sends one such message a token."""


def encode_payload_part(data: bytes) -> bytes:
    """Encode a ``PayloadPart`` event carrying ``data`` (botocore yields
    ``{"PayloadPart": {"Bytes": data}}``).

    Raises:
        ValueError: ``data`` is larger than botocore's decoder accepts.
    """
    return _encode_with_headers(_PAYLOAD_PART_HEADERS, data)


encode_event = encode_payload_part
"""Alias of :func:`encode_payload_part` (the name in the module contract)."""


def encode_exception(name: str, message: str, **fields: Any) -> bytes:
    """Encode an exception event such as ``ModelStreamError`` or ``InternalStreamFailure``.

    Args:
        name: the exception type (``:exception-type``), a member of the stream's shape for
            botocore to parse its fields.
        message: the human-readable message (``Message`` in the JSON payload).
        **fields: further payload members, e.g. ``ErrorCode="StreamBroken"``.

    Returns:
        The message bytes; botocore raises ``EventStreamError`` with ``Error.Code`` ``name``
        and ``Error.Message`` ``message`` when it reads them.

    Raises:
        ValueError: ``name`` is empty or too long for a header value.
    """
    payload = json.dumps({"Message": message, **fields}, ensure_ascii=False).encode("utf-8")
    return encode_message(
        {
            ":exception-type": name,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
