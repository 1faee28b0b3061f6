"""Pods: a namespace each, interception installed as istio-init does, then the app.

Start order follows Kubernetes with a native sidecar: `register` (the Pod exists
in the API server before anything runs in it), the init step (interception
rules, applied atomically with `iptables-restore` inside the pod's namespace),
the sidecar (returns once it is ready), the app, then, once every declared port
accepts connections, `ready` (the Pod turns Running/Ready). The hooks are
optional; the builder's defaults (`mesh.py`) register the pod in its cluster's
emulated API server and run a real Envoy fed by the cluster's istiod. Without a
sidecar, captured traffic meets closed ports 15001/15006, as in a pod whose
proxy has not started.

`istio_rules` is a plain stand-in for the launcher's rule generator (the `rules`
hook): the subset of istio-init's REDIRECT mode that the feasibility prototype
verified.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.world import netns
from scenarios.world.errors import SandboxError
from scenarios.world.sandbox import NamespaceProcess
from scenarios.world.spec import PodRun
from scenarios.world.sweep import WorldState

PROXY_UID = 1337
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
INBOUND_EXCLUDED = (15008, 15020, 15021, 15090)


def istio_rules(
    *,
    proxy_uid: int = PROXY_UID,
    proxy_gid: int = PROXY_UID,
    excluded: tuple[int, ...] = INBOUND_EXCLUDED,
) -> str:
    """An iptables-restore document: inbound TCP to :15006, outbound TCP to :15001.

    The proxy's own traffic (uid/gid 1337) and loopback traffic of the app are
    left alone; the proxy's inbound hop (source 127.0.0.6) is never re-captured.
    """
    lines = [
        "*nat",
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
    ]
    lines += [f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN" for port in excluded]
    lines += [
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_PORT}",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
    ]
    for kind, owner in (("uid", proxy_uid), ("gid", proxy_gid)):
        lines += [
            (
                f"-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --{kind}-owner {owner} "
                "-j ISTIO_IN_REDIRECT"
            ),
            f"-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {owner} -j RETURN",
            f"-A ISTIO_OUTPUT -m owner --{kind}-owner {owner} -j RETURN",
        ]
    lines += [
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def apply_rules(netns_name: str, rules: str) -> None:
    """Load an iptables-restore document inside a namespace, atomically."""
    done = subprocess.run(  # noqa: S603
        netns.exec_argv(netns_name, ["iptables-restore"]),
        input=rules.encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise SandboxError(
            f"iptables-restore in {netns_name} failed: {done.stderr.decode(errors='replace')}"
        )


@dataclass
class PodContext:
    """What a hook knows about the pod it serves."""

    spec: PodRun
    netns: str
    address: str
    env: dict[str, str]
    logs_dir: Path
    state: WorldState
    ca_file: Path


Sidecar = Callable[[PodContext], list[NamespaceProcess]]
"""Starts the pod's sidecar processes (running and ready when it returns)."""
Register = Callable[[PodContext], Callable[[], None] | None]
"""Registers the pod with the emulated API server; returns how to unregister."""
Ready = Callable[[PodContext], None]
"""Reports the pod ready (its app's ports accept connections)."""
READY_TIMEOUT = 30.0


@dataclass
class PodHooks:
    sidecar: Sidecar | None = None
    register: Register | None = None
    ready: Ready | None = None
    rules: Callable[[PodRun], str] = field(default=lambda _spec: istio_rules())


@dataclass
class Pod:
    context: PodContext
    app: NamespaceProcess
    sidecars: list[NamespaceProcess] = field(default_factory=list)
    unregister: Callable[[], None] | None = None

    @property
    def name(self) -> str:
        return self.context.spec.name

    @property
    def netns(self) -> str:
        return self.context.netns

    @property
    def address(self) -> str:
        return self.context.address

    def stop(self, grace: float) -> None:
        if self.unregister is not None:
            self.unregister()
            self.unregister = None
        self.app.stop(grace)
        for sidecar in self.sidecars:
            sidecar.stop(grace)


def start_pod(context: PodContext, argv: list[str], hooks: PodHooks, *, grace: float) -> Pod:
    """Registration, init (rules), sidecar, app, readiness: in that order.

    A failure stops whatever already started (and unregisters) before it propagates.
    """
    spec = context.spec
    from scenarios.world.sandbox import Logs  # noqa: PLC0415 - avoid a cycle at import

    app = NamespaceProcess(
        name=f"pod/{spec.name}",
        netns=context.netns,
        argv=argv,
        env=context.env,
        logs=Logs.under(context.logs_dir, f"pod-{spec.name}"),
        state=context.state,
        uid=spec.user,
    )
    pod = Pod(context, app)
    try:
        if hooks.register is not None:
            pod.unregister = hooks.register(context)
        if spec.interception == "istio":
            apply_rules(context.netns, hooks.rules(spec))
        if hooks.sidecar is not None:
            pod.sidecars = hooks.sidecar(context)
        app.start()
        for port in spec.ports:
            netns.wait_tcp(context.netns, "127.0.0.1", port, timeout=READY_TIMEOUT, alive=app.alive)
        if hooks.ready is not None:
            hooks.ready(context)
    except BaseException as exc:
        out, err = app.logs.read()
        pod.stop(grace)
        if isinstance(exc, Exception) and not isinstance(exc, SandboxError):
            raise SandboxError(
                f"pod {spec.name} did not start: {exc}\nstdout: {out[-1000:]}\n"
                f"stderr: {err[-2000:]}"
            ) from exc
        raise
    return pod
