"""Where the stand-in's background output goes: a log file, or the terminal with --verbose.

Two things talk while the stand-in runs that tell a reader nothing about the recipe: the
control plane proxy's access log (one ``"CONNECT pypi.org:443 HTTP/1.0" 200 -`` line per
connection, when a notebook's ``%pip`` goes through ``HTTPS_PROXY``; moto's handler writes
it, :mod:`common.local.controlplane` sends it to the :data:`PROXY_LOGGER` logger), and each
notebook kernel's own stderr (``[IPKernelApp] WARNING | Kernel is running over TCP without
encryption...``). :class:`BackgroundLog` sends both to a log file, named in the banner, so the
terminal shows the story; ``verbose=True`` shows them on stderr instead.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TextIO

__all__ = ["PROXY_LOGGER", "BackgroundLog", "default_log_path"]

PROXY_LOGGER = "common.local.proxy"
"""The logger that carries the control plane proxy's access log (level INFO)."""


def default_log_path(command: str) -> Path:
    """Return a fresh log file path in the temporary folder, e.g.
    ``/tmp/sagemaker-local-demo-20261130-141419-4242.log``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"sagemaker-local-{command}-{stamp}-{os.getpid()}.log"


class BackgroundLog:
    """Routes the proxy's access log, and gives kernels a file for their own output.

    Args:
        path: the log file (appended to); None picks :func:`default_log_path`.
        verbose: show everything on ``terminal`` instead (no file is written).
        command: names the default file (``demo``, ``serve``).
        label: what the banner line calls the log (default: the kernels' and the proxy's).
        terminal: where verbose output goes (default ``sys.stderr``).

    Use it as a context manager around the stand-in. While it is open,
    :attr:`kernel_output` is the file to pass as a kernel's ``stdout``/``stderr`` (None:
    inherit the terminal).

    Raises:
        OSError: on entry, when the log file cannot be opened (the message names it).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, verbose: bool = False,
                 command: str = "demo", label: str = "Kernel and proxy logs",
                 terminal: TextIO | None = None) -> None:
        self.verbose = verbose
        self.label = label
        self.path: Path | None = None if verbose else (
            Path(path) if path is not None else default_log_path(command))
        self._terminal = terminal
        self._file: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._saved: tuple[int, bool] | None = None

    @property
    def kernel_output(self) -> IO[str] | None:
        """The open log file for kernels' stdout and stderr; None when verbose."""
        return self._file

    def describe(self) -> str:
        """One line for the banner saying where the background output goes."""
        if self.path is None:
            return f"{self.label}: shown here (--verbose)."
        return f"{self.label}: {self.path} (--verbose shows them here)."

    def __enter__(self) -> BackgroundLog:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")
            stream: TextIO | IO[str] = self._file
        else:
            stream = self._terminal if self._terminal is not None else sys.stderr
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger(PROXY_LOGGER)
        self._saved = (logger.level, logger.propagate)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
        self._handler = handler
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger(PROXY_LOGGER)
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler = None
        if self._saved is not None:
            logger.level, logger.propagate = self._saved
            self._saved = None
        if self._file is not None:
            self._file.close()
            self._file = None
