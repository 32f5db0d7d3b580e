"""A small Label Studio REST client: projects, task import, tasks with their annotations, users.

Only the HTTP API is used (no SDK), because Label Studio's own packages pin versions that clash
with interleaf's; any Label Studio 1.x server that speaks this API works.

The token comes from the environment variable ``LABEL_STUDIO_API_KEY`` only - never from a
command-line argument (which lands in shell history and process lists) or a file in the run -
and it never appears in an error message. A legacy token is sent as ``Authorization: Token
...``; a personal access token (a JWT refresh token) is first exchanged for an access token.

Example:
    >>> ls = LabelStudio(resolve_url("http://127.0.0.1:8080/"), "0123abcd")   # from_env() reads the token
    >>> ls.url
    'http://127.0.0.1:8080'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from interleaf.annotate.errors import AnnotateError, LabelStudioAuthError, LabelStudioError

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"

IMPORT_BATCH = 100
#: Files per upload request (Label Studio refuses more than 100 by default).
UPLOAD_BATCH = 50
PAGE_SIZE = 100


def resolve_url(url: str | None) -> str:
    """``url``, else ``$LABEL_STUDIO_URL``; an :class:`AnnotateError` when neither is set."""
    chosen = url or os.environ.get(URL_ENV, "")
    if not chosen:
        raise AnnotateError(f"no Label Studio URL: pass --url or set {URL_ENV}")
    if not chosen.startswith(("http://", "https://")):
        raise AnnotateError(f"Label Studio URL {chosen!r} must start with http:// or https://")
    return chosen.rstrip("/")


def _looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("detail", "validation_errors", "message", "error") if body.get(k)]
        if parts:
            return ": ".join(parts)[:500]
    return str(body)[:500]


class LabelStudio:
    """One Label Studio server, reached with one user's token."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._token = token
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport, follow_redirects=False)
        self._auth: str | None = None

    @classmethod
    def from_env(cls, url: str | None = None, **options: Any) -> LabelStudio:
        """A client for ``url`` (default ``$LABEL_STUDIO_URL``) with the token in ``$LABEL_STUDIO_API_KEY``."""
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise LabelStudioAuthError(
                f"no Label Studio token: set {TOKEN_ENV} (Label Studio: Account & Settings > Access token)"
            )
        return cls(resolve_url(url), token, **options)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------
    def _authorization(self) -> str:
        if self._auth is None:
            if _looks_like_jwt(self._token):
                # A personal access token is a refresh token: trade it for a short-lived access token.
                reply = self._send("POST", "/api/token/refresh/", {"json": {"refresh": self._token}}, auth=False)
                access = reply.get("access") if isinstance(reply, dict) else None
                if not access:
                    raise LabelStudioAuthError(f"Label Studio at {self.url} gave no access token for {TOKEN_ENV}")
                self._auth = f"Bearer {access}"
            else:
                self._auth = f"Token {self._token}"
        return self._auth

    def _send(self, method: str, path: str, kwargs: dict[str, Any], *, auth: bool = True) -> Any:
        headers = {"Authorization": self._authorization()} if auth else {}
        try:
            resp = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise LabelStudioError(f"Label Studio at {self.url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({type(exc).__name__}: {exc}); is it running? "
                f"(--url or {URL_ENV})"
            ) from None
        if resp.status_code in (401, 403):
            raise LabelStudioAuthError(
                f"Label Studio at {self.url} refused the token in {TOKEN_ENV} "
                f"({resp.status_code} {_detail(resp)})"
            )
        if resp.status_code >= 400:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} -> {resp.status_code} {_detail(resp)}")
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise LabelStudioError(
                f"{self.url}{path} answered {resp.status_code} with something other than JSON: is this Label Studio?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, {"params": params})

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, {"json": body})

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, {"json": body})

    # -- API ---------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The token's user (the first call of every command: checks the URL and the token)."""
        user = self.get("/api/current-user/whoami")
        if not isinstance(user, dict) or "id" not in user:
            raise LabelStudioError(f"{self.url}/api/current-user/whoami did not describe a user: is this Label Studio?")
        return user

    def projects(self) -> list[dict[str, Any]]:
        """Every project the user can see."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            reply = self.get("/api/projects/", page=page, page_size=PAGE_SIZE)
            if isinstance(reply, list):  # older servers answer without pagination
                return reply
            out += reply.get("results", [])
            if not reply.get("next"):
                return out
            page += 1

    def project_by_title(self, title: str) -> dict[str, Any] | None:
        """The project titled exactly ``title`` (None when there is none)."""
        for p in self.projects():
            if p.get("title") == title:
                return p
        return None

    def create_project(self, title: str, label_config: str, description: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.post(
            "/api/projects/", {"title": title, "label_config": label_config, "description": description}
        )
        return reply

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        reply: dict[str, Any] = self.patch(f"/api/projects/{project_id}/", fields)
        return reply

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Create tasks (their ``data``); returns how many Label Studio says it created."""
        created = 0
        for start in range(0, len(tasks), IMPORT_BATCH):
            reply = self.post(f"/api/projects/{project_id}/import", tasks[start:start + IMPORT_BATCH])
            created += int(reply.get("task_count", 0)) if isinstance(reply, dict) else 0
        return created

    def upload_files(self, project_id: int, files: list[tuple[str, bytes, str]]) -> dict[str, str]:
        """Upload files (name, bytes, MIME type) into a project without making tasks of them.

        Returns name -> the URL Label Studio serves the file at, relative to the server
        (``/data/upload/<project>/<prefix>-<name>``), which the annotator's logged-in browser can load.
        """
        urls: dict[str, str] = {}
        for start in range(0, len(files), UPLOAD_BATCH):
            batch = files[start:start + UPLOAD_BATCH]
            # Distinct field names: Label Studio reads request.FILES as a mapping.
            multipart = [(f"file{i}", (name, data, mime)) for i, (name, data, mime) in enumerate(batch)]
            reply = self._send("POST", f"/api/projects/{project_id}/import",
                               {"params": {"commit_to_project": "false"}, "files": multipart})
            ids = [int(i) for i in (reply or {}).get("file_upload_ids", [])]
            listed = self.get(f"/api/projects/{project_id}/file-uploads", ids=json.dumps(ids)) if ids else []
            for row in listed or []:
                # "upload/<project>/<prefix>-<name>", served under MEDIA_URL (/data/).
                stored = str(row.get("file", "")).lstrip("/")
                for name, _, _ in batch:
                    if stored.endswith(("-" + name, "/" + name)):
                        urls[name] = "/" + (stored if stored.startswith("data/") else f"data/{stored}")
            lost = [name for name, _, _ in batch if name not in urls]
            if lost:
                raise LabelStudioError(
                    f"Label Studio at {self.url} did not keep uploaded file(s) {', '.join(lost[:3])}"
                )
        return urls

    def iter_tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every task of a project with its data and annotations."""
        page = 1
        seen = 0
        while True:
            reply = self.get("/api/tasks/", project=project_id, page=page, page_size=PAGE_SIZE, fields="all")
            tasks = reply.get("tasks", []) if isinstance(reply, dict) else []
            yield from tasks
            seen += len(tasks)
            total = int(reply.get("total", 0)) if isinstance(reply, dict) else 0
            if not tasks or seen >= total:
                return
            page += 1

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.iter_tasks(project_id))

    def users(self) -> dict[int, str]:
        """User id -> email, for reports (the run itself records annotator ids only)."""
        reply = self.get("/api/users/")
        rows = reply.get("results", []) if isinstance(reply, dict) else reply or []
        return {int(u["id"]): str(u.get("email") or u.get("username") or u["id"]) for u in rows}
