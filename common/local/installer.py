"""Installing requirements with uv where it runs, with pip where it does not.

Run by path, it prints the ``export`` lines that give uv the package sources pip is
configured with (``scripts/setup.sh`` does this before the project is installed, so it
imports nothing outside the standard library).

uv reads ``UV_*`` variables and ``uv.toml``, never ``pip.conf`` or ``PIP_*``. A machine whose
pip finds packages through its configuration -- a company mirror as ``index-url``, a folder
of local wheels as ``find-links`` (this project's CPU build of torch), a ``constraint``
file, a ``cert`` for a TLS-intercepting proxy -- would see uv resolve differently from pip,
or fail. ``scripts/setup.sh`` runs this file with the new environment's
Python (``eval "$(.venv/bin/python common/local/installer.py)"``) before it installs with uv,
and :func:`install_command` (the model backend's installer) does the same, so both installers
see the same sources.

pip's precedence is kept: ``PIP_*`` variables over the ``install`` section over ``global``
(``pip config list`` has already merged the files). A ``UV_*`` variable the user has set
wins over pip's value.

pip's ``extra-index-url`` is *not* passed on. uv takes all versions of a package from the
first index that has it (its guard against dependency confusion), so a partial mirror as an
extra index would pin old releases (here a local mirror's botocore 1.43.106 breaks
aiobotocore's pin); pip's behaviour, ``UV_INDEX_STRATEGY=unsafe-best-match``, made the
notebooks' requirements install 2x slower on this project's machine (70 s against 32 s) and
is the strategy uv's documentation calls unsafe. Whoever needs an extra index for uv sets
``UV_INDEX`` themselves, or installs with pip (``SETUP_INSTALLER=pip``).
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["find_uv", "install_command", "main", "parse_pip_config", "pip_config_environment",
           "uv_environment"]

# pip option -> (uv variable, separator uv expects between several values)
OPTIONS: dict[str, tuple[str, str]] = {
    "index-url": ("UV_DEFAULT_INDEX", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}
# A section's rank: a later one wins (pip: environment over `install` over `global`).
_SECTION_RANK = {"global": 0, "install": 1, ":env:": 2}


def parse_pip_config(listing: str) -> dict[str, list[str]]:
    """Read ``pip config list`` output into ``{option: [values]}`` with pip's precedence.

    Lines look like ``global.find-links='/opt/wheels'`` or ``:env:.cert='/etc/ssl/x.pem'``;
    a value may hold several whitespace-separated entries (``find-links``). Sections
    other than ``global``, ``install`` and the environment are ignored.

    Returns:
        Each option in :data:`OPTIONS` that is set, with its entries, from the section that
        wins.
    """
    best: dict[str, tuple[int, list[str]]] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        section, _, option = key.strip().rpartition(".")
        if option not in OPTIONS or section not in _SECTION_RANK:
            continue
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        entries = str(value).split()
        rank = _SECTION_RANK[section]
        if entries and (option not in best or rank >= best[option][0]):
            best[option] = (rank, entries)
    return {option: entries for option, (_, entries) in best.items()}


def uv_environment(pip_options: Mapping[str, list[str]],
                   environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Return the variables that make uv use ``pip_options``' sources.

    Variables already in ``environ`` are left out (the user's own uv settings win).
    """
    env: dict[str, str] = {}
    for option, entries in pip_options.items():
        variable, separator = OPTIONS[option]
        if variable == "SSL_CERT_FILE":
            entries = entries[:1]
        if variable not in environ:
            env[variable] = separator.join(entries)
    return env


def pip_config_environment(python: str = sys.executable) -> dict[str, str]:
    """Return :func:`uv_environment` for ``python``'s pip configuration.

    Empty when pip is missing there or has no configuration (uv's defaults apply).
    """
    result = subprocess.run([python, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {}
    return uv_environment(parse_pip_config(result.stdout))


def find_uv(python: str = sys.executable) -> str | None:
    """Return the uv next to ``python`` (its environment's ``bin``), else uv on PATH, else None."""
    beside = Path(python).parent / ("uv.exe" if os.name == "nt" else "uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def install_command(python: str, arguments: Sequence[str], installer: str = "auto"
                    ) -> tuple[list[str], dict[str, str]]:
    """Return the command that installs ``arguments`` into ``python``'s environment.

    Args:
        python: the environment's interpreter.
        arguments: what follows ``pip install`` (``["-r", "requirements-model.txt"]``).
        installer: ``"uv"``, ``"pip"``, or ``"auto"`` (uv when :func:`find_uv` finds one).

    Returns:
        ``(argv, environment)``: the command, and the variables to add to the environment
        it runs in (pip's package sources, for uv; nothing for pip).

    Raises:
        ValueError: an unknown ``installer``, or ``"uv"`` where no uv is found.
    """
    if installer not in ("auto", "uv", "pip"):
        raise ValueError(f"installer must be auto, uv or pip, not {installer!r}")
    uv = find_uv(python) if installer != "pip" else None
    if installer == "uv" and uv is None:
        raise ValueError(f"uv was not found next to {python} nor on PATH: install it with "
                         f"`{python} -m pip install uv`, or use the pip installer")
    if uv is None:
        return [python, "-m", "pip", "install", *arguments], {}
    return ([uv, "pip", "install", "--python", python, *arguments],
            pip_config_environment(python))


def main() -> int:
    """Print ``export`` lines for the running Python's pip configuration; returns 0."""
    for name, value in pip_config_environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
