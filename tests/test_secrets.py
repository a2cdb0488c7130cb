"""No token, key or secret in any file of the repository (notebooks included)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from secret_patterns import find_secrets

ROOT = Path(__file__).resolve().parents[1]


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_repository_holds_no_credentials():
    files = _repository_files()
    assert any(f.suffix == ".py" for f in files), "the file listing found no sources"
    offenders = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(ROOT)}: {hit}" for hit in find_secrets(text)]
    assert not offenders, "credential-like strings found:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "text",
    [
        "token = 'hf_" + "aB3" * 12 + "'",
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    ],
)
def test_patterns_catch_real_looking_credentials(text):
    assert find_secrets(text)


@pytest.mark.parametrize("text", ["HF_TOKEN=hf_dummy_local_token", "AWS_ACCESS_KEY_ID=testing"])
def test_patterns_ignore_the_projects_dummy_values(text):
    assert find_secrets(text) == []
