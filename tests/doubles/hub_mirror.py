"""A lab's Hugging Face Hub mirror, faithful to the download protocol ``huggingface_hub`` speaks (the client that
vLLM, transformers and the kit's model check use), serving local folders as model repositories.

What it answers, as huggingface.co does (huggingface_hub 2.x: ``hf_api.HfApi.model_info``/``list_repo_tree``,
``file_download.get_hf_file_metadata``/``hf_hub_download``, ``utils/_http.hf_raise_for_status``):

- ``GET /api/models/{repo}[/revision/{rev}]``: the model info (``sha``, ``siblings``, ``gated``); public for a
  gated repository too, as on the Hub.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing (``oid``, ``size``, ``lfs``).
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (git blob id, or the
  sha256 for LFS files, also as ``X-Linked-Etag``/``X-Linked-Size``), ``Content-Length`` and ``Range`` support.
- A gated repository without a token: 401 ``X-Error-Code: GatedRepo``; with a valid token that was not granted
  access: 403 ``GatedRepo``; with a token the Hub does not know: 401 ``X-Error-Message: Invalid credentials in
  Authorization header`` (the client's RepositoryNotFoundError/GatedRepoError/HfHubHTTPError come from these).
- An unknown repository: 401 ``RepoNotFound`` (404 for an authenticated caller); an unknown revision: 404
  ``RevisionNotFound``; an unknown file: 404 ``EntryNotFound``.

Tokens are compared in constant time and never logged: ``requests`` records method, path, status and whether a
token was sent, which is what the tests count (a restart downloads nothing again).

    server = serve({"lab/SmolLM2": Path(...)}, gated={"lab/SmolLM2"}, grants={token: {"lab/SmolLM2"}})
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_MIN = 1024 * 1024  # files this large are LFS files on the Hub (weights); smaller ones are plain git blobs


@dataclass
class RepoFile:
    path: str
    data_path: Path
    size: int
    git_oid: str
    sha256: str | None  # set for LFS files

    @property
    def etag(self) -> str:
        return self.sha256 or self.git_oid


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile]
    commit: str
    gated: bool


@dataclass
class Hit:
    method: str
    path: str
    status: int
    authenticated: bool


@dataclass
class HubState:
    repos: dict[str, Repo]
    grants: dict[str, set[str]]  # token -> repository ids it may read when gated
    requests: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _load_repo(repo_id: str, folder: Path, gated: bool) -> Repo:
    files: dict[str, RepoFile] = {}
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        rel = p.relative_to(folder).as_posix()
        data = p.read_bytes()
        git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        sha256 = hashlib.sha256(data).hexdigest() if len(data) >= LFS_MIN or rel.endswith(".safetensors") else None
        files[rel] = RepoFile(rel, p, len(data), git_oid, sha256)
    commit = hashlib.sha1("".join(f"{f.path}{f.etag}" for f in files.values()).encode()).hexdigest()
    return Repo(repo_id, files, commit, gated)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # no access log on stderr (it would name paths only, but keep the test output clean)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _record(self, status: int) -> None:
        st = self.server.state
        with st.lock:
            st.requests.append(Hit(self.command, urlsplit(self.path).path, status, self._token() is not None))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _known_token(self, token: str) -> bool:
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self.server.state.grants)

    def _granted(self, token: str | None, repo_id: str) -> bool:
        if token is None:
            return False
        return any(hmac.compare_digest(token.encode(), t.encode()) and repo_id in repos
                   for t, repos in self.server.state.grants.items())

    def _repo(self, parts: list[str]) -> tuple[Repo | None, list[str]]:
        """The repository named by the first one or two path parts (``org/name`` or ``name``), and the rest."""
        repos = self.server.state.repos
        for n in (2, 1):
            rid = "/".join(parts[:n])
            if rid in repos:
                return repos[rid], parts[n:]
        return None, parts

    def _auth_ok(self, token: str | None) -> bool:
        if token is not None and not self._known_token(token):
            self._error(401, None, "Invalid credentials in Authorization header")
            return False
        return True

    # -- routes --------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        token = self._token()
        if not self._auth_ok(token):
            return
        if parts[:2] == ["api", "models"]:
            repo, rest = self._repo(parts[2:])
            if repo is None:
                self._not_found_repo(token)
                return
            self._api(repo, rest)
            return
        repo, rest = self._repo(parts)
        if repo is None or len(rest) < 3 or rest[0] != "resolve":
            if repo is None:
                self._not_found_repo(token)
            else:
                self._error(404, None, "Not Found")
            return
        self._resolve(repo, rest[1], "/".join(rest[2:]), token)

    def _not_found_repo(self, token: str | None) -> None:
        status = 404 if token else 401
        self._error(status, "RepoNotFound", "Repository not found")

    def _revision_ok(self, repo: Repo, rev: str) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    def _api(self, repo: Repo, rest: list[str]) -> None:
        if not rest or rest[0] == "revision":
            if rest and (len(rest) < 2 or not self._revision_ok(repo, rest[1])):
                return
            info = {"_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                    "private": False, "disabled": False, "gated": "manual" if repo.gated else False,
                    "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
                    "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                    "siblings": [self._sibling(f) for f in repo.files.values()]}
            self._send(200, json.dumps(info).encode())
            return
        if rest[0] == "tree" and len(rest) >= 2:
            if not self._revision_ok(repo, rest[1]):
                return
            prefix = "/".join(rest[2:])
            entries = [self._tree_entry(f) for f in repo.files.values()
                       if not prefix or f.path.startswith(prefix.rstrip("/") + "/")]
            self._send(200, json.dumps(entries).encode())
            return
        self._error(404, None, "Not Found")

    @staticmethod
    def _sibling(f: RepoFile) -> dict[str, Any]:
        out: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.git_oid}
        if f.sha256:
            out["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
        return out

    @staticmethod
    def _tree_entry(f: RepoFile) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
        if f.sha256:
            out["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        return out

    def _resolve(self, repo: Repo, rev: str, file_path: str, token: str | None) -> None:
        if repo.gated and not self._granted(token, repo.repo_id):
            if token is None:
                self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have access "
                                              "to it and be authenticated to access it. Please log in.")
            else:
                self._error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in "
                                              "the authorized list. Visit the model page to ask for access.")
            return
        if not self._revision_ok(repo, rev):
            return
        f = repo.files.get(file_path)
        if f is None:
            self._error(404, "EntryNotFound", f"{file_path} does not exist on \"{rev}\"")
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
        if f.sha256:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and f.size:
            first, _, last = rng[6:].partition("-")
            try:
                start = int(first) if first else max(0, f.size - int(last))
                end = min(int(last), f.size - 1) if first and last else f.size - 1
            except ValueError:
                start, end = 0, f.size - 1
            if start > end:
                self._send(416, b"", {"Content-Range": f"bytes */{f.size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        headers["Content-Length"] = str(end - start + 1 if f.size else 0)
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "GET" and f.size:
            with f.data_path.open("rb") as fh:
                fh.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = fh.read(min(1 << 20, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


def serve(repos: dict[str, Path], *, gated: set[str], grants: dict[str, set[str]], host: str = "127.0.0.1",
          port: int = 0) -> _Server:
    """Start the mirror in a thread; ``server.state.requests`` records every request (never a token)."""
    server = _Server((host, port), _Handler)
    server.state = HubState({rid: _load_repo(rid, folder, rid in gated) for rid, folder in repos.items()},
                            {t: set(r) for t, r in grants.items()})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def downloads(server: _Server, suffix: str) -> int:
    """How many times a file ending in ``suffix`` was sent whole (GET 200). Ranged reads (206: vLLM reads a
    safetensors header before it downloads) are not downloads; ``ranged`` counts them."""
    with server.state.lock:
        return sum(1 for h in server.state.requests if h.method == "GET" and h.status == 200
                   and "/resolve/" in h.path and h.path.endswith(suffix))


def ranged(server: _Server, suffix: str) -> int:
    """How many ranged reads (GET 206) of a file ending in ``suffix`` were answered."""
    with server.state.lock:
        return sum(1 for h in server.state.requests if h.method == "GET" and h.status == 206
                   and "/resolve/" in h.path and h.path.endswith(suffix))
