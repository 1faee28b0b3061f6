"""istiod: the Istio CA, ADS and SDS on one TLS port (15012 in a world), plus a debug app.

One `Istiod` per mesh cluster of the world (a GKE cluster with a `mesh_id` label, as
the launcher's discovery selects them). It serves, with grpc.aio:

* `istio.v1.auth.IstioCertificateService/CreateCertificate` (see `ca.py`);
* `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`,
  state of the world (delta answers UNIMPLEMENTED, which clients fall back from);
* `envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets`, and secrets over ADS.

Every stream is authenticated like a CA call (`authorization: Bearer <Kubernetes
JWT>`, UNAUTHENTICATED otherwise) and authorised as istiod does: the token's
namespace must be the proxy's (PERMISSION_DENIED otherwise).

**Choice (SDS)**: Istio's agent serves `default` and `ROOTCA` to Envoy over a local
socket; until the launcher's agent exists, istiod itself answers SDS for the
authenticated identity, minting the key in one step (`IstioCA.issue`). The Envoy
configuration names cluster `sds-grpc` exactly as with the agent, so only the
bootstrap decides who serves secrets: point `sds-grpc` at istiod (tests) or at the
agent's socket (the launcher), with no change here.

The debug app (plain HTTP, loopback) shows per connection what was last sent and
ACKed, like istiod's `/debug/syncz` and `/debug/config_dump?proxyID=`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import json_format  # type: ignore[import-untyped]

from emulator import asgi
from emulator.istio import ads, envoy, grpcgen, protos
from emulator.istio.ca import (
    AuthenticationError,
    Authenticator,
    CAError,
    DeniedError,
    Identity,
    IstioCA,
    KubeJwtAuthenticator,
)
from emulator.istio.from_kube import KubeSync
from emulator.istio.model import MeshModel
from emulator.istio.nodes import NodeError, Proxy, ProxyKind, parse_node
from emulator.istio.resources import Resource
from emulator.kube.cluster import kube_cluster
from emulator.serve import ServiceSpec
from emulator.world import Cluster, World

log = logging.getLogger("emulator.istio")

HOSTNAMES = (
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "istiod",
)
"""Names on istiod's certificate (krun's `ISTIOD_SAN` is the first)."""
MESH_LABEL = "mesh_id"
_lock = threading.Lock()


def mesh_key(cluster: Cluster) -> str:
    return f"{cluster.project_id}/{cluster.name}"


def mesh_clusters(world: World) -> list[Cluster]:
    """Clusters that run an istiod: those with a `mesh_id` resource label."""
    return [c for c in world.all_clusters() if c.resource_labels.get(MESH_LABEL)]


@dataclass(slots=True)
class Connection:
    """One ADS or SDS stream of one proxy."""

    id: str
    rpc: str
    proxy: Proxy
    identity: Identity
    peer: str
    connected_at: float
    queue: asyncio.Queue[discovery_pb2.DiscoveryResponse | None] = field(
        default_factory=asyncio.Queue
    )
    watches: dict[str, ads.Watch] = field(default_factory=dict)
    sent: dict[str, dict[str, Resource]] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def version_of(resources: dict[str, Resource]) -> str:
    """A version that names the content: equal resources, equal version."""
    body = json.dumps(resources, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()[:12]


class Istiod:
    """The control plane of one mesh cluster, over a MeshModel."""

    def __init__(
        self,
        world: World,
        cluster: Cluster,
        *,
        model: MeshModel | None = None,
        authenticator: Authenticator | None = None,
        ca: IstioCA | None = None,
        cluster_id: str | None = None,
        follow_kube: bool = True,
    ) -> None:
        self.world = world
        self.follow_kube = follow_kube
        """Whether the model follows the cluster's emulated API server (from_kube.KubeSync)."""
        self.cluster = cluster
        self.trust_domain = cluster.workload_pool
        self.cluster_id = cluster_id or cluster.name
        self.model = model or MeshModel(self.trust_domain)
        self.ca = ca or IstioCA.under(world.pki, cluster.name)
        self.authenticator: Authenticator = authenticator or KubeJwtAuthenticator(
            world, cluster, trust_domain=self.trust_domain, cluster_id=self.cluster_id
        )
        self.connections: dict[str, Connection] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=200)
        self._issued: dict[Identity, tuple[list[str], str, float]] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._sync: KubeSync | None = None

    # Serving (the ServiceSpec.server protocol of emulator/serve.py).

    async def start(self, host: str, port: int) -> str:
        """Bind, serve, return the `https://HOST:PORT` URL."""
        names = [*HOSTNAMES, host, "localhost", "127.0.0.1"]
        cert = self.world.pki.issue_server(
            list(dict.fromkeys(n for n in names if n not in ("0.0.0.0", "::")))
        )
        server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Ads(self), server)
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(_Sds(self), server)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    protos.CA_SERVICE,
                    {
                        "CreateCertificate": grpc.unary_unary_rpc_method_handler(
                            self.create_certificate,
                            request_deserializer=protos.IstioCertificateRequest.FromString,
                            response_serializer=protos.IstioCertificateResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        shown = f"[{host}]" if ":" in host else host
        bound = server.add_secure_port(
            f"{shown}:{port}", grpc.ssl_server_credentials([(cert.key_pem, cert.cert_pem)])
        )
        await server.start()
        self._server = server
        self._pusher = asyncio.get_running_loop().create_task(self._push_on_change())
        if self.follow_kube:
            self._sync = KubeSync(
                kube_cluster(self.world, self.cluster), self.model, self.ca.root_pem
            )
            self._sync.start()
        log.info("istiod.started", extra={"cluster": mesh_key(self.cluster), "port": bound})
        return f"https://{shown}:{bound}"

    async def stop(self) -> None:
        if self._sync is not None:
            await self._sync.stop()
            self._sync = None
        if self._pusher is not None:
            self._pusher.cancel()
            self._pusher = None
        for conn in list(self.connections.values()):
            conn.queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=0.2)
            self._server = None

    # CA.

    async def create_certificate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """`IstioCertificateService/CreateCertificate`."""
        metadata = {k.lower(): v for k, v in context.invocation_metadata() or ()}
        try:
            identity = self._authenticate(metadata)
            struct = json_format.MessageToDict(request.metadata)
            if struct.get("ImpersonatedIdentity"):
                raise DeniedError(
                    f"{identity.spiffe} may not request a certificate for another identity"
                )
            chain = self.ca.sign(
                request.csr, identity, ttl=request.validity_duration, now=self.world.clock()
            )
        except CAError as exc:
            log.info("istiod.ca.refused", extra={"code": exc.code, "reason": str(exc)})
            await context.abort(grpc.StatusCode[exc.code], str(exc))
        self._note("ca", identity=identity.spiffe, ttl=request.validity_duration)
        return protos.IstioCertificateResponse(cert_chain=chain)

    def _authenticate(self, metadata: dict[str, str]) -> Identity:
        return self.authenticator.authenticate(
            asgi.parse_bearer(metadata.get("authorization")),
            cluster_id=metadata.get("clusterid"),
            now=self.world.clock(),
        )

    # xDS.

    async def stream(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
        rpc: str,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        """One SotW stream: authenticate, identify the node, then answer and push."""
        metadata = {k.lower(): v for k, v in context.invocation_metadata() or ()}
        try:
            identity = self._authenticate(metadata)
        except AuthenticationError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failure: {exc}")
        try:
            first = await anext(aiter(requests))
        except StopAsyncIteration:
            return
        try:
            proxy = parse_node(first.node.id, json_format.MessageToDict(first.node.metadata))
        except NodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if identity.namespace != proxy.namespace:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"authorization failed: identity {identity.spiffe} is not in the proxy's "
                f"namespace {proxy.namespace!r}",
            )
        conn = Connection(
            id=f"{proxy.pod or proxy.ip}-{next(self._ids)}",
            rpc=rpc,
            proxy=proxy,
            identity=identity,
            peer=context.peer(),
            connected_at=self.world.clock(),
        )
        self.connections[conn.id] = conn
        self._note("connect", connection=conn.id, node=proxy.node_id, rpc=rpc)
        reader = asyncio.get_running_loop().create_task(self._read(conn, first, requests))
        try:
            while (response := await conn.queue.get()) is not None:
                yield response
        finally:
            reader.cancel()
            self.connections.pop(conn.id, None)
            self._note("disconnect", connection=conn.id)

    async def _read(
        self,
        conn: Connection,
        first: discovery_pb2.DiscoveryRequest,
        rest: AsyncIterator[discovery_pb2.DiscoveryRequest],
    ) -> None:
        try:
            self._handle(conn, first)
            async for request in rest:
                self._handle(conn, request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("istiod.stream.failed", extra={"connection": conn.id})
        conn.queue.put_nowait(None)

    def _handle(self, conn: Connection, message: discovery_pb2.DiscoveryRequest) -> None:
        type_url = message.type_url or (protos.SECRET if conn.rpc == "sds" else "")
        error = message.error_detail.message if message.HasField("error_detail") else None
        request = ads.Request(
            type_url,
            tuple(message.resource_names),
            message.version_info,
            message.response_nonce,
            error,
        )
        watch, kind = ads.on_request(conn.watches.get(type_url), request)
        conn.watches[type_url] = watch
        short = protos.SHORT.get(type_url, type_url)
        if kind is ads.Kind.NACK:
            log.warning(
                "xds.nack %s %s version=%s: %s",
                conn.id,
                short,
                watch.nacked_version,
                error,
            )
        elif kind is ads.Kind.ACK:
            conn.acked_at[type_url] = self.world.clock()
        self._note(kind.value, connection=conn.id, type=short, version=message.version_info)
        if ads.responds(kind):
            self._send(conn, type_url, self._render(conn, watch))

    def _render(self, conn: Connection, watch: ads.Watch) -> dict[str, Resource]:
        if watch.type_url == protos.SECRET:
            return self._secrets(conn, watch.names)
        snap = self.model.snapshot()
        if conn.proxy.kind is ProxyKind.GRPC:
            return grpcgen.resources(snap, conn.proxy, watch.type_url, watch.names)
        everything = envoy.resources(snap, conn.proxy, watch.type_url)
        if watch.wildcard:
            return everything
        return {name: r for name, r in everything.items() if name in watch.names}

    def _send(self, conn: Connection, type_url: str, resources: dict[str, Resource]) -> None:
        version = version_of(resources)
        nonce = f"{conn.id}-{next(conn.nonces)}"
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[protos.pack(type_url, r) for r in resources.values()],
        )
        conn.watches[type_url] = ads.on_sent(conn.watches[type_url], version, nonce)
        conn.sent[type_url] = resources
        conn.sent_at[type_url] = self.world.clock()
        conn.queue.put_nowait(response)

    def _secrets(self, conn: Connection, names: frozenset[str]) -> dict[str, Resource]:
        found: dict[str, Resource] = {}
        if "default" in names:
            chain, key = self._workload_cert(conn.identity)
            found["default"] = {
                "name": "default",
                "tls_certificate": {
                    "certificate_chain": {"inline_string": "".join(chain)},
                    "private_key": {"inline_string": key},
                },
            }
        if "ROOTCA" in names:
            found["ROOTCA"] = {
                "name": "ROOTCA",
                "validation_context": {"trusted_ca": {"inline_string": self.ca.root_pem}},
            }
        return found

    def _workload_cert(self, identity: Identity) -> tuple[list[str], str]:
        now = self.world.clock()
        issued = self._issued.get(identity)
        # Renew at half life, as Istio's agent does.
        if issued is None or now > issued[2]:
            chain, key = self.ca.issue(identity, now=now)
            issued = (chain, key, now + self.ca.default_ttl / 2)
            self._issued[identity] = issued
        return issued[0], issued[1]

    async def _push_on_change(self) -> None:
        loop = asyncio.get_running_loop()
        seen = self.model.generation
        while True:
            changed = asyncio.Event()
            self.model.subscribe(loop, changed)
            if self.model.generation == seen:
                await changed.wait()
            seen = self.model.generation
            for conn in list(self.connections.values()):
                try:
                    self.push(conn)
                except Exception:
                    log.exception("istiod.push.failed", extra={"connection": conn.id})

    def push(self, conn: Connection) -> None:
        """Send every subscribed type of one connection whose content changed."""
        for type_url in protos.PUSH_ORDER:
            watch = conn.watches.get(type_url)
            if watch is None or not watch.subscribed:
                continue
            resources = self._render(conn, watch)
            if ads.push_due(watch, version_of(resources)):
                self._send(conn, type_url, resources)

    def _note(self, event: str, **fields: Any) -> None:
        self.events.append({"time": self.world.clock(), "event": event, **fields})

    def synced(self, proxy: str | None = None) -> bool:
        """Whether proxies (all, or POD.NAMESPACE) ACKed what they would be sent now.

        An Envoy must have subscribed to LDS and CDS; call this on istiod's loop.
        """
        if self._sync is not None and self._sync.pending:
            return False
        conns = [
            c
            for c in self.connections.values()
            if proxy is None or f"{c.proxy.pod}.{c.proxy.namespace}" == proxy
        ]
        if proxy is not None and not any(c.rpc == "ads" for c in conns):
            return False
        for conn in conns:
            envoy_ads = conn.rpc == "ads" and conn.proxy.kind is not ProxyKind.GRPC
            if envoy_ads and not {protos.LISTENER, protos.CLUSTER} <= set(conn.watches):
                return False
            for watch in conn.watches.values():
                if watch.subscribed and watch.acked_version != version_of(
                    self._render(conn, watch)
                ):
                    return False
        return True

    # Debug.

    def syncz(self) -> list[dict[str, Any]]:
        """Per connection and type: subscription, sent and ACKed versions, last NACK."""
        out = []
        for conn in sorted(self.connections.values(), key=lambda c: c.id):
            types = {}
            for type_url, watch in sorted(conn.watches.items()):
                types[protos.SHORT.get(type_url, type_url)] = {
                    "names": sorted(watch.names),
                    "wildcard": watch.wildcard,
                    "sent_version": watch.sent_version,
                    "sent_nonce": watch.sent_nonce,
                    "acked_version": watch.acked_version,
                    "acked": bool(watch.sent_version) and watch.acked_version == watch.sent_version,
                    "nack": watch.nack,
                    "resources": sorted(conn.sent.get(type_url, {})),
                    "sent_at": conn.sent_at.get(type_url),
                    "acked_at": conn.acked_at.get(type_url),
                    "history": list(watch.history),
                }
            out.append(
                {
                    "connection": conn.id,
                    "rpc": conn.rpc,
                    "node": conn.proxy.node_id,
                    "proxy": f"{conn.proxy.pod}.{conn.proxy.namespace}",
                    "kind": conn.proxy.kind.value,
                    "identity": conn.identity.spiffe,
                    "peer": conn.peer,
                    "types": types,
                }
            )
        return out

    def config_dump(self, proxy_id: str) -> dict[str, Any] | None:
        """What was last sent to a proxy (node id or POD.NAMESPACE), keys redacted."""
        conns = [
            c
            for c in self.connections.values()
            if proxy_id in (c.proxy.node_id, f"{c.proxy.pod}.{c.proxy.namespace}")
        ]
        if not conns:
            return None
        dump: dict[str, dict[str, Resource]] = {}
        for conn in sorted(conns, key=lambda c: c.id):
            for type_url, resources in conn.sent.items():
                dump.setdefault(protos.SHORT.get(type_url, type_url), {}).update(resources)
        for secret in dump.get("SDS", {}).values():
            key = secret.get("tls_certificate", {}).get("private_key")
            if key is not None:
                secret["tls_certificate"] = {
                    **secret["tls_certificate"],
                    "private_key": "[redacted]",
                }
        return {"node": conns[0].proxy.node_id, "resources": dump}

    def debug_app(self) -> asgi.ASGIApp:
        router = asgi.Router()

        async def healthz(request: asgi.Request) -> asgi.Response:
            return asgi.Response.text("ok\n")

        async def syncz(request: asgi.Request) -> asgi.Response:
            return asgi.Response.json(self.syncz())

        async def config_dump(request: asgi.Request) -> asgi.Response:
            proxy_id = request.param("proxyID") or ""
            dump = self.config_dump(proxy_id)
            if dump is None:
                return asgi.google_error(404, f"no connected proxy {proxy_id!r}")
            return asgi.Response.json(dump)

        async def mesh(request: asgi.Request) -> asgi.Response:
            return asgi.Response.json(self.model.snapshot().to_json())

        async def events(request: asgi.Request) -> asgi.Response:
            return asgi.Response.json(list(self.events))

        async def root(request: asgi.Request) -> asgi.Response:
            return asgi.Response.text(self.ca.root_pem, content_type="application/x-pem-file")

        router.add("GET", r"/healthz", healthz)
        router.add("GET", r"/debug/syncz", syncz)
        router.add("GET", r"/debug/config_dump", config_dump)
        router.add("GET", r"/debug/mesh", mesh)
        router.add("GET", r"/debug/events", events)
        router.add("GET", r"/root-cert.pem", root)
        return asgi.json_api_app(router, service="istiod-debug")


class _Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, istiod: Istiod) -> None:
        self._istiod = istiod

    async def StreamAggregatedResources(  # noqa: N802 - the gRPC method name
        self, requests: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        # grpc.aio picks streaming by the method itself being an async generator.
        async for response in self._istiod.stream(requests, context, "ads"):
            yield response


class _Sds(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, istiod: Istiod) -> None:
        self._istiod = istiod

    async def StreamSecrets(  # noqa: N802 - the gRPC method name
        self, requests: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        # grpc.aio picks streaming by the method itself being an async generator.
        async for response in self._istiod.stream(requests, context, "sds"):
            yield response


async def _not_http(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
    """Placeholder app for a spec whose own server answers (never called)."""
    await asgi.send_response(send, asgi.google_error(404, "istiod speaks gRPC only"))


def mesh_model(cluster: Cluster) -> MeshModel:
    """The cluster's mesh model, made on first use and kept on the Cluster."""
    with _lock:
        if cluster.mesh is None:
            cluster.mesh = MeshModel(cluster.workload_pool)
        return cluster.mesh


def create_server(world: World, cluster: Cluster, **options: Any) -> Istiod:
    """The istiod of one cluster, over that cluster's mesh model."""
    return Istiod(world, cluster, model=mesh_model(cluster), **options)


def service_specs(world: World, *, host: str = "127.0.0.1") -> list[ServiceSpec]:
    """`istiod/PROJECT/CLUSTER` (gRPC over TLS) and `istiod-debug/...` for each mesh cluster."""
    specs = []
    for cluster in mesh_clusters(world):
        istiod = create_server(world, cluster)
        key = mesh_key(cluster)
        specs.append(
            ServiceSpec(
                f"istiod/{key}", _not_http, tls=True, hostnames=HOSTNAMES, host=host, server=istiod
            )
        )
        # Loopback only, like the admin API: it shows every proxy's configuration.
        specs.append(ServiceSpec(f"istiod-debug/{key}", istiod.debug_app(), tls=False))
    return specs
