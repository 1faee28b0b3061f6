"""JSON over HTTP(S) on `http.client` and `ssl`: what krun needs of Google's REST APIs.

Light on purpose: `requests` and `google.auth.transport.requests` cost 100-230 ms to
import, a large share of krun's start-up budget (docs/perf-baselines.md). One connection
per call; TLS trusts `ca_file` or the system's roots. Every failure (no answer, TLS, a
non-2xx status, a body that is not a JSON object) is raised once, here, as the caller's
`ServiceError` subclass naming the URL and the status.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from krun.errors import ServiceError

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer; header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    """Blocking HTTP/1.1 calls, safe to use from several threads at once."""

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """TLS trusts `ca_file` (or the system's roots) unless a prepared `ssl_context` is given."""
        self.ca_file = ca_file
        self.timeout = timeout
        self._context: ssl.SSLContext | None = ssl_context
        self._lock = threading.Lock()

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = ssl.create_default_context(cafile=self.ca_file)
            return self._context

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        error: type[ServiceError] = ServiceError,
        timeout: float | None = None,
    ) -> Response:
        """Send one request; any transport failure becomes `error` (status None)."""
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        wait = self.timeout if timeout is None else timeout
        connection: http.client.HTTPConnection
        try:
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.netloc, timeout=wait, context=self._tls()
                )
            elif parts.scheme == "http":
                connection = http.client.HTTPConnection(parts.netloc, timeout=wait)
            else:
                raise error(f"{url}: not an http(s) URL", url=url)
            try:
                connection.request(method, target, body=body, headers=dict(headers or {}))
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
        except ssl.SSLError as failure:
            raise error(
                f"{method} {url}: TLS failed: {failure.reason or failure}", url=url
            ) from None
        except (OSError, http.client.HTTPException) as failure:
            raise error(
                f"{method} {url}: no answer: {failure or type(failure).__name__}", url=url
            ) from None
        found = {name.lower(): value for name, value in answer.getheaders()}
        return Response(answer.status, found, data)

    def json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        error: type[ServiceError] = ServiceError,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Call and decode a JSON object; a non-2xx status raises `error` with Google's message."""
        sent = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        answer = self.request(method, url, headers=sent, body=body, error=error, timeout=timeout)
        return json_object(answer, url, error)


def json_object(
    answer: Response, url: str, error: type[ServiceError], *, call: str | None = None
) -> dict[str, Any]:
    """A 2xx answer's JSON object; `error` names `call` (the URL) and the status otherwise."""
    if not 200 <= answer.status < 300:
        raise error(
            f"{call or url} answered {answer.status}: {error_message(answer.body)}",
            url=url,
            status=answer.status,
        )
    try:
        document = json.loads(answer.body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise error(
            f"{url} answered {answer.status} with {len(answer.body)} bytes that are not "
            "a JSON object",
            url=url,
            status=answer.status,
        )
    return document


def error_message(body: bytes) -> str:
    """The human part of an error body: Google's, OAuth's, a Kubernetes Status's, or text."""
    try:
        document = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or "(empty body)"
    if isinstance(document, dict):
        if document.get("kind") == "Status" and isinstance(document.get("message"), str):
            reason = document.get("reason")
            return f"{document['message']} ({reason})" if reason else str(document["message"])
        inner = document.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            status = inner.get("status")
            return f"{inner['message']} ({status})" if status else str(inner["message"])
        if isinstance(inner, str):
            described = document.get("error_description")
            return f"{inner}: {described}" if described else inner
    return json.dumps(document)[:300]
