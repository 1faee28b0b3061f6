"""The metadata server, as a GCE VM, a GKE node (Workload Identity) or a Cloud Run instance sees it.

One app serves one caller's view: the instance named by the listener
(`metadata/<instance>` on loopback), else the instance whose `address` is the
request's source IP, else the world's first instance. The caller's flavour picks
the `Server` header and the tree of paths.

Layers: `parse_request` (pure) turns a path and query pairs into a validated
`MetadataRequest` or raises `MetadataRequestError`; `build_tree` (pure) turns the
world's records into a `Directory` tree; `resolve` and `render` (pure) pick a node
and encode it; the ASGI shell adds headers, tokens and `wait_for_change`.

What each behaviour rests on (read for facts only; no code was copied):

* `GET /` answers 200 with `Metadata-Flavor: Google` and needs no request header:
  google-auth's ping (`compute_engine/_metadata.py: ping`) requires status 200
  and that response header; the Go client's `OnGCE` probe of
  `http://169.254.169.254` sends no `Metadata-Flavor` and checks the response
  header (anchors.md section 4; gke-metadata-server issue 501).
* Every other path needs `Metadata-Flavor: Google`, else 403 `text/html` whose body
  says "Missing Metadata-Flavor:Google header"; any `X-Forwarded-For` is refused
  with 403 (GCE documentation on querying metadata; salrashid123's emulator,
  anchors.md section 4).
* `Server`: `Metadata Server for VM` | `GKE Metadata Server` |
  `Metadata Server for Serverless`: the strings Traffic Director's bootstrap
  generator (`deployment_info.go`) matches (anchors.md section 4).
* Content types: `application/text` for values and listings, `application/json`
  for JSON (google-auth decodes JSON only when the type parses to exactly
  `application/json`), HTML for errors; responses also carry `X-XSS-Protection: 0`
  and `X-Frame-Options: SAMEORIGIN` as GCE's do.
* Paths: google-auth reads `project/project-id`, `universe/universe-domain` (404
  means the default), `instance/service-accounts/{sa}/?recursive=true` (keys
  `aliases`, `email`, `scopes`), `.../token[?scopes=a,b]` (`access_token`,
  `expires_in`, `token_type`) and `.../identity?audience=X&format=full`; the Go
  client reads newline listings (`instance/attributes/`) and the `Etag` header;
  the TD generator reads `instance/zone`, `project/numeric-project-id`,
  `instance/attributes/cluster-{name,location}`, `instance/name`, `instance/id`
  and `instance/network-interfaces/0/ipv6s` (404 means none); the original krun
  reads `instance/region` and `instance/zone` as `projects/NUM/regions|zones/X`
  (seed-spec.md 4.1; Cloud Run container contract).
* Trees: a GKE metadata server is "a subset of the GCE API without VM metadata"
  (project ids, cluster-name/location/uid attributes, hostname, id, zone,
  service accounts); Cloud Run documents project ids, `instance/id`,
  `instance/region`, `instance/zone` and the service-account leaves, and has no
  attributes (Cloud Run container contract; kelseyhightower's emulator).
* `recursive=true` answers JSON with camelCase keys (attribute keys and account
  emails as given; `numericProjectId` and a VM's `id` as numbers;
  `networkInterfaces` as an array), never a token or an ID token; `alt=json|text`
  picks the encoding; the recursive text form is one `relative/path value` line per
  value (GCE "aggregate contents" documentation).
* A directory without its slash and without `recursive` answers 301 to the
  slashed path, as GCE does.
* `ETag` (16 hex digits, a hash of the body) on every 200; `wait_for_change=true`
  returns at once when `last_etag` differs, else when the value changes, else
  the current value after `timeout_sec` (GCE "waiting for updates"). We cap the
  wait at `MAX_WAIT_S` since the real server's unbounded hang only ties up tests.
* Access tokens are cached per account and scopes until fewer than
  `TOKEN_REFRESH_MARGIN_S` seconds remain (GCE documents five minutes).
* `identity`: `audience` is required ("non-empty audience parameter required");
  `format=full` adds `google.compute_engine` {project_id, project_number, zone,
  instance_id, instance_name, instance_creation_timestamp} on VMs and GKE, and
  `licenses=TRUE` adds `license_id` (GCE "verifying instance identity"). We
  always include `email`, which the world's other fakes match callers by.
* Only GET (and HEAD) exist; other methods get 405. google-auth POSTs only when an
  Agent Identity certificate is configured, which no world provides.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import quote, urlencode

from emulator.asgi import (
    REASONS,
    ASGIApp,
    Receive,
    Request,
    Response,
    http_app,
)
from emulator.errors import WorldLookupError
from emulator.world import Flavour, Instance, Principal, Project, ServiceAccount, World

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from emulator.tokens import AccessToken

HOSTNAMES = ("metadata.google.internal", "169.254.169.254")

MAX_WAIT_S = 3600
"""Longest `wait_for_change` hang; larger `timeout_sec` values are capped to it."""
TOKEN_REFRESH_MARGIN_S = 300
"""A cached access token is reissued once it has less than this left."""
ETAG_LENGTH = 16

TEXT_TYPE = "application/text"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=UTF-8"

# Parsing: path and query -> MetadataRequest.

_E = TypeVar("_E", bound=enum.StrEnum)


class MetadataRequestError(ValueError):
    """A request the metadata server refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Alt(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


class TokenFormat(enum.StrEnum):
    STANDARD = "standard"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """A validated metadata request: where, and every query parameter we honour."""

    segments: tuple[str, ...]
    """Path segments from the server root: `("computeMetadata", "v1", "instance", "id")`."""
    slash: bool
    """Whether the path ended with `/` (always true for the root)."""
    recursive: bool = False
    alt: Alt | None = None
    wait_for_change: bool = False
    last_etag: str | None = None
    timeout_sec: int | None = None
    audience: str | None = None
    token_format: TokenFormat | None = None
    licenses: bool = False
    scopes: tuple[str, ...] | None = None

    @property
    def path(self) -> str:
        if not self.segments:
            return "/"
        return "/" + "/".join(self.segments) + ("/" if self.slash else "")

    def query(self) -> list[tuple[str, str]]:
        """Query pairs that parse back to this request."""
        pairs: list[tuple[str, str]] = []
        if self.recursive:
            pairs.append(("recursive", "true"))
        if self.alt is not None:
            pairs.append(("alt", self.alt.value))
        if self.wait_for_change:
            pairs.append(("wait_for_change", "true"))
        if self.last_etag is not None:
            pairs.append(("last_etag", self.last_etag))
        if self.timeout_sec is not None:
            pairs.append(("timeout_sec", str(self.timeout_sec)))
        if self.audience is not None:
            pairs.append(("audience", self.audience))
        if self.token_format is not None:
            pairs.append(("format", self.token_format.value))
        if self.licenses:
            pairs.append(("licenses", "TRUE"))
        if self.scopes is not None:
            pairs.append(("scopes", ",".join(self.scopes)))
        return pairs

    @property
    def default_alt(self) -> Alt:
        """The encoding asked for: `alt`, else JSON when recursive, else text."""
        if self.alt is not None:
            return self.alt
        return Alt.JSON if self.recursive else Alt.TEXT


def parse_request(path: str, query: list[tuple[str, str]]) -> MetadataRequest:
    """Validate a decoded path and query pairs; MetadataRequestError names the bad part.

    Unknown query parameters are ignored, as the real server ignores them; a
    repeated parameter counts by its last value.
    """
    if not path.startswith("/"):
        raise MetadataRequestError(404, f"path {path[:80]!r} does not start with '/'")
    rest = path[1:]
    slash = rest == "" or rest.endswith("/")
    rest = rest.removesuffix("/")
    segments = tuple(rest.split("/")) if rest else ()
    for index, segment in enumerate(segments):
        if segment in ("", ".", ".."):
            raise MetadataRequestError(
                404, f"path segment {index + 1} of {path[:80]!r} is {segment!r}"
            )
    params = dict(query)
    timeout = _integer(params, "timeout_sec")
    return MetadataRequest(
        segments=segments,
        slash=slash,
        recursive=_boolean(params, "recursive"),
        alt=_choice(params, "alt", Alt),
        wait_for_change=_boolean(params, "wait_for_change"),
        last_etag=params.get("last_etag") or None,
        timeout_sec=None if timeout is None else min(timeout, MAX_WAIT_S),
        audience=params.get("audience") or None,
        token_format=_choice(params, "format", TokenFormat),
        licenses=_boolean(params, "licenses"),
        scopes=_scopes(params.get("scopes")),
    )


def _boolean(params: dict[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise MetadataRequestError(400, f"query parameter {name} must be true or false, got {value!r}")


def _integer(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise MetadataRequestError(
            400, f"query parameter {name} must be a whole number of seconds >= 0, got {value!r}"
        )
    # Beyond 12 digits every caller caps anyway; int() of thousands of digits is refused.
    return int(value) if len(value) <= 12 else 10**12


def _choice(params: dict[str, str], name: str, kind: type[_E]) -> _E | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return kind(value.lower())
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise MetadataRequestError(
            400, f"query parameter {name} must be one of {known}, got {value!r}"
        ) from None


def _scopes(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    scopes = tuple(s.strip() for s in value.split(",") if s.strip())
    return scopes or None


# The tree of paths, built from the world's records.


class Dynamic(enum.Enum):
    """Leaves computed per request, and never part of a recursive answer."""

    TOKEN = "token"  # noqa: S105 - a path name, not a secret
    IDENTITY = "identity"


Value: TypeAlias = str | int | tuple[str, ...]
Node: TypeAlias = "Directory | Value | Dynamic"


@dataclass(frozen=True, slots=True)
class Directory:
    entries: Mapping[str, Node]
    raw_keys: bool = False
    """JSON keys as given (attribute keys, account emails) instead of camelCase."""
    array: bool = False
    """Encode as a JSON array of the entries in index order (network interfaces)."""


def camel_case(name: str) -> str:
    """`numeric-project-id` -> `numericProjectId`, the recursive JSON spelling."""
    head, *tail = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in tail)


@dataclass(frozen=True, slots=True)
class CallerView:
    """What one caller's metadata tree is made of."""

    instance: Instance
    project: Project
    account: ServiceAccount | None


def build_tree(view: CallerView) -> Directory:
    """The whole tree, from `/` down, for one caller."""
    instance, project = view.instance, view.project
    flavour = instance.flavour
    number = project.number
    project_dir: dict[str, Node] = {"project-id": project.id, "numeric-project-id": number}
    entries: dict[str, Node] = {}
    accounts = _accounts_dir(instance, view.account)
    if accounts is not None:
        entries["service-accounts"] = accounts
    numeric_id: Value = int(instance.id) if _index(instance.id) else instance.id
    zone = f"projects/{number}/zones/{instance.zone}"
    if flavour is Flavour.SERVERLESS:
        entries |= {
            "id": instance.id,
            "region": f"projects/{number}/regions/{instance.region}",
            "zone": zone,
        }
    elif flavour is Flavour.GKE:
        entries |= {
            "attributes": Directory(dict(instance.attributes), raw_keys=True),
            "hostname": instance.hostname,
            "id": numeric_id,
            "name": instance.name,
            "zone": zone,
        }
    else:
        project_dir["attributes"] = Directory(dict(project.attributes), raw_keys=True)
        entries |= {
            "attributes": Directory(dict(instance.attributes), raw_keys=True),
            "cpu-platform": "Intel Broadwell",
            "hostname": instance.hostname,
            "id": numeric_id,
            "machine-type": f"projects/{number}/machineTypes/e2-medium",
            "maintenance-event": "NONE",
            "name": instance.name,
            "network-interfaces": Directory({"0": _interface(instance, number)}, array=True),
            "preempted": "FALSE",
            "zone": zone,
        }
    v1 = Directory(
        {
            "instance": Directory(entries),
            "project": Directory(project_dir),
            "universe": Directory({"universe-domain": "googleapis.com"}),
        }
    )
    return Directory({"computeMetadata": Directory({"v1": v1})})


def _accounts_dir(instance: Instance, account: ServiceAccount | None) -> Directory | None:
    if account is None:
        return None
    leaves: dict[str, Node] = {
        "aliases": ("default",),
        "email": account.email,
        "identity": Dynamic.IDENTITY,
        "scopes": tuple(instance.scopes),
        "token": Dynamic.TOKEN,
    }
    return Directory(
        {"default": Directory(leaves), account.email: Directory(leaves)}, raw_keys=True
    )


def _interface(instance: Instance, number: int) -> Directory:
    """Interface 0 on a default /20 subnet; GCE MACs are 42:01 then the IPv4 bytes."""
    address = ipaddress.IPv4Address(instance.network_ip)
    subnet = ipaddress.IPv4Network(f"{address}/20", strict=False)
    mac = "42:01:" + ":".join(f"{b:02x}" for b in address.packed)
    return Directory(
        {
            "gateway": str(subnet.network_address + 1),
            "ip": str(address),
            "mac": mac,
            "network": f"projects/{number}/networks/default",
            "subnetmask": str(subnet.netmask),
        }
    )


def resolve(tree: Directory, segments: tuple[str, ...]) -> Node:
    """The node at `segments`; MetadataRequestError(404) names the first missing one."""
    node: Node = tree
    for depth, segment in enumerate(segments):
        if not isinstance(node, Directory) or segment not in node.entries:
            shown = "/" + "/".join(segments[: depth + 1])
            raise MetadataRequestError(404, f"{shown} is not defined for this instance")
        node = node.entries[segment]
    return node


# Rendering: a node and a request -> body, content type, or a redirect.


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Redirect:
    location_path: str
    """The slashed path; the shell adds scheme, host and query."""


def render(node: Node, request: MetadataRequest) -> Rendered | Redirect:
    """Encode a static node as the request asks (dynamic leaves are the shell's)."""
    if isinstance(node, Dynamic):
        raise TypeError("dynamic leaves are rendered by the server, not by render()")
    if isinstance(node, Directory):
        if not request.slash and not request.recursive:
            return Redirect(request.path + "/")
        alt = request.default_alt
        if request.recursive:
            if alt is Alt.JSON:
                return _json(to_json(node))
            lines = "".join(f"{path} {value}\n" for path, value in text_pairs(node))
            return Rendered(lines.encode(), TEXT_TYPE)
        names = listing(node)
        if alt is Alt.JSON:
            return _json(names)
        return Rendered("".join(f"{name}\n" for name in names).encode(), TEXT_TYPE)
    if request.slash:
        raise MetadataRequestError(404, f"{request.path} is a value, not a directory")
    if request.default_alt is Alt.JSON:
        return _json(list(node) if isinstance(node, tuple) else node)
    return Rendered(value_text(node).encode(), TEXT_TYPE)


def _json(obj: Any) -> Rendered:
    return Rendered(json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE)


def listing(directory: Directory) -> list[str]:
    """Child names, directories with a trailing slash, in the order the server lists."""
    return [
        f"{name}/" if isinstance(child, Directory) else name
        for name, child in sorted(directory.entries.items(), key=_order)
    ]


def _order(item: tuple[str, Node]) -> tuple[int, str]:
    name = item[0]
    # Indexes sort as numbers, other names (attribute keys are anyone's text) after them.
    return (int(name), "") if _index(name) else (1 << 62, name)


def _index(name: str) -> bool:
    """Whether a name is a non-negative integer of at most 20 ASCII digits (a uint64)."""
    return name.isascii() and name.isdigit() and len(name) <= 20


def value_text(value: Value) -> str:
    """A value's text form: lists one item a line, the rest as is."""
    if isinstance(value, tuple):
        return "".join(f"{item}\n" for item in value)
    return str(value)


def to_json(node: Directory | Value) -> Any:
    """The recursive JSON form of a node; dynamic leaves are left out."""
    if isinstance(node, tuple):
        return list(node)
    if not isinstance(node, Directory):
        return node
    children = [
        (name, child)
        for name, child in sorted(node.entries.items(), key=_order)
        if not isinstance(child, Dynamic)
    ]
    if node.array:
        return [to_json(child) for _, child in children]
    return {name if node.raw_keys else camel_case(name): to_json(child) for name, child in children}


def text_pairs(directory: Directory, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(relative path, value) for every static value under a directory, lists repeated."""
    for name, child in sorted(directory.entries.items(), key=_order):
        path = prefix + name
        if isinstance(child, Directory):
            yield from text_pairs(child, path + "/")
        elif isinstance(child, tuple):
            for item in child:
                yield path, item
        elif not isinstance(child, Dynamic):
            yield path, str(child)


def etag_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:ETAG_LENGTH]


# The ASGI shell.


def error_page(status: int, message: str) -> bytes:
    """The small HTML page every error carries."""
    reason = REASONS.get(status, "Error")
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<meta charset=utf-8>\n"
        f"<title>Error {status} ({escape(reason)})</title>\n"
        f"<p><b>{status}.</b> {escape(message)}\n</html>\n"
    ).encode()


def _error(status: int, message: str) -> Response:
    return Response(status, error_page(status, message), [("content-type", HTML_TYPE)])


def _with_server_headers(response: Response, flavour: Flavour) -> Response:
    """Headers the real server puts on every answer, errors included."""
    response.headers += [
        ("metadata-flavor", "Google"),
        ("server", flavour.server_header),
        ("x-xss-protection", "0"),
        ("x-frame-options", "SAMEORIGIN"),
    ]
    return response


def _ok(rendered: Rendered) -> Response:
    headers = [("content-type", rendered.content_type), ("etag", etag_of(rendered.body))]
    return Response(200, rendered.body, headers)


TOKEN_CACHE_SIZE = 1024
"""Distinct (account, scopes) pairs remembered; a new pair past this evicts the oldest."""


class _TokenCache:
    """Access tokens per (account, scopes), reused until close to expiry like GCE does."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, tuple[str, ...]], AccessToken] = {}

    def get(self, world: World, email: str, scopes: tuple[str, ...]) -> AccessToken:
        now = world.clock()
        key = (email, scopes)
        cached = self._tokens.get(key)
        if (
            cached is not None
            and world.tokens.resolve_access_token(cached.token, now=now) is not None
            and cached.expires_in(now) > TOKEN_REFRESH_MARGIN_S
        ):
            return cached
        token = world.tokens.issue_access_token(
            Principal.for_email(email), scopes, now=now, lifetime=world.token_lifetime
        )
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            # Callers choose the scopes, so the key space is theirs: forget the oldest.
            self._tokens.pop(next(iter(self._tokens)))
        self._tokens[key] = token
        return token


def _caller_instance(world: World, caller: str | None, request: Request) -> Instance | None:
    if caller is not None:
        return world.instances.get(caller)
    if request.client is not None:
        found = world.instance_by_address(request.client[0])
        if found is not None:
            return found
    return next(iter(world.instances.values()), None)


def _caller_view(world: World, instance: Instance) -> CallerView | None:
    try:
        project = world.project(instance.project_id)
    except WorldLookupError:
        return None
    account = None
    if instance.service_account is not None:
        try:
            account = world.service_account(instance.service_account)
        except WorldLookupError:
            account = None
    return CallerView(instance, project, account)


def _creation_timestamp(project: Project) -> int:
    """Instances have no creation time of their own in a world: use their project's."""
    try:
        return int(dt.datetime.fromisoformat(project.create_time).timestamp())
    except ValueError:
        return 0


class _Server:
    """Answers one caller-resolving listener's requests."""

    def __init__(self, world: World, caller: str | None) -> None:
        self.world = world
        self.caller = caller
        self.tokens = _TokenCache()

    async def handle(
        self, request: Request, disconnected: Callable[[], Awaitable[None]]
    ) -> Response:
        instance = _caller_instance(self.world, self.caller, request)
        flavour = instance.flavour if instance is not None else Flavour.VM
        response = await self._respond(request, instance, disconnected)
        return _with_server_headers(response, flavour)

    def unreadable(self, status: int, message: str) -> Response:
        """The answer to a request that could not even be read (bad query, huge body)."""
        instance = self.world.instances.get(self.caller) if self.caller else None
        flavour = instance.flavour if instance is not None else Flavour.VM
        return _with_server_headers(_error(status, message), flavour)

    async def _respond(
        self,
        request: Request,
        instance: Instance | None,
        disconnected: Callable[[], Awaitable[None]],
    ) -> Response:
        if request.method not in ("GET", "HEAD"):
            response = _error(405, f"method {request.method} is not allowed; use GET")
            response.headers.append(("allow", "GET, HEAD"))
            return response
        if request.header("x-forwarded-for") is not None:
            return _error(
                403, "Request had an X-Forwarded-For header and was refused: no proxying."
            )
        if request.path != "/" and request.header("metadata-flavor") != "Google":
            return _error(
                403,
                f"Your client does not have permission to get URL {request.path} from this "
                "server. Missing Metadata-Flavor:Google header.",
            )
        try:
            parsed = parse_request(request.path, request.query)
        except MetadataRequestError as exc:
            return _error(exc.status, exc.message)
        if instance is None and parsed.segments:
            return _error(404, "this world has no instance to answer for")
        if not parsed.wait_for_change:
            return self._answer(parsed, instance, request)
        return await self._wait(parsed, instance, request, disconnected)

    def _answer(
        self, parsed: MetadataRequest, instance: Instance | None, request: Request
    ) -> Response:
        if instance is None:
            return _ok(Rendered(b"computeMetadata/\n", TEXT_TYPE))
        view = _caller_view(self.world, instance)
        if view is None:
            return _error(404, f"instance {instance.name} has no project in this world")
        try:
            node = resolve(build_tree(view), parsed.segments)
            if isinstance(node, Dynamic):
                return self._dynamic(node, parsed, view)
            rendered = render(node, parsed)
        except MetadataRequestError as exc:
            return _error(exc.status, exc.message)
        if isinstance(rendered, Redirect):
            return self._redirect(rendered, request)
        return _ok(rendered)

    @staticmethod
    def _redirect(redirect: Redirect, request: Request) -> Response:
        location = quote(redirect.location_path, safe="/")
        host = request.header("host")
        if host:
            location = f"http://{host}{location}"
        if request.query:
            location += "?" + urlencode(request.query)
        body = error_page(301, f"The document has moved to {location}")
        return Response(301, body, [("content-type", HTML_TYPE), ("location", location)])

    def _dynamic(self, node: Dynamic, parsed: MetadataRequest, view: CallerView) -> Response:
        # Under service-accounts/{default|EMAIL}/: the tree exists only with an account.
        account = view.account
        if account is None or parsed.slash:
            raise MetadataRequestError(404, f"{parsed.path} is not defined for this instance")
        now = self.world.clock()
        if node is Dynamic.TOKEN:
            scopes = parsed.scopes or tuple(view.instance.scopes)
            token = self.tokens.get(self.world, account.email, scopes)
            return _ok(
                _json(
                    {
                        "access_token": token.token,
                        "expires_in": token.expires_in(now),
                        "token_type": "Bearer",
                    }
                )
            )
        if parsed.audience is None:
            return _error(400, "non-empty audience parameter required")
        extra: dict[str, Any] = {}
        if parsed.token_format is TokenFormat.FULL and view.instance.flavour is not (
            Flavour.SERVERLESS
        ):
            instance = view.instance
            compute: dict[str, Any] = {
                "instance_creation_timestamp": _creation_timestamp(view.project),
                "instance_id": instance.id,
                "instance_name": instance.name,
                "project_id": view.project.id,
                "project_number": view.project.number,
                "zone": instance.zone,
            }
            if parsed.licenses:
                compute["license_id"] = []
            extra["google"] = {"compute_engine": compute}
        token_text = self.world.tokens.id_token(
            subject=account.unique_id,
            audience=parsed.audience,
            email=account.email,
            now=now,
            extra=extra,
        )
        return _ok(Rendered(token_text.encode(), TEXT_TYPE))

    async def _wait(
        self,
        parsed: MetadataRequest,
        instance: Instance | None,
        request: Request,
        disconnected: Callable[[], Awaitable[None]],
    ) -> Response:
        loop = asyncio.get_running_loop()
        timeout = MAX_WAIT_S if parsed.timeout_sec is None else parsed.timeout_sec
        deadline = loop.time() + timeout
        baseline = parsed.last_etag
        if baseline is None:
            # Without last_etag, the value as it is now is what the caller waits to see change.
            first = self._answer(parsed, instance, request)
            baseline = _etag_header(first)
            if baseline is None:
                return first
        gone = asyncio.ensure_future(disconnected())
        try:
            while True:
                changed = asyncio.Event()
                # Subscribe before reading, so a change between the two is not missed.
                self.world.subscribe(loop, changed)
                try:
                    response = self._answer(parsed, instance, request)
                    remaining = deadline - loop.time()
                    if _etag_header(response) != baseline or remaining <= 0:
                        return response
                    woken = asyncio.ensure_future(changed.wait())
                    done, _ = await asyncio.wait(
                        {woken, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                    woken.cancel()
                finally:
                    # Timed-out or abandoned waits must not pile up subscriptions.
                    self.world.unsubscribe(loop, changed)
                if gone in done:
                    return response
                if not done:
                    return self._answer(parsed, instance, request)
        finally:
            gone.cancel()


def _etag_header(response: Response) -> str | None:
    """The ETag of a 200, None for anything else."""
    if response.status != 200:
        return None
    return next((value for name, value in response.headers if name == "etag"), None)


def create_app(world: World, caller: str | None) -> ASGIApp:
    """The metadata server for `caller` (an instance name), or by source address when None."""
    server = _Server(world, caller)

    async def handle(request: Request, receive: Receive) -> Response:
        response = await server.handle(request, lambda: _disconnect(receive))
        if request.method == "HEAD":
            response.headers.append(("content-length", str(len(response.body))))
            response.body = b""
        return response

    return http_app(handle, error=server.unreadable, service="metadata")


async def _disconnect(receive: Receive) -> None:
    """Return once the client has gone (the request body was already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


__all__ = [
    "HOSTNAMES",
    "Alt",
    "CallerView",
    "Directory",
    "Dynamic",
    "MetadataRequest",
    "MetadataRequestError",
    "Redirect",
    "Rendered",
    "TokenFormat",
    "build_tree",
    "camel_case",
    "create_app",
    "parse_request",
    "render",
    "resolve",
    "to_json",
]
