"""The Kubernetes API server of one emulated GKE cluster, as a raw ASGI app.

`create_app(world, cluster)` serves, over whatever listener the emulator gives
it (HTTPS from the world CA, HTTP/1.1 and h2):

* machinery: `/version`, `/healthz`, `/livez`, `/readyz`, discovery (`/api`,
  `/apis`, per group and version, plain and aggregated), `/openapi/v3`, and the
  service-account issuer's `/.well-known/openid-configuration` and
  `/openid/v1/jwks`;
* resources: `/api/v1/...` and `/apis/G/V/...`, namespaced
  (`/namespaces/NS/PLURAL[/NAME[/SUB]]`) or cluster-scoped, with get, list,
  watch, create, update, patch, delete and deletecollection.

Each request is authenticated (`authn.py`; `Impersonate-*` headers honoured
when the caller may impersonate), turned into RBAC attributes and authorized
(`rbac.py`) before anything else, as on the real server, so an unknown
resource is 403 to a stranger and 404 to an administrator. Every error is a
`Status` object (`status.py`). Watches stream newline-delimited JSON events,
one ASGI body chunk each, until the client goes away, `timeoutSeconds` passes
or the server stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml

from emulator.asgi import (
    ASGIApp,
    BodyTooLargeError,
    QueryError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    handle_lifespan,
    read_request,
    send_response,
)
from emulator.kube import discovery, rbac, status
from emulator.kube.cluster import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    KubeCluster,
    kube_cluster,
    present,
)
from emulator.kube.kinds import Kind
from emulator.kube.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_fields,
    parse_labels,
)
from emulator.kube.store import ADDED, DELETED, MODIFIED, Event, matches
from emulator.kube_tokens import jwks
from emulator.world import Cluster, World

MAX_BODY = 3 << 20
"""kube-apiserver refuses request bodies over 3 MiB."""
DEFAULT_WATCH_SECONDS = 1800
BOOKMARK_SECONDS = 60.0

_NON_RESOURCE = ("/version", "/healthz", "/livez", "/readyz", "/openapi", "/.well-known", "/openid")
_REVIEWS = {
    "tokenreviews": "TokenReview",
    "selfsubjectreviews": "SelfSubjectReview",
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "subjectaccessreviews": "SubjectAccessReview",
    "localsubjectaccessreviews": "LocalSubjectAccessReview",
}


@dataclass(frozen=True, slots=True)
class Target:
    """A resource request, as kube-apiserver's RequestInfo sees it."""

    group: str
    version: str
    plural: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


Streamer = Callable[[Send, Receive], Awaitable[None]]


def parse_target(path: str, namespaced: Callable[[str, str, str], bool | None]) -> Target | None:
    """Split a resource path, or None; `namespaced(g, v, plural)` is None for unknown kinds."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest[:1] == ["watch"]:
        rest = rest[1:]
    # /namespaces/NS/PLURAL/... unless PLURAL is a subresource of the namespace itself.
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and (
            namespaced(group, version, rest[2]) is not None or rest[2] not in ("status", "finalize")
        )
    ):
        if len(rest) > 5:
            return None
        padded = [*rest[3:], "", ""]
        return Target(group, version, rest[2], rest[1], padded[0], padded[1])
    if not rest or len(rest) > 3:
        return None
    padded = [*rest, "", ""]
    return Target(group, version, padded[0], "", padded[1], padded[2])


def parse_continue(token: str) -> tuple[str, str]:
    """The (namespace, name) a `continue` key resumes after; a 400 Status when it is not ours."""
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError) as exc:
        raise status.bad_request(f"continue key is not valid: {exc}") from exc
    if not (isinstance(after, list) and len(after) == 2 and all(isinstance(p, str) for p in after)):
        raise status.bad_request("continue key is not valid: no [namespace, name] position")
    return after[0], after[1]


def verb_of(method: str, target: Target, watch: bool) -> str:
    if method in ("GET", "HEAD"):
        if target.name:
            return "get"
        return "watch" if watch else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if target.name else "deletecollection",
    }.get(method, method.lower())


def _number(value: str | None) -> int | None:
    """A query parameter's non-negative integer; None unless it is 1 to 18 ASCII digits."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "t", "yes")


def _json(obj: Any, code: int = 200, request: Request | None = None) -> Response:
    accept = (request.header("accept") if request is not None else None) or ""
    headers = [("cache-control", "no-cache, private"), ("audit-id", str(uuid.uuid4()))]
    if "yaml" in accept and "json" not in accept:
        text = yaml.safe_dump(obj, sort_keys=False)
        return Response(code, text.encode(), [("content-type", "application/yaml"), *headers])
    body = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    return Response(code, body, [("content-type", "application/json"), *headers])


def _error(exc: status.StatusError) -> Response:
    response = _json(exc.body, exc.code)
    response.headers += exc.headers
    return response


def _decode_body(request: Request, kind_name: str) -> Any:
    content_type = request.content_type
    if "protobuf" in content_type:
        raise status.unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml"
        )
    if not request.body:
        raise status.bad_request(
            f"the object provided is unrecognized (must be of type {kind_name}): empty body"
        )
    try:
        if "yaml" in content_type:
            return yaml.safe_load(request.body.decode("utf-8"))
        return json.loads(request.body)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise status.bad_request(
            f"the object provided is unrecognized (must be of type {kind_name}): "
            f"couldn't get version/kind; json parse error: {exc}"
        ) from exc


class ApiServer:
    """Request handling for one cluster; `app` is the ASGI entry point."""

    def __init__(self, kube: KubeCluster, *, bookmark_seconds: float = BOOKMARK_SECONDS) -> None:
        self.kube = kube
        self.bookmark_seconds = bookmark_seconds

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            request = await read_request(scope, receive, max_body=MAX_BODY)
        except QueryError as exc:
            await send_response(send, _error(status.bad_request(f"invalid query string: {exc}")))
            return
        except BodyTooLargeError:
            await send_response(
                send,
                _error(
                    status.StatusError(
                        413,
                        "RequestEntityTooLarge",
                        "Request entity too large: limit is 3145728",
                        {},
                    )
                ),
            )
            return
        try:
            result = await self.handle(request)
        except status.StatusError as exc:
            result = _error(exc)
        except Exception as exc:  # the boundary: a bug must not drop the connection
            result = _error(status.internal(f"{type(exc).__name__}: {exc}"))
        if isinstance(result, Response):
            if request.method == "HEAD":
                result.headers.append(("content-length", str(len(result.body))))
                result.body = b""
            await send_response(send, result)
        else:
            await result(send, receive)

    # Dispatch.

    async def handle(self, request: Request) -> Response | Streamer:
        user = self.kube.authenticate(request.header("authorization"))
        user = self._impersonate(request, user)
        path = request.path.rstrip("/") or "/"
        target = parse_target(path, self._namespaced)
        if target is None:
            return self._non_resource(request, user, path)
        watch = _truthy(request.param("watch")) or "/watch/" in path
        verb = verb_of(request.method, target, watch)
        attributes = rbac.Attributes(
            user,
            verb,
            target.namespace,
            target.group,
            target.plural,
            target.subresource,
            target.name,
        )
        self._authorize(attributes)
        kind = self.kube.kind(target.group, target.version, target.plural)
        if target.namespace and not kind.namespaced:
            raise status.no_such_path()
        if target.subresource and target.subresource not in kind.subresources:
            raise status.no_such_path()
        if verb not in kind.verbs and not target.subresource:
            raise status.method_not_allowed(
                "the server does not allow this method on the requested resource"
            )
        dry_run = request.param("dryRun") == "All"
        namespace = target.namespace
        if request.method in ("GET", "HEAD"):
            if verb == "get":
                return _json(self.kube.get(kind, namespace, target.name), request=request)
            selectors = self._selectors(request, kind)
            if verb == "watch":
                return self._watch(request, kind, namespace, *selectors)
            return self._list(request, kind, namespace, *selectors)
        if request.method == "POST":
            return self._create(request, kind, target, user)
        if request.method == "PUT":
            body = _decode_body(request, kind.kind)
            replaced = self.kube.replace(
                kind, namespace, target.name, body, subresource=target.subresource, dry_run=dry_run
            )
            return _json(replaced, request=request)
        if request.method == "PATCH":
            return self._patch(request, kind, target, dry_run)
        if request.method == "DELETE":
            options = self._delete_options(request)
            if not target.name:
                return self._delete_collection(request, kind, namespace, dry_run)
            code, body = self.kube.delete(kind, namespace, target.name, options, dry_run=dry_run)
            return _json(body, code, request)
        raise status.method_not_allowed(f"the server does not allow the method {request.method}")

    def _namespaced(self, group: str, version: str, plural: str) -> bool | None:
        found = self.kube.registry.lookup(group, version, plural)
        return None if found is None else found.namespaced

    def _authorize(self, attributes: rbac.Attributes) -> None:
        decision = self.kube.authorize(attributes)
        if decision.allowed:
            return
        why = rbac.forbidden_message(attributes)
        if decision.reason:
            why = f"{why}: {decision.reason}"
        if not attributes.resource_request:
            raise status.forbidden("", "", "", why)
        # The Status names the resource without its subresource, as the real server's does.
        raise status.forbidden(attributes.resource, attributes.api_group, attributes.name, why)

    def _impersonate(self, request: Request, user: rbac.UserInfo) -> rbac.UserInfo:
        name = request.header("impersonate-user")
        groups = [v for k, v in request.headers if k == "impersonate-group"]
        if name is None:
            if groups:
                raise status.bad_request(
                    "requested [Impersonate-Group] without impersonating a user"
                )
            return user
        checks: list[rbac.Attributes] = []
        if name.startswith(rbac.SA_PREFIX) and name.count(":") == 3:
            _, _, sa_namespace, sa_name = name.split(":")
            checks.append(
                rbac.Attributes(
                    user, "impersonate", sa_namespace, "", "serviceaccounts", name=sa_name
                )
            )
            groups = groups or [rbac.SERVICE_ACCOUNTS, f"{rbac.SERVICE_ACCOUNTS}:{sa_namespace}"]
        else:
            checks.append(rbac.Attributes(user, "impersonate", "", "", "users", name=name))
        checks += [rbac.Attributes(user, "impersonate", "", "", "groups", name=g) for g in groups]
        for attributes in checks:
            self._authorize(attributes)
        if name != rbac.ANONYMOUS.name and rbac.AUTHENTICATED not in groups:
            groups.append(rbac.AUTHENTICATED)
        return rbac.UserInfo(name, tuple(groups))

    # Non-resource endpoints.

    def _non_resource(self, request: Request, user: rbac.UserInfo, path: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            self._authorize(
                rbac.Attributes(user, request.method.lower(), path=path, resource_request=False)
            )
            raise status.no_such_path()
        self._authorize(rbac.Attributes(user, "get", path=path, resource_request=False))
        registry = self.kube.registry
        accept = request.header("accept") or ""
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return _json(discovery.version_info(self.kube.cluster.master_version))
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(
            ("/healthz/", "/livez/", "/readyz/")
        ):
            return Response.text("ok", content_type="text/plain; charset=utf-8")
        if path in ("/api", "/apis"):
            wanted = discovery.wants_aggregated(accept)
            if wanted is not None:
                version = "apidiscovery.k8s.io/" + (
                    "v2" if wanted == discovery.AGGREGATED_V2 else "v2beta1"
                )
                document = discovery.aggregated(registry, core=path == "/api", api_version=version)
                response = _json(document)
                response.headers[0] = ("content-type", wanted)
                return response
            if path == "/api":
                cluster = self.kube.cluster
                return _json(discovery.api_versions(f"{cluster.endpoint}:{cluster.endpoint_port}"))
            return _json(discovery.api_group_list(registry))
        if parts[:1] == ["api"] and len(parts) == 2:
            found = discovery.resource_list(registry, "", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 2:
            found = discovery.api_group(registry, parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            found = discovery.resource_list(registry, parts[1], parts[2])
        elif path == "/openapi/v2":
            body = discovery.openapi_v2_protobuf(registry)
            return Response(200, body, [("content-type", discovery.OPENAPI_V2_PROTOBUF)])
        elif path == "/openapi/v3":
            found = discovery.openapi_v3_index(registry)
        elif parts[:2] == ["openapi", "v3"] and len(parts) in (4, 5):
            group = parts[3] if parts[2] == "apis" and len(parts) == 5 else ""
            version = parts[-1]
            found = None
            if (parts[2] == "api") == (len(parts) == 4):
                found = discovery.openapi_v3_document(registry, group, version)
        elif path == "/.well-known/openid-configuration":
            found = self._oidc()
        elif path == "/openid/v1/jwks":
            response = _json(jwks(self.kube.cluster))
            response.headers[0] = ("content-type", "application/jwk-set+json")
            return response
        else:
            found = None
        if found is None:
            raise status.no_such_path()
        return _json(found)

    def _oidc(self) -> dict[str, Any]:
        cluster = self.kube.cluster
        host = f"[{cluster.endpoint}]" if ":" in cluster.endpoint else cluster.endpoint
        return {
            "issuer": cluster.issuer,
            "jwks_uri": f"https://{host}:{cluster.endpoint_port}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    # Resource handlers.

    def _selectors(self, request: Request, kind: Kind) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = parse_labels(request.param("labelSelector") or "")
            fields = parse_fields(request.param("fieldSelector") or "")
        except SelectorError as exc:
            raise status.bad_request(str(exc)) from exc
        for name in sorted(fields.fields):
            if not kind.supports_field(name):
                raise status.bad_request(f"field label not supported: {name}")
        return labels, fields

    def _list(
        self,
        request: Request,
        kind: Kind,
        namespace: str,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Response:
        items, rv = self.kube.store.list(
            kind.resource_key, namespace or None, labels=labels, fields=fields
        )
        token = request.param("continue")
        if token:
            after = parse_continue(token)
            # Items are sorted by (namespace, name): resume after the last one sent.
            items = [
                i
                for i in items
                if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > after
            ]
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = _number(request.param("limit"))
        if limit is not None and 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            position = [last.get("namespace", ""), last["name"]]
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"after": position, "rv": rv}).encode()
            ).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        shown = [present(kind, i) for i in items]
        if kind.builtin:  # typed lists carry no per-item kind and apiVersion
            shown = [{k: v for k, v in i.items() if k not in ("kind", "apiVersion")} for i in shown]
        body = {
            "kind": kind.list_kind,
            "apiVersion": kind.api_version,
            "metadata": metadata,
            "items": shown,
        }
        return _json(body, request=request)

    def _create(
        self, request: Request, kind: Kind, target: Target, user: rbac.UserInfo
    ) -> Response:
        body = _decode_body(request, kind.kind)
        if target.subresource == "token":
            return _json(self.kube.request_token(target.namespace, target.name, body), 201, request)
        if target.name and not target.subresource:
            raise status.method_not_allowed(
                "the server does not allow this method on the requested resource"
            )
        review = (
            _REVIEWS.get(kind.plural)
            if kind.group.startswith("authori") or kind.group.startswith("authenti")
            else None
        )
        if review == "TokenReview":
            return _json(self.kube.review_token(body), 201, request)
        if review == "SelfSubjectReview":
            reply = {
                "kind": "SelfSubjectReview",
                "apiVersion": kind.api_version,
                "metadata": {"creationTimestamp": None},
                "status": {"userInfo": user.to_json()},
            }
            return _json(reply, 201, request)
        if review is not None:
            return _json(
                self.kube.review_access(review, body, user, target.namespace), 201, request
            )
        created = self.kube.create(
            kind, target.namespace, body, dry_run=request.param("dryRun") == "All"
        )
        return _json(created, 201, request)

    def _patch(self, request: Request, kind: Kind, target: Target, dry_run: bool) -> Response:
        content_type = request.content_type
        if content_type == APPLY_PATCH:
            raise status.unsupported_media_type(
                "server-side apply is not supported by this emulator; use client-side apply - "
                f"accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}"
            )
        try:
            body = json.loads(request.body or b"null")
        except (UnicodeDecodeError, ValueError) as exc:
            raise status.bad_request(f"error decoding patch: {exc}") from exc
        patched = self.kube.patch(
            kind,
            target.namespace,
            target.name,
            content_type,
            body,
            subresource=target.subresource,
            dry_run=dry_run,
        )
        return _json(patched, request=request)

    def _delete_options(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.body:
            try:
                decoded = json.loads(request.body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise status.bad_request(f"error decoding DeleteOptions: {exc}") from exc
            if isinstance(decoded, dict):
                options = decoded
        for name in ("propagationPolicy", "gracePeriodSeconds"):
            value = request.param(name)
            if value is not None:
                options[name] = value
        return options

    def _delete_collection(
        self, request: Request, kind: Kind, namespace: str, dry_run: bool
    ) -> Response:
        labels, fields = self._selectors(request, kind)
        items, _ = self.kube.store.list(
            kind.resource_key, namespace or None, labels=labels, fields=fields
        )
        deleted = []
        for item in items:
            metadata = item["metadata"]
            with contextlib.suppress(status.StatusError):
                self.kube.delete(
                    kind, metadata.get("namespace", ""), metadata["name"], {}, dry_run=dry_run
                )
                deleted.append(present(kind, item))
        return _json(
            {
                "kind": kind.list_kind,
                "apiVersion": kind.api_version,
                "metadata": {},
                "items": deleted,
            },
            request=request,
        )

    # Watch.

    def _watch(
        self,
        request: Request,
        kind: Kind,
        namespace: str,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Streamer:
        raw = request.param("resourceVersion") or ""
        version = _number(raw)
        if raw and version is None:
            raise status.bad_request(f'resourceVersion: Invalid value: "{raw}": must be a number')
        since = version or None
        send_initial = _truthy(request.param("sendInitialEvents"))
        initial = since is None or send_initial
        bookmarks = _truthy(request.param("allowWatchBookmarks"))
        timeout = _number(request.param("timeoutSeconds")) or DEFAULT_WATCH_SECONDS
        store = self.kube.store
        bookmark_every = self.bookmark_seconds

        def chunk(kind_name: str, obj: dict[str, Any]) -> bytes:
            return (
                json.dumps({"type": kind_name, "object": obj}, separators=(",", ":")) + "\n"
            ).encode()

        def bookmark(rv: int, annotations: dict[str, str] | None = None) -> bytes:
            metadata: dict[str, Any] = {"resourceVersion": str(rv)}
            if annotations:
                metadata["annotations"] = annotations
            return chunk(
                "BOOKMARK",
                {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": metadata},
            )

        def selected(obj: dict[str, Any] | None) -> bool:
            return obj is not None and matches(obj, labels, fields)

        def translate(event: Event) -> bytes | None:
            now, before = selected(event.object), selected(event.previous)
            if event.type == ADDED:
                kind_name = ADDED if now else None
            elif event.type == MODIFIED:
                kind_name = (
                    MODIFIED if now and before else ADDED if now else DELETED if before else None
                )
            else:
                kind_name = DELETED if before or now else None
            return None if kind_name is None else chunk(kind_name, present(kind, event.object))

        async def stream(send: Send, receive: Receive) -> None:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Event] = asyncio.Queue()

            def deliver(event: Event) -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(queue.put_nowait, event)

            headers = [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-cache, private"),
                (b"audit-id", str(uuid.uuid4()).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            subscription = None
            try:
                subscription = store.watch(
                    kind.resource_key,
                    namespace=namespace or None,
                    since=since,
                    initial=initial,
                    callback=deliver,
                )
            except status.StatusError as exc:
                await send(
                    {
                        "type": "http.response.body",
                        "body": chunk("ERROR", exc.body),
                        "more_body": True,
                    }
                )
            disconnected = asyncio.ensure_future(_wait_disconnect(receive))
            deadline = loop.time() + timeout
            last_rv = store.resource_version
            try:
                if subscription is None:
                    return
                if send_initial and bookmarks:
                    # The initial ADDED events are already queued; the end marker follows them.
                    await _drain(queue, translate, send)
                    await send(
                        {
                            "type": "http.response.body",
                            "body": bookmark(
                                store.resource_version, {"k8s.io/initial-events-end": "true"}
                            ),
                            "more_body": True,
                        }
                    )
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    getter = asyncio.ensure_future(queue.get())
                    wait = min(remaining, bookmark_every) if bookmarks else remaining
                    done, _ = await asyncio.wait(
                        {getter, disconnected}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    if disconnected in done:
                        getter.cancel()
                        return
                    if getter in done:
                        event = getter.result()
                        last_rv = event.resource_version
                        body = translate(event)
                        if body is not None:
                            await send(
                                {"type": "http.response.body", "body": body, "more_body": True}
                            )
                        continue
                    getter.cancel()
                    if bookmarks and loop.time() < deadline:
                        last_rv = max(last_rv, store.resource_version)
                        await send(
                            {
                                "type": "http.response.body",
                                "body": bookmark(last_rv),
                                "more_body": True,
                            }
                        )
            finally:
                if subscription is not None:
                    subscription.cancel()
                if not disconnected.done():
                    disconnected.cancel()
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

        return stream


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _drain(
    queue: asyncio.Queue[Event], translate: Callable[[Event], bytes | None], send: Send
) -> None:
    await asyncio.sleep(0)  # let call_soon_threadsafe deliveries land
    while not queue.empty():
        body = translate(queue.get_nowait())
        if body is not None:
            await send({"type": "http.response.body", "body": body, "more_body": True})


def create_app(
    world: World, cluster: Cluster, *, bookmark_seconds: float = BOOKMARK_SECONDS
) -> ASGIApp:
    """The API server of `cluster`, sharing its state with every other user of `kube_cluster`."""
    return ApiServer(kube_cluster(world, cluster), bookmark_seconds=bookmark_seconds).app
