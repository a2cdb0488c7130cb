"""The demo's terminal shows the story; kernel warnings and the proxy's access log go to a file.

The demo command (``python -m common.local demo``) runs in a child process (it starts its own
stand-in) with two tiny notebooks in place of a recipe's pair, so each run takes seconds:
the first prints a line, the second opens a tunnel through the control plane proxy (as a
notebook's ``%pip`` does), which writes an access-log line.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from common.local.logfile import PROXY_LOGGER, BackgroundLog

ROOT = Path(__file__).resolve().parents[1]

TUNNEL_CELL = """\
import http.client, os, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
target = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"])
connection = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=30)
connection.set_tunnel(target.hostname, target.port)
connection.connect()
connection.close()
print("story: the tunnel opened")
"""

RUN_DEMO = """\
import sys
from pathlib import Path
from common.local import __main__ as cli, demo
pair = (Path(sys.argv[1]), Path(sys.argv[2]))
demo.notebook_pair = lambda container, size: pair
sys.exit(cli.main(["demo", "--endpoint-delay", "0", *sys.argv[3:]]))
"""

KERNEL_WARNS_ABOUT_TCP = "without encryption" in inspect.getsource(
    __import__("ipykernel.kernelapp", fromlist=["IPKernelApp"]))


def _notebooks(tmp_path: Path) -> list[str]:
    paths = []
    for name, source in (("first.ipynb", 'print("story: first notebook")'),
                         ("second.ipynb", TUNNEL_CELL)):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def _run_demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "HF_")) and k.lower() not in {"https_proxy",
                                                                      "http_proxy"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", RUN_DEMO, *_notebooks(tmp_path), *options],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_the_demo_terminal_shows_the_story_and_the_log_file_the_rest(tmp_path):
    log = tmp_path / "demo.log"
    done = _run_demo(tmp_path, "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    terminal = done.stdout + done.stderr
    assert f"Kernel and proxy logs: {log} (--verbose shows them here)." in done.stdout
    assert "story: first notebook" in done.stdout
    assert "story: the tunnel opened" in done.stdout
    assert "Demo finished:" in done.stdout
    assert '"CONNECT 127.0.0.1:' not in terminal
    assert "[IPKernelApp]" not in terminal
    written = log.read_text()
    assert '"CONNECT 127.0.0.1:' in written and '" 200 -' in written
    if KERNEL_WARNS_ABOUT_TCP:
        assert "[IPKernelApp] WARNING | Kernel is running over TCP without encryption" in written


def test_verbose_brings_the_kernel_and_proxy_logs_back_to_the_terminal(tmp_path):
    log = tmp_path / "demo.log"
    done = _run_demo(tmp_path, "--verbose", "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    terminal = done.stdout + done.stderr
    assert "Kernel and proxy logs: shown here (--verbose)." in done.stdout
    assert "story: the tunnel opened" in done.stdout
    assert '"CONNECT 127.0.0.1:' in terminal
    if KERNEL_WARNS_ABOUT_TCP:
        assert "Kernel is running over TCP without encryption" in terminal
    assert not log.exists()


def test_background_log_routes_the_proxy_logger_and_restores_it(tmp_path):
    logger = logging.getLogger(PROXY_LOGGER)
    before = (logger.level, logger.propagate, list(logger.handlers))
    path = tmp_path / "sub" / "background.log"
    with BackgroundLog(path) as background:
        assert background.kernel_output is not None and not background.kernel_output.closed
        logger.info("127.0.0.1 - - [now] %s", '"CONNECT pypi.org:443 HTTP/1.0" 200 -')
        background.kernel_output.write("kernel line\n")
    assert path.read_text() == ('127.0.0.1 - - [now] "CONNECT pypi.org:443 HTTP/1.0" 200 -\n'
                                "kernel line\n")
    assert (logger.level, logger.propagate, list(logger.handlers)) == before

    class Terminal(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass

    terminal = Terminal()
    other = logging.getLogger("common.local.scaling")
    other_before = (other.level, other.propagate, list(other.handlers))
    with BackgroundLog(path, verbose=True, terminal=terminal,
                       loggers=(PROXY_LOGGER, other.name)) as background:
        assert background.kernel_output is None and background.path is None
        logger.info("shown")
        other.info("copies: 1 -> 2")
    assert "".join(terminal) == "shown\nINFO common.local.scaling: copies: 1 -> 2\n"
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    assert (other.level, other.propagate, list(other.handlers)) == other_before
