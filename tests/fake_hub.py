"""A loopback stand-in for the Hugging Face Hub HTTP API, for tests without network.

It implements just the routes the real ``huggingface_hub`` client (2.x) calls for
``create_repo``, ``create_commit`` (``validate-yaml``, ``preupload``, NDJSON ``commit``),
``model_info``, ``list_repo_files`` (``tree``) and ``hf_hub_download`` (``HEAD``/``GET
resolve`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``), so that tests drive the
real client end to end. It binds 127.0.0.1 only and stops answering after ``max_requests``.

Written by hand: huggingface_hub ships no test server, and ``http.server`` is enough.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

#: The one token the tests' fake Hub accepts for writes (never a real token; tests check it is never printed).
TEST_TOKEN = "hf_SecretTestToken0123456789abcdef"

_real_getaddrinfo = socket.getaddrinfo


def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """
    ``socket.getaddrinfo`` that resolves loopback names only: patched in, no request can leave the machine.

    :raises OSError: For any other host, naming it
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"test tried to reach {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


@dataclass
class FakeRepo:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class FakeHub:
    """
    The fake Hub's state and server.

    :param token: The one token accepted for writes (``Authorization: Bearer <token>``)
    :param max_requests: Requests answered before the server answers 503 to everything: a bound on any retry loop in
        the client. It counts every request of the test module sharing the server (test_hub.py's tests alone make ~500)
    """

    def __init__(self, token: str, max_requests: int = 5000) -> None:
        self.token = token
        self.max_requests = max_requests
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_headers_seen: list[str] = []
        # Failure injection: "drop" closes the connection on /commit without answering.
        self.fail_commit: str | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def commit(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Apply a commit atomically: all files or none."""
        repo = self.repos[repo_id]
        digest = hashlib.sha1(repo.sha.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        sha = digest.hexdigest()
        repo.files.update(files)
        repo.commits.append(sha)
        return sha

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            # -- helpers -------------------------------------------------------------------
            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None, body: bytes | None = None) -> None:
                data = body if body is not None else json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body is None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                headers = {"X-Error-Message": message}
                if code:
                    headers["X-Error-Code"] = code
                self._send(status, {"error": message}, headers)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                hub.auth_headers_seen.append(auth)
                return auth == f"Bearer {hub.token}"

            def _route(self) -> None:
                with hub._lock:
                    hub.requests.append((self.command, self.path))
                    over = len(hub.requests) > hub.max_requests
                if over:
                    return self._error(503, "fake hub request budget exhausted")
                parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
                try:
                    if parts[:1] == ["api"]:
                        return self._api(parts[1:])
                    if len(parts) >= 5 and parts[2] == "resolve":
                        return self._resolve(f"{parts[0]}/{parts[1]}", "/".join(parts[4:]))
                except Exception as e:  # pragma: no cover - a bug in the fake, surfaced as 500
                    return self._error(500, f"fake hub error: {e!r}")
                return self._error(404, f"no route for {self.command} {self.path}")

            do_GET = do_POST = do_HEAD = _route

            # -- /api ----------------------------------------------------------------------
            def _api(self, parts: list[str]) -> None:
                if parts == ["repos", "create"] and self.command == "POST":
                    body = json.loads(self._body() or b"{}")
                    if not self._authorized():
                        return self._error(401, "Invalid credentials in Authorization header")
                    repo_id = f"{body.get('organization')}/{body['name']}"
                    url = f"{hub.endpoint}/{repo_id}"
                    if repo_id in hub.repos:
                        return self._send(409, {"error": "You already created this model repo", "url": url})
                    hub.repos[repo_id] = FakeRepo()
                    return self._send(200, {"url": url, "name": repo_id})
                if parts == ["validate-yaml"] and self.command == "POST":
                    content = json.loads(self._body())["content"]
                    try:
                        if content.startswith("---"):
                            yaml.safe_load(content.split("---")[1])
                    except yaml.YAMLError as e:
                        return self._send(400, {"errors": [{"message": str(e)}]})
                    return self._send(200, {"errors": [], "warnings": []})
                if len(parts) >= 3 and parts[0] == "models":
                    repo_id, rest = f"{parts[1]}/{parts[2]}", parts[3:]
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        self._body()
                        return self._error(404, "Repository not found", "RepoNotFound")
                    if rest[:1] == ["preupload"] and self.command == "POST":
                        body = json.loads(self._body())
                        if not self._authorized():
                            return self._error(401, "Invalid credentials in Authorization header")
                        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in body["files"]]
                        return self._send(200, {"files": files, "commitOid": repo.sha})
                    if rest[:1] == ["commit"] and self.command == "POST":
                        raw = self._body()
                        if not self._authorized():
                            return self._error(401, "Invalid credentials in Authorization header")
                        if hub.fail_commit == "drop":
                            self.close_connection = True
                            self.connection.shutdown(2)  # the connection dies mid-upload
                            return None
                        files: dict[str, bytes] = {}
                        for line in raw.splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                            elif item["key"] != "header":
                                return self._error(400, f"fake hub does not support {item['key']}")
                        sha = hub.commit(repo_id, files)
                        return self._send(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha})
                    if rest[:1] == ["tree"]:
                        entries = [
                            {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for p, b in sorted(repo.files.items())
                        ]
                        return self._send(200, entries)
                    if not rest or rest[:1] == ["revision"]:
                        info = {
                            "id": repo_id,
                            "modelId": repo_id,
                            "sha": repo.sha,
                            "private": False,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                            "tags": [],
                            "downloads": 0,
                            "likes": 0,
                        }
                        return self._send(200, info)
                return self._error(404, f"no API route {parts}")

            # -- /{repo}/resolve/{rev}/{path} -------------------------------------------------
            def _resolve(self, repo_id: str, path: str) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                if path not in repo.files:
                    return self._error(404, "Entry not found", "EntryNotFound")
                data = repo.files[path]
                headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                return self._send(200, headers=headers, body=data)

        return Handler
