"""A small local Hugging Face Hub API, served from the stand-in's hub cache.

``huggingface_hub`` refuses *every* request while ``HF_HUB_OFFLINE=1`` (its request hook
raises ``OfflineModeIsEnabled`` before anything is sent), so ``auth_check`` can never get an
answer offline. The stand-in therefore leaves offline mode off and points ``HF_ENDPOINT`` at
this server, which answers, for the repositories in its cache folders -- the stand-in's own
(written by :mod:`common.local.hub`) and any Hugging Face cache the user adds
(``python -m common.local --hub-cache DIR``), read-only -- the routes the recipes use, as the
Hub does:

* ``GET /api/{models,datasets,spaces}/{repo}/auth-check`` -- 200 for a token with access;
  for a gated repository (``meta-llama/*``) 401 ``GatedRepo`` without a token and 403
  ``GatedRepo`` for a token whose account has not been granted access (``gated_denied``);
  404 ``RepoNotFound`` for a repository the cache does not hold.
* ``GET /api/models/{repo}/tree/{revision}[/{path}]`` -- the file listing (path, size, git
  blob id, LFS sha256) of the cached snapshot.
* ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` -- a cached file, with the headers
  ``huggingface_hub`` reads (``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag``,
  ``X-Linked-Size``, ``Content-Length``); 404 ``EntryNotFound`` for a file the cache lacks.

Every other route answers 403 ("not served"): ``huggingface_hub`` then falls back to its
cache exactly as when the Hub cannot be reached (``snapshot_download``'s ``repo_info`` call,
say), so loading from the cache works as it did offline. Gated repositories refuse their
files too without access, as the Hub does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["GATED_PREFIXES", "HubApiServer", "is_gated"]

GATED_PREFIXES: tuple[str, ...] = ("meta-llama/",)
"""Repositories under these owners are gated on the Hub (Meta's licence must be accepted)."""

_LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pdf", ".pth", ".chk", ".gguf")
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def is_gated(repo_id: str) -> bool:
    """Whether the stand-in's hub treats ``repo_id`` as gated (see :data:`GATED_PREFIXES`)."""
    return repo_id.startswith(GATED_PREFIXES)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: HubApiServer) -> None:
        super().__init__(address, _Handler)
        self.hub = hub


class HubApiServer:
    """The local Hub API on 127.0.0.1 (see the module docstring).

    Args:
        cache_dir: the hub cache folder (``HF_HUB_CACHE``) whose repositories it serves.
        gated_denied: repository ids for which every token is refused as the Hub refuses a
            token whose account has not accepted the licence.
        port: the port (0: a free one).
        extra_caches: more hub cache folders (a user's own ``~/.cache/huggingface/hub``),
            searched before ``cache_dir`` and never written; see :meth:`add_cache`.
    """

    def __init__(self, cache_dir: str | Path, *, gated_denied: Iterable[str] = (),
                 port: int = 0, extra_caches: Iterable[str | Path] = ()) -> None:
        self.cache_dir = Path(cache_dir)
        self._extra_caches = [Path(c) for c in extra_caches]
        self.gated_denied = set(gated_denied)
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []

    def start(self) -> HubApiServer:
        """Bind and serve in a background thread; returns ``self``.

        Raises:
            OSError: the port cannot be bound.
        """
        self._httpd = _Server(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="sagemaker-local-hub-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` -- the value for ``HF_ENDPOINT``."""
        if self._httpd is None:
            raise RuntimeError("the hub API server is not running: call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def deny(self, repo_id: str) -> None:
        """Refuse every token for ``repo_id`` from now on (as ``--gated-denied`` does)."""
        with self._lock:
            self.gated_denied.add(repo_id)

    def allow(self, repo_id: str) -> None:
        """Undo :meth:`deny`."""
        with self._lock:
            self.gated_denied.discard(repo_id)

    def add_cache(self, cache_dir: str | Path) -> None:
        """Serve the repositories of another hub cache folder too (searched before the ones
        added earlier and the stand-in's own; never written)."""
        with self._lock:
            self._extra_caches.insert(0, Path(cache_dir))

    @property
    def caches(self) -> list[Path]:
        """The cache folders served, in the order a repository is looked for."""
        with self._lock:
            return [*self._extra_caches, self.cache_dir]

    def repositories(self) -> list[str]:
        """The model repositories served (``owner/name``), each once."""
        seen: dict[str, None] = {}
        for cache in self.caches:
            for storage in sorted(cache.glob("models--*--*")):
                if storage.is_dir():
                    seen.setdefault(storage.name[len("models--"):].replace("--", "/", 1))
        return list(seen)

    def requests(self) -> list[dict[str, Any]]:
        """``{"method", "path", "status", "authenticated"}`` of every request, oldest first."""
        with self._lock:
            return list(self._log)

    # ----------------------------------------------------------------- the repositories

    def _storage(self, repo_type: str, repo_id: str) -> Path:
        name = f"{repo_type}s--{repo_id.replace('/', '--')}"
        for cache in self.caches:
            if (cache / name).is_dir():
                return cache / name
        return self.cache_dir / name

    def commit(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        """The commit ``revision`` names in the cache, or ``None`` when there is none."""
        storage = self._storage(repo_type, repo_id)
        if (storage / "snapshots" / revision).is_dir():
            return revision
        ref = storage / "refs" / revision
        return ref.read_text().strip() if ref.is_file() else None

    def snapshot(self, repo_type: str, repo_id: str, revision: str) -> Path | None:
        """The cached snapshot folder of ``revision``, or ``None``."""
        commit = self.commit(repo_type, repo_id, revision)
        return None if commit is None else self._storage(repo_type, repo_id) / "snapshots" / commit

    def access(self, repo_type: str, repo_id: str, authorization: str | None
               ) -> tuple[int, str, str] | None:
        """``None`` when the request may read the repository, else (status, code, message)."""
        if not self._storage(repo_type, repo_id).is_dir():
            return (404, "RepoNotFound", f"Repository Not Found for url: {repo_id}.")
        if not is_gated(repo_id):
            return None
        if not authorization:
            return (401, "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and "
                    "be authenticated to access it. Please log in.")
        with self._lock:
            denied = repo_id in self.gated_denied
        if denied:
            return (403, "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized "
                    f"list. Visit https://huggingface.co/{repo_id} to ask for access.")
        return None

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ----------------------------------------------------------------- answers

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              *, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.server.hub.record({"method": self.command, "path": self.path, "status": status,
                                "authenticated": bool(self.headers.get("Authorization"))})

    def _error(self, status: int, code: str | None, message: str,
               headers: dict[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        extra["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), extra)

    def _not_served(self) -> None:
        self._error(403, None, "The local stand-in's hub does not serve this route; "
                               "huggingface_hub falls back to its cache")

    # ----------------------------------------------------------------- routing

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        repo_type, repo_id, rest = "model", None, []
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in _REPO_TYPES:
            repo_type, repo_id, rest = _REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
        elif len(parts) >= 3 and parts[2] == "resolve":
            repo_id, rest = f"{parts[0]}/{parts[1]}", parts[2:]
        if repo_id is None:
            return self._not_served()
        # As on the Hub, a gated repository refuses every route without access.
        refused = self.server.hub.access(repo_type, repo_id, self.headers.get("Authorization"))
        if refused:
            return self._error(*refused)
        if rest == ["auth-check"]:
            return self._send(200, b"{}")
        if rest[:1] == ["tree"] and len(rest) >= 2 and repo_type == "model":
            return self._tree(repo_id, rest[1], "/".join(rest[2:]))
        if rest[:1] == ["resolve"] and len(rest) >= 3:
            return self._resolve(repo_id, rest[1], "/".join(rest[2:]))
        return self._not_served()

    def _tree(self, repo_id: str, revision: str, under: str) -> None:
        hub = self.server.hub
        snapshot = hub.snapshot("model", repo_id, revision)
        if snapshot is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        recursive = "recursive=true" in urlsplit(self.path).query.lower()
        base = snapshot / under if under else snapshot
        if not base.is_dir():
            return self._error(404, "EntryNotFound", f"{under} does not exist on {revision}")
        entries = []
        children = base.rglob("*") if recursive else base.iterdir()
        for item in sorted(children):
            relative = item.relative_to(snapshot).as_posix()
            if item.is_dir():
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0,
                                "path": relative})
                continue
            data = item.read_bytes()
            entry: dict[str, Any] = {"type": "file", "oid": _git_blob_id(data),
                                     "size": len(data), "path": relative}
            if relative.endswith(_LFS_SUFFIXES):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": 134}
            entries.append(entry)
        return self._send(200, json.dumps(entries).encode())

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        hub = self.server.hub
        commit = hub.commit("model", repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        file = hub.snapshot("model", repo_id, revision) / filename
        commit_header = {"X-Repo-Commit": commit}
        if not file.is_file():
            return self._error(404, "EntryNotFound",
                               f"{filename} is not in the local stand-in's cache",
                               commit_header)
        data = file.read_bytes()
        headers = {**commit_header, "Content-Length": str(len(data))}
        if filename.endswith(_LFS_SUFFIXES):
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
            headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        else:
            headers["ETag"] = f'"{_git_blob_id(data)}"'
        return self._send(200, data, headers, content_type="application/octet-stream")
