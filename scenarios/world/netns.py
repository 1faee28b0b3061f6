"""Network namespaces, the world bridge and per-namespace /etc files (the I/O shell).

Links, addresses and routes go through pyroute2 (netlink, no `ip` processes).
Every link is created inside the world namespace with its peer moved straight
into the participant's namespace, so nothing ever appears in the root namespace
and removing the namespaces removes every link.

Sockets belong to the namespace of the thread that created them, whichever
thread uses them later: `socket_in` and `run_in` use that to reach into a
namespace from this process without forking.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scenarios.world.errors import WorldError
from scenarios.world.plan import Attachment

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
BRIDGE = "br0"
BRIDGE_MAC = "02:6b:72:75:6e:01"  # locally administered; only ever seen inside one world
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def enter(name: str) -> None:
    """Move the calling thread (only) into namespace `name`."""
    enter_path(netns_path(name))


def enter_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(name: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a short-lived thread inside namespace `name`; return or raise its result."""
    box: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            enter(name)
            box.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return box[0]


def socket_in(
    name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket that lives in namespace `name`, usable from any thread."""
    return run_in(name, lambda: socket.socket(family, kind))


def wait_tcp(name: str, host: str, port: int, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Return once `host:port` accepts a TCP connection made from namespace `name`."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while True:
        sock = socket_in(name)
        sock.settimeout(1)
        try:
            sock.connect((host, port))
        except OSError as exc:
            last = exc
        else:
            return
        finally:
            sock.close()
        if not alive():
            raise WorldError(f"the process exited before {host}:{port} accepted connections")
        if time.monotonic() > deadline:
            raise WorldError(
                f"{host}:{port} did not accept connections from {name} within {timeout:g}s "
                f"(last attempt: {last})"
            )
        time.sleep(0.02)


def exists(name: str) -> bool:
    return netns_path(name).exists()


def create(name: str) -> None:
    from pyroute2 import netns  # type: ignore[import-untyped]  # noqa: PLC0415 - 200 ms import

    if exists(name):
        raise WorldError(f"network namespace {name} already exists")
    netns.create(name)
    with _ipr(name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def remove(name: str) -> None:
    """Delete a namespace (its links go with it); a missing one is fine.

    The veth is deleted first, on purpose: the kernel tears a namespace down
    asynchronously, so its veth's world-side end (`vh<index>`) can outlive the
    namespace for a moment, and restarting the same participant at once would
    then fail with "File exists". Deleting one end of a veth removes both, now.
    """
    from pyroute2 import NetlinkError, netns  # noqa: PLC0415

    if not exists(name):
        return
    try:
        with _ipr(name) as ipr:
            for index in ipr.link_lookup(ifname="eth0"):
                ipr.link("del", index=index)
    except NetlinkError:
        pass  # already gone: the namespace removal below finishes the job
    netns.remove(name)


def _ipr(name: str) -> Any:  # pyroute2 is untyped
    from pyroute2 import IPRoute  # noqa: PLC0415

    return IPRoute(netns=name, flags=0)


def build_bridge(world: str, gateways: list[str]) -> None:
    """The world namespace's bridge, carrying every subnet's gateway, forwarding on."""
    with _ipr(world) as ipr:
        # A fixed MAC: a bridge without one takes the lowest MAC of its ports, so
        # it changes as instances come and go, and neighbours that cached the old
        # gateway MAC (a port since deleted) black-hole traffic until ARP expires.
        ipr.link("add", ifname=BRIDGE, kind="bridge", address=BRIDGE_MAC)
        index = ipr.link_lookup(ifname=BRIDGE)[0]
        for cidr in gateways:
            address, prefixlen = cidr.split("/")
            ipr.addr("add", index=index, address=address, prefixlen=int(prefixlen))
        ipr.link("set", index=index, state="up")

    def forward() -> None:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    run_in(world, forward)


def attach(world: str, node: Attachment) -> None:
    """A veth from the world bridge into `node.netns`, with its addresses and routes."""
    outside = f"vh{node.index}"
    with _ipr(world) as ipr:
        ipr.link(
            "add", ifname=outside, kind="veth", peer={"ifname": "eth0", "net_ns_fd": node.netns}
        )
        index = ipr.link_lookup(ifname=outside)[0]
        bridge = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.link("set", index=index, master=bridge, state="up")
    with _ipr(node.netns) as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=index, address=node.address, prefixlen=node.prefixlen)
        for extra in node.extra:
            ipr.addr("add", index=index, address=extra, prefixlen=32)
        ipr.link("set", index=index, state="up")
        for route in node.routes:
            ipr.route("add", dst=route.destination, gateway=route.gateway)


def add_world_route(world: str, destination: str, gateway: str) -> None:
    with _ipr(world) as ipr:
        ipr.route("add", dst=destination, gateway=gateway)


def routes(name: str) -> list[str]:
    """Destinations of the namespace's main routing table (`default` for 0.0.0.0/0)."""
    out = []
    with _ipr(name) as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get("dst")
            out.append(f"{dst}/{route['dst_len']}" if dst else "default")
    return out


def write_etc(name: str, files: dict[str, str]) -> Path:
    """Files `ip netns exec` mounts over /etc (hosts, resolv.conf) for namespace `name`."""
    directory = ETC_NETNS / name
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in files.items():
        (directory / filename).write_text(text, encoding="utf-8")
    return directory


def remove_etc(name: str) -> None:
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """`ip netns exec`: the namespace, plus /etc/netns/<name> files bound over /etc."""
    return ["ip", "netns", "exec", name, *argv]
