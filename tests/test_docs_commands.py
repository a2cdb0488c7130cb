"""Every command the README and the docs pages show exists, with the flags they give it.

The commands are read from fenced ``bash`` blocks (continued lines joined, ``&&``/``;``/``|``
and ``$(...)`` split into single commands) and from inline code that starts like a command
(``python -m ...``, ``.venv/bin/python ...``, ``bash scripts/...``). A page about one command
(the stand-in, the chat relay, ``new``) may also name that command's flags on their own
(```--quota TYPE=N```); those are checked against that command. Each command's ``--help``
is run once: its subcommand must be one it lists, and every ``--flag`` must appear in the help
of the command it is given to. Nothing is run but ``--help``.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
COMMAND_START = re.compile(r"^(?:\S*python3?|bash) ")
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
# Pages about one command: flags named alone in their prose belong to it (or its subcommand).
PAGE_COMMANDS = {
    "README.md": [("-m", "common.local", "demo")],
    "local-stand-in.md": [("-m", "common.local"), ("-m", "common.local", "demo")],
    "chat.md": [("-m", "common.chat", "serve")],
    "variants.md": [("-m", "common.notebooks", "new")],
}
NOT_RUN = {(".ci/run",): "runs the whole suite; it takes no arguments"}


def _split_commands(text: str) -> list[list[str]]:
    """The simple commands in a shell snippet, as token lists."""
    text = text.replace("\\\n", " ")
    commands: list[list[str]] = []
    for inner in re.findall(r"\$\(([^()]*)\)", text):
        commands += _split_commands(inner)
    text = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTION", text)
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        current: list[str] = []
        for token in [*tokens, "&&"]:
            if token in {"&&", "||", ";", "|"}:
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def _commands(page: Path) -> list[tuple[str, list[str]]]:
    """``(where, tokens)`` of every command the page shows."""
    text = page.read_text(encoding="utf-8")
    found = []
    for _, block in FENCE.findall(text):
        found += [(f"{page.name} (code block)", c) for c in _split_commands(block)]
    for span in INLINE.findall(FENCE.sub("", text)):
        if COMMAND_START.match(span):
            found += [(f"{page.name}: `{span}`", c) for c in _split_commands(span)]
    return found


def _lone_flags(page: Path) -> list[tuple[str, str]]:
    """``(where, flag)`` of every flag a page about one command names on its own."""
    if page.name not in PAGE_COMMANDS:
        return []
    spans = INLINE.findall(FENCE.sub("", page.read_text(encoding="utf-8")))
    return [(f"{page.name}: `{span}`", span.split()[0].split("=", 1)[0]) for span in spans
            if FLAG.fullmatch(span.split()[0].split("=", 1)[0])]


def _program(tokens: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """The program a command runs (``("-m", module)``, a script path) and its arguments."""
    head = tokens[0]
    if head.endswith(("python", "python3")) and len(tokens) > 1:
        if tokens[1] == "-m":
            return ("-m", tokens[2]), tokens[3:]
        if tokens[1].endswith(".py"):
            return (tokens[1],), tokens[2:]
    if head == "bash" and len(tokens) > 1 and not tokens[1].startswith("-"):
        return (tokens[1],), tokens[2:]
    return None  # git, jupyter, eval ...: not ours


@functools.cache
def _help(program: tuple[str, ...]) -> str:
    if program[0].endswith(".sh") or program[0].startswith(".ci/"):
        argv = ["bash", *program, "--help"]
    else:
        argv = [sys.executable, *program, "--help"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False)
    return done.stdout + done.stderr


def _subcommands(help_text: str) -> set[str]:
    """The subcommands a usage line lists (``{serve,env,demo}``, or ``[demo|test]``), not the
    choices of a flag (``--backend {replay,model}``)."""
    usage = help_text.split("\n\n", 1)[0]
    found: set[str] = set()
    for match in re.finditer(r"\{([a-z][\w-]*(?:,[a-z][\w-]*)*)\}|\[([a-z]+(?:\|[a-z]+)+)\]",
                             usage):
        before = (usage[:match.start()].split() or [""])[-1]
        # Not the value of a flag such as `[--backend {replay,model}]` (but `[-h] {a,b}` is).
        if not before.lstrip("[").startswith("-") or before.endswith("]"):
            found |= set(re.split(r"[,|]", match.group(1) or match.group(2)))
    return found


def _flags(arguments: list[str]) -> list[str]:
    flags = []
    for argument in arguments:
        argument = argument.strip("[]")
        if argument.startswith("--"):
            flags.append(argument.split("=", 1)[0].split("]", 1)[0])
    return flags


COMMANDS = [(where, tokens) for page in PAGES for where, tokens in _commands(page)
            if _program(tokens) is not None]
LONE_FLAGS = [(page.name, where, flag) for page in PAGES for where, flag in _lone_flags(page)]


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 20, [where for where, _ in COMMANDS]
    programs = {_program(tokens)[0] for _, tokens in COMMANDS}
    for program in [("-m", "common.local"), ("-m", "common.notebooks"),
                    ("-m", "common.chat"), ("scripts/setup.sh",), ("-m", "pytest")]:
        assert program in programs, program


@pytest.mark.parametrize(("where", "tokens"), COMMANDS,
                         ids=[" ".join(t)[:70] for _, t in COMMANDS])
def test_each_command_and_flag_exists(where, tokens):
    program, arguments = _program(tokens)
    if program in NOT_RUN:
        assert (ROOT / program[0]).exists(), f"{where}: {program[0]} does not exist"
        assert not arguments, f"{where}: {NOT_RUN[program]}"
        return
    help_text = _help(program)
    assert "usage:" in help_text, f"{where}: `{' '.join(program)} --help` failed:\n{help_text}"
    subcommands = _subcommands(help_text)
    if subcommands and arguments and not arguments[0].startswith("-"):
        assert arguments[0] in subcommands, (
            f"{where}: {arguments[0]!r} is not a subcommand of {' '.join(program)} "
            f"({sorted(subcommands)})")
        if not program[0].endswith(".sh"):
            program, arguments = (*program, arguments[0]), arguments[1:]
            help_text = _help(program)
    for flag in _flags(arguments):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), (
            f"{where}: {' '.join(program)} has no {flag} (see its --help)")


@pytest.mark.parametrize(("page", "where", "flag"), LONE_FLAGS,
                         ids=[f"{page}-{flag}" for page, _, flag in LONE_FLAGS])
def test_each_flag_a_page_names_on_its_own_exists(page, where, flag):
    helps = [_help(program) for program in PAGE_COMMANDS[page]]
    assert any(re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) for text in helps), (
        f"{where}: no {flag} in the --help of {PAGE_COMMANDS[page]}")


def test_a_flag_that_does_not_exist_is_caught():
    help_text = _help(("-m", "common.local"))
    assert "--quota" in help_text and "--no-such-flag" not in help_text
    assert _subcommands(help_text) == {"serve", "env", "demo"}
    assert _subcommands(_help(("scripts/setup.sh",))) == {"demo", "test"}
    assert _flags(["[--port", "8080]", "--quota=ml.g5.2xlarge=0", "value"]) == [
        "--port", "--quota"]
    assert _split_commands('eval "$(python -m common.local env /tmp/x.json)" # note') == [
        ["python", "-m", "common.local", "env", "/tmp/x.json"], ["eval", "SUBSTITUTION"]]


def test_the_readme_is_short_and_puts_the_studio_path_first():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[:3] == ["Run the recipes in SageMaker Studio",
                            "Try it locally first (no AWS account)", "Run the tests"]
    assert "python -m pytest" in text and "bash .ci/run" in text
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in text, f"the README does not link {page.name}"


def test_the_readme_prices_are_the_presets():
    from common.presets import get_preset

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = r"^\| (TGI|LMI) \S+ \| Llama-2-(\d+b)-chat\S* \| (ml\.\S+), .*~\$([\d.]+)/h \|"
    rows = re.findall(row, text, re.M)
    assert len(rows) == 6
    for container, size, instance, price in rows:
        preset = get_preset(size, container.lower())
        assert instance == preset.instance_type
        assert float(price) == preset.instance.approx_usd_per_hour


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_each_docs_page_starts_with_what_a_reader_does_with_it(page):
    title, _, rest = page.read_text(encoding="utf-8").partition("\n\n")
    assert title.startswith("# ")
    assert re.match(r"(Read this|Use this page)\b", rest), rest[:80]
