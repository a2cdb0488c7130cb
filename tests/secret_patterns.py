"""Credential patterns the secrets tests look for (Hugging Face and AWS)."""

from __future__ import annotations

import re

# Each pattern matches a real-looking credential; the project's dummy values
# (hf_dummy_local_token, "testing") are deliberately too short or of the wrong shape.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"(?i)aws_secret_access_key\W{0,4}[=:]\W{0,4}[A-Za-z0-9/+]{40}\b"
    ),
}


def find_secrets(text: str) -> list[str]:
    """Return ``"<kind>: <masked match>"`` for every credential-like string in ``text``."""
    found = []
    for kind, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(0)
            found.append(f"{kind}: {value[:6]}...{value[-2:]}")
    return found
