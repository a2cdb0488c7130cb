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
from collections.abc import Sequence
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
        loggers: the loggers routed, at INFO (default: the proxy's access log; the demo adds
            ``common.local.scaling``, whose events its notebook already tells).
        terminal: where verbose output goes (default ``sys.stderr``).

    Use it as a context manager around the stand-in. While it is open,
    :attr:`kernel_output` is the file to pass as a kernel's ``stdout``/``stderr`` (None:
    inherit the terminal).

    Raises:
        OSError: on entry, when the log file cannot be opened (the message names it).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, verbose: bool = False,
                 command: str = "demo", label: str = "Kernel and proxy logs",
                 loggers: Sequence[str] = (PROXY_LOGGER,),
                 terminal: TextIO | None = None) -> None:
        self.verbose = verbose
        self.label = label
        self.loggers = tuple(loggers)
        self.path: Path | None = None if verbose else (
            Path(path) if path is not None else default_log_path(command))
        self._terminal = terminal
        self._file: IO[str] | None = None
        self._saved: list[tuple[logging.Logger, logging.Handler, int, bool]] = []

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
        for name in self.loggers:
            handler = logging.StreamHandler(stream)
            # The access log's lines are complete already; others say where they come from.
            handler.setFormatter(logging.Formatter(
                "%(message)s" if name == PROXY_LOGGER else "%(levelname)s %(name)s: %(message)s"))
            logger = logging.getLogger(name)
            self._saved.append((logger, handler, logger.level, logger.propagate))
            logger.setLevel(logging.INFO)
            logger.propagate = False
            logger.addHandler(handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._saved:
            logger, handler, logger.level, logger.propagate = self._saved.pop()
            logger.removeHandler(handler)
        if self._file is not None:
            self._file.close()
            self._file = None
