"""Helpers the stand-in tests share: unique resource names and waiting for a state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

WAIT_S = 30.0  # a deadline for state changes that take about a second; never a measurement


def unique_name(prefix: str) -> str:
    """Return ``prefix`` plus 8 random hex digits (names are unique per test)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> object:
    """Poll ``condition`` every 50 ms; return its first truthy value.

    Raises:
        AssertionError: naming ``what``, when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")
