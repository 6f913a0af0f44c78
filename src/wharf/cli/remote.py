"""A small client of a remote wharf server, for ``wharf train --server URL``.

The standard library's urllib: the CLI needs four calls, not an HTTP client dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click

TIMEOUT_SECONDS = 300


class RemoteError(click.ClickException):
    """The server answered with a problem (or not at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        # 4xx: the request was wrong (2, as for local input errors); otherwise the server or network (1).
        self.exit_code = 2 if status is not None and 400 <= status < 500 else 1  # type: ignore[misc]


class Remote:
    """Calls to the server at ``base`` (``http://host:port``), with an optional API key."""

    def __init__(self, base: str, api_key: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.api_key = api_key

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        """The decoded JSON answer; :raises RemoteError: a problem answer, or no answer."""
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
                detail = problem.get("detail") or problem.get("title") or raw.decode(errors="replace")
                where = f" (at {problem['field']})" if problem.get("field") else ""
            except (ValueError, AttributeError):
                detail, where = raw.decode(errors="replace")[:500], ""
            raise RemoteError(f"{self.base} answered {exc.code}: {detail}{where}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            message = f"Could not reach {self.base}: {reason}. Is `wharf serve` running there?"
            raise RemoteError(message) from exc

    def upload(self, path: Path, name: str | None = None) -> Any:
        """``POST /v1/datasets`` with ``path`` as a multipart upload."""
        boundary = uuid.uuid4().hex
        parts = [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{_quoted(path.name)}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            path.read_bytes(),
            b"\r\n",
        ]
        if name:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'.encode()
            )
        parts.append(f"--{boundary}--\r\n".encode())
        return self.call("POST", "/v1/datasets", b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def post_json(self, path: str, body: Any) -> Any:
        return self.call("POST", path, json.dumps(body).encode(), "application/json")

    def get(self, path: str) -> Any:
        return self.call("GET", path)


def _quoted(filename: str) -> str:
    return filename.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
