"""The live stream view in a real browser: JupyterLab + headless Chromium, driven by Playwright.

A recipe's deploy notebook and then its inference notebook are opened in JupyterLab (served
from a temporary copy of the recipe folder, on 127.0.0.1, with a token made up here) and run
with the menu's *Run > Run All Cells*, exactly as a user runs them, against the session's
local stand-in. The test then reads the DOM: the ``common.show_stream`` widget must hold the
replayed answer (newlines and emoji intact), must have grown in place while it streamed, and
its footer must end with the final figures.

It is skipped only when Chromium (``/usr/bin/chromium``; ``.ci/run`` installs Debian's
``chromium``) or the ``playwright`` package is missing. Playwright drives that system
Chromium: no browser is ever downloaded.

A screenshot of the view is written to the test's temporary folder; run the test with
``RECIPES_UPDATE_SCREENSHOT=1`` to also refresh ``docs/live-stream-view.png``::

    RECIPES_UPDATE_SCREENSHOT=1 python -m pytest tests/test_browser.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.local.stack import LocalStack
from common.notebooks.generator import REPO_ROOT, recipe_paths

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # The stand-in's HTTPS_PROXY is in the environment; the browser talks to 127.0.0.1 only.
    "--no-proxy-server",
]
SCREENSHOT_ENV = "RECIPES_UPDATE_SCREENSHOT"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "live-stream-view.png"
RECIPE = ("tgi", "7b")
# The replay backend's pace while the notebooks run: like a 7B model, so that the view is
# seen growing (the session's stand-in is unpaced for the other tests; restored after).
PACE = {"ttft_s": 0.06, "tokens_per_s": 60.0}
NOTEBOOK_TIMEOUT_MS = 150_000
RUN_ALL_ATTEMPTS = 3
REPLAYED = ("EARLYB1RD", "AnyCloud Internet Service", "🚀")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is absent (Debian: apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is absent (pip install -r requirements-test.txt)"),
]

# Records every value each stream view's text takes, as the DOM changes (installed before
# "Run All"), so that the test can see the answer growing in place.
_WATCH_VIEWS = """
() => {
  window.__streamTexts = [];
  const observer = new MutationObserver(() => {
    document.querySelectorAll('.llama2-stream-text').forEach((el, i) => {
      const seen = (window.__streamTexts[i] = window.__streamTexts[i] || []);
      const text = el.textContent;
      if (seen[seen.length - 1] !== text) seen.push(text);
    });
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""

# The notebook in the current tab (the other tabs' panels stay in the DOM, hidden).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# Its code cells' prompts: "[3]:" ran, "[*]:" running or queued, "[ ]:" not run.
_PROMPTS = f"""
() => Array.from(document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputPrompt'))
          .map((el) => el.textContent.trim())
"""
_STARTED = f"() => ({_PROMPTS})().some((p) => p !== '[ ]:' && p !== '')"
_SETTLED = f"() => !({_PROMPTS})().some((p) => p.startsWith('[*]'))"
_STARTED_OR_DIALOG = f"() => ({_STARTED})() || document.querySelector('.jp-Dialog') !== null"
_HAS_KERNEL = f"""
() => {{
  const name = document.querySelector('{PANEL} .jp-Toolbar-kernelName');
  const text = name ? name.textContent.trim() : '';
  return text !== '' && text !== 'No Kernel';
}}
"""


# --------------------------------------------------------------------------- JupyterLab


@dataclass
class Lab:
    """A running JupyterLab server: its base URL, token and content root."""

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, relative: Path) -> str:
        """The URL that opens ``relative`` (under :attr:`root`) alone in a fresh workspace.

        A workspace of its own (``?reset``) keeps JupyterLab from restoring the tabs of the
        notebook opened before, so the page holds one notebook panel.
        """
        workspace = relative.stem.split("-", 1)[0] + "-" + secrets.token_hex(4)
        return (f"{self.url}/lab/workspaces/{workspace}/tree/{relative.as_posix()}"
                f"?reset&token={self.token}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (for failure messages)."""
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _copy_recipe(root: Path) -> tuple[Path, Path]:
    """Copy the recipe's two notebooks into ``root`` at their repository paths.

    The deploy notebook's first cell runs ``%pip install -q -r ../../requirements.txt``; the
    copy of that file leaves out its last line, ``-e ../..``, because ``common`` is already
    installed (editable) in the environment that runs this test, and from the copy it would
    point at the temporary folder instead.
    """
    deploy, inference = recipe_paths(*RECIPE)
    for source in (deploy, inference):
        target = root / source.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    kept = [line for line in lines if not line.strip().startswith("-e")]
    (root / "requirements.txt").write_text("\n".join(kept) + "\n")
    return deploy.relative_to(REPO_ROOT), inference.relative_to(REPO_ROOT)


def _write_lab_settings(settings: Path) -> None:
    """User settings that keep the run quiet, offline and side-effect free."""
    files: dict[str, dict[str, Any]] = {
        # No network: no news feed, no update check.
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                       "checkForUpdates": False},
        # Never write the executed notebook back (even to the temporary copy).
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        # Keep every cell in the DOM, so that the prompts and outputs can be read.
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }
    for name, values in files.items():
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _lab_environment(stack_env: dict[str, str], home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(stack_env)
    env.update({
        "RECIPES_CLEAN_UP": "1",  # the inference notebook's guarded clean-up cell deletes
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("COMMON_DISPLAY", None)  # "auto": the kernel must choose the widget by itself
    # The notebook tests' throwaway kernelspecs (tests/kernel_env.py, on JUPYTER_PATH) stay
    # out of this JupyterLab: with a second Python kernel to offer, it may ask which one to
    # start ("Select Kernel"), and the dialog takes every click.
    env.pop("JUPYTER_PATH", None)
    return env


@contextmanager
def _jupyter_lab(stack: LocalStack, workdir: Path) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1 for the stand-in; stop it and its kernels afterwards."""
    root = workdir / "root"
    root.mkdir()
    home = workdir / "jupyter"
    settings = home / "user-settings"
    _write_lab_settings(settings)
    port = _free_port()
    token = secrets.token_hex(24)
    log = workdir / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'ws'}",
        "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
        "--ServerApp.port_retries=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=_lab_environment(stack.env, home), cwd=root,
                                   start_new_session=True)
        try:
            _wait_until_up(lab, process)
            yield lab
        finally:
            _stop_lab(lab, process)


def _wait_until_up(lab: Lab, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{lab.url}/api/status",
                                     headers={"Authorization": f"token {lab.token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{lab.log_tail()}")


def _stop_lab(lab: Lab, process: subprocess.Popen[bytes]) -> None:
    """Shut JupyterLab down (its kernels with it); kill its process group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # jupyter_server shuts its kernels down first
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# --------------------------------------------------------------------------- the browser


@contextmanager
def _paced(stack: LocalStack) -> Iterator[None]:
    """Pace the session's replay backend like a 7B model for the duration; restore it."""
    backend = stack.backend
    saved = {name: getattr(backend, name) for name in PACE if hasattr(backend, name)}
    for name in saved:
        setattr(backend, name, PACE[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(backend, name, value)


def _answer_dialog(page: Any, lab: Lab) -> None:
    """Answer JupyterLab's "Select Kernel" dialog as a user would; fail on any other dialog.

    "Run All" clicked while the notebook's session has no kernel yet makes JupyterLab ask
    which kernel to start, with the notebook's own kernel preselected: a user presses
    *Select*. Any other dialog fails the test with its text (it would take every click).
    """
    dialog = page.locator(".jp-Dialog")
    if not dialog.count():
        return
    text = dialog.first.inner_text()
    if text.startswith("Select Kernel") and "Python 3 (ipykernel)" in text:
        dialog.first.locator("button.jp-mod-accept").click()
        page.wait_for_selector(".jp-Dialog", state="detached", timeout=15_000)
        return
    page.screenshot(path=str(lab.log.with_name("dialog.png")))
    pytest.fail(f"JupyterLab shows a dialog:\n{text}\nJupyterLab log:\n{lab.log_tail(15)}")


def _run_all(page: Any, lab: Lab, notebook: Path, *, watch: bool = False,
             during: Any = None) -> None:
    """Open ``notebook`` and run it with *Run > Run All Cells*; fail on a cell's error.

    ``during(page)``, if given, is called once the cells have started, before waiting for
    them to finish (to click in a running cell's output)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.goto(lab.notebook_url(notebook))
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_selector(f"{PANEL} .jp-Spinner", state="detached", timeout=60_000)
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=60_000)
    # The session names its kernel in the toolbar once it has one; "Run All" before that
    # opens the "Select Kernel" dialog (answered below if it opens all the same).
    page.wait_for_function(_HAS_KERNEL, timeout=60_000)
    if watch:
        page.evaluate(_WATCH_VIEWS)
    # "Run All" right after the kernel reports idle can meet a session that is not attached
    # yet; JupyterLab then skips every cell without a word. Try again (nothing ran yet).
    for attempt in range(1, RUN_ALL_ATTEMPTS + 1):
        # The notebook must be the current widget: click a code cell's prompt in sight (not
        # a cell's body: a markdown cell may hold a link).
        _answer_dialog(page, lab)
        page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt >> visible=true").first.click()
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']"
                     ":not(.lm-mod-disabled)").click()
        try:
            page.wait_for_function(_STARTED_OR_DIALOG, timeout=15_000)
            if page.locator(".jp-Dialog").count():
                _answer_dialog(page, lab)  # the cells run once the kernel is chosen
                page.wait_for_function(_STARTED, timeout=15_000)
            break
        except PlaywrightTimeoutError:
            if attempt == RUN_ALL_ATTEMPTS:
                page.screenshot(path=str(lab.log.with_name(f"not-started-{notebook.stem}.png")))
                pytest.fail(f"{notebook.name}: Run All started no cell in {attempt} attempts "
                            f"(screenshot next to {lab.log}).\n{lab.log_tail(15)}")
    if during is not None:
        during(page)
    page.wait_for_function(_SETTLED, timeout=NOTEBOOK_TIMEOUT_MS, polling=250)
    prompts = page.evaluate(_PROMPTS)
    not_run = [i for i, p in enumerate(prompts) if not p[1:-2].strip().isdigit()]
    if not_run:
        failed = page.locator(f"{PANEL} .jp-CodeCell").nth(max(not_run[0] - 1, 0))
        pytest.fail(f"{notebook.name}: Run All stopped; code cells {not_run} did not run. The "
                    f"last cell that ran:\n{failed.inner_text()[-4000:]}\n"
                    f"JupyterLab log:\n{lab.log_tail(15)}")


def _launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _screenshot(page: Any, view: Any, path: Path) -> None:
    """Screenshot the page with the first stream view (and its code cell) in sight."""
    page.keyboard.press("Escape")
    page.keyboard.press("Control+b")  # fold the file browser away: more room for the answer
    view.evaluate("(el) => el.closest('.jp-CodeCell').scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)
    page.screenshot(path=str(path))


# --------------------------------------------------------------------------- the test


def test_live_stream_view_in_jupyterlab(local_stack: LocalStack, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    if importlib.util.find_spec("jupyterlab") is None:
        pytest.fail("jupyterlab is not installed: pip install -r requirements-test.txt")
    screenshot = tmp_path / "live-stream-view.png"
    with _jupyter_lab(local_stack, tmp_path) as lab, _paced(local_stack), \
            sync_playwright() as playwright:
        deploy, inference = _copy_recipe(lab.root)
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _run_all(page, lab, deploy)
            _run_all(page, lab, inference, watch=True)

            views = page.locator(f"{PANEL} .llama2-stream")
            assert views.count() >= 1, "no stream view (.llama2-stream) in the notebook"
            first = views.first
            text = first.locator(".llama2-stream-text").inner_text()
            footer = first.locator(".llama2-stream-metrics").inner_text()
            history = page.evaluate("() => window.__streamTexts || []")
            errors = page.locator(".llama2-stream-error").count()
            _screenshot(page, first, screenshot)
        finally:
            browser.close()

    for expected in REPLAYED:
        assert expected in text, f"{expected!r} missing from the streamed text: {text!r}"
    assert "\nHi there,\n" in text, f"newlines were lost in the view: {text!r}"
    assert "TTFT" in footer and "tokens/s" in footer, footer
    assert "so far" not in footer and "incomplete" not in footer, (
        f"the footer does not show the final figures: {footer!r}")
    assert errors == 0, "a stream view shows an error"
    # It grew in place: the view held proper beginnings of the answer before the whole of it.
    seen = history[0] if history else []
    final = seen[-1] if seen else ""
    partial = [value for value in seen[:-1] if value and final.startswith(value)
               and value != final]
    assert final.strip() == text.strip(), (final, text)
    assert partial, f"the view never showed a partial answer; its values were {seen!r}"
    assert screenshot.stat().st_size > 0
    if os.environ.get(SCREENSHOT_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
