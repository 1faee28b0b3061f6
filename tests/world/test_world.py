"""A world of namespaces, end to end: instances, the front end, pods, teardown."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scenarios.world import netns
from scenarios.world.builder import RunInstance, RunningWorld, world_up
from scenarios.world.mesh import envoy_get
from scenarios.world.sandbox import Logs, NamespaceProcess
from scenarios.world.spec import WorldSpec, build_spec
from scenarios.world.sweep import STATE_ROOT, WorldState, alive, leftovers, runsc_containers, sweep

pytestmark = pytest.mark.world

CALLER = "caller@mesh-demo.iam.gserviceaccount.com"
STRANGER = "stranger@mesh-demo.iam.gserviceaccount.com"
REGION_URL = "http://metadata.google.internal/computeMetadata/v1/instance/region"
UP_TIMEOUT = 120.0
"""Generous bound for `krun-scenario up` to build the crash world (seconds)."""


@pytest.fixture(scope="module")
def gen1(world: RunningWorld) -> Iterator[RunInstance]:
    instance = world.start_instance("echo-gen1")
    yield instance
    world.stop_instance(instance.name)


@pytest.fixture(scope="module")
def gen2(world: RunningWorld) -> Iterator[RunInstance]:
    instance = world.start_instance("echo-gen2")
    yield instance
    world.stop_instance(instance.name)


def _curl_status(world: RunningWorld, url: str, *headers: str) -> int:
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "20", url]
    for header in headers:
        argv += ["-H", header]
    done = world.run("client", argv)
    return int(done.stdout or 0)


def test_metadata_answers_instances_as_serverless(
    world: RunningWorld, gen1: RunInstance, gen2: RunInstance
) -> None:
    """From inside a gen1 (gVisor) and a gen2 instance, metadata.google.internal is Cloud Run's."""
    for instance in (gen1, gen2):
        done = world.exec(
            instance.name, ["curl", "-s", "-i", REGION_URL, "-H", "Metadata-Flavor:Google"]
        )
        assert done.returncode == 0, done.stderr
        head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
        assert "server: metadata server for serverless" in head.lower()
        assert body == "projects/123456789012/regions/us-central1"


def test_gen1_root_is_writable_in_memory_only(world: RunningWorld, gen1: RunInstance) -> None:
    """As on Cloud Run gen1, the file system is writable, and writes never reach the host."""
    probe = Path("/etc") / f"krun-gen1-write-{gen1.name}"
    done = world.exec(gen1.name, ["sh", "-c", f"echo written > {probe} && cat {probe}"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "written"
    assert not probe.exists()  # the host's /etc is untouched


def test_iptables_fails_in_gen1_and_works_in_gen2(
    world: RunningWorld, gen1: RunInstance, gen2: RunInstance
) -> None:
    """gVisor refuses netfilter as Cloud Run gen1 does; gen2's root has CAP_NET_ADMIN."""
    inside_gvisor = world.exec(gen1.name, ["iptables", "-t", "nat", "-L"])
    assert inside_gvisor.returncode != 0
    assert "Protocol not supported" in inside_gvisor.stderr
    kernel = world.exec(gen1.name, ["uname", "-r"])
    assert kernel.stdout.strip() == "4.4.0"  # gVisor's, not the host's
    plain = world.exec(
        gen2.name,
        ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "RETURN"],
    )
    assert plain.returncode == 0, plain.stderr
    assert "--dport 9" in world.exec(gen2.name, ["iptables-save", "-t", "nat"]).stdout


def test_front_end_scales_from_zero_and_forwards_h2c(world: RunningWorld) -> None:
    """An invoker's ID token reaches a freshly started instance over h2c, minus its signature."""
    service = world.service("echo-gen2")
    for name in [n for n, i in world.instances.items() if i.service is service]:
        world.stop_instance(name)
    token = world.world.tokens.id_token(
        subject="1", audience=service.url, now=world.world.clock(), email=CALLER
    )
    done = world.run(
        "client",
        [
            "curl",
            "-s",
            "--http1.1",
            "-m",
            "30",
            service.url + "/who?x=1",
            "-H",
            f"Authorization: Bearer {token}",
        ],
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    headers = dict(report["headers"])
    assert report["http_version"] == "2"
    assert report["service"] == "echo-gen2"
    assert headers["authorization"].endswith(".SIGNATURE_REMOVED_BY_GOOGLE")
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == world.plan.clients["client"].address
    assert [i.service.name for i in world.instances.values()].count("echo-gen2") == 1


def test_front_end_refuses_bad_callers(world: RunningWorld) -> None:
    """No token: 403; a token for another audience: 401; a caller without invoker: 403."""
    service = world.service("echo-gen2")
    now = world.world.clock()
    other = world.world.tokens.id_token(
        subject="1", audience="https://elsewhere.a.run.app", now=now, email=CALLER
    )
    stranger = world.world.tokens.id_token(
        subject="2", audience=service.url, now=now, email=STRANGER
    )
    assert _curl_status(world, service.url) == 403
    assert _curl_status(world, service.url, f"Authorization: Bearer {other}") == 401
    assert _curl_status(world, service.url, f"Authorization: Bearer {stranger}") == 403


def test_pod_captures_outbound_tcp_like_istio_init(world: RunningWorld) -> None:
    """The pod's rules are istio-init's: outbound TCP to any address lands on Envoy's :15001."""
    pod = world.pods["echo-client"]
    saved = world.run("echo-client", ["iptables-save", "-t", "nat"]).stdout
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in saved
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in saved

    def accepted() -> int:
        _, stats = envoy_get(
            pod.netns, "/stats?filter=^listener.0.0.0.0_15001.downstream_cx_total$"
        )
        return int(stats.split(":")[-1])

    before = accepted()
    client = netns.socket_in(pod.netns)
    client.settimeout(5)
    try:
        # Nothing listens on this port anywhere: only the capture can accept it.
        client.connect((world.plan.google["sts"], 9))
    finally:
        client.close()
    assert accepted() == before + 1


def test_nothing_inside_reaches_outside(world: RunningWorld, gen1: RunInstance) -> None:
    """No namespace of the world has a default route; an outside address is unreachable."""
    names = [
        world.plan.world_netns,
        world.plan.emulator.netns,
        world.client(),
        world.pods["echo-client"].netns,
    ]
    names += [instance.netns for instance in world.instances.values()]
    for name in names:
        assert "default" not in netns.routes(name), name
        sock = netns.socket_in(name)
        try:
            with pytest.raises(OSError) as raised:
                sock.connect(("192.0.2.1", 80))  # TEST-NET-1: no route, no packet leaves
            assert raised.value.errno == errno.ENETUNREACH
        finally:
            sock.close()


def test_stop_sends_sigterm_then_sigkill(world: RunningWorld, tmp_path: Path) -> None:
    """A process that ignores SIGTERM is killed once the grace period ends."""
    script = "import signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    process = NamespaceProcess(
        name="stubborn",
        netns=world.client(),
        argv=[sys.executable, "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
        logs=Logs.under(tmp_path, "stubborn"),
        state=world.state,
    )
    process.start()
    try:
        # SIGTERM must come after the handler is installed, however slow the interpreter starts.
        deadline = time.monotonic() + 60
        while "up" not in process.logs.read()[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "up" in process.logs.read()[0], process.logs.read()[1]
    finally:
        status = process.stop(0.3)
    assert status == -signal.SIGKILL


def _crash_spec(harness_spec: WorldSpec) -> str:
    raw = yaml.safe_load(Path(harness_spec.source).read_text())
    for service in raw["emulator"]["projects"][0]["run_services"]:
        service["min_instances"] = 1
    return yaml.safe_dump(raw)


def _worlds_owned_by(pid: int) -> list[str]:
    """Prefixes of the worlds whose state files name `pid` as their owner."""
    found = []
    for directory in STATE_ROOT.glob("kw*"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            if WorldState.load(directory).owner.get("pid") == pid:
                found.append(directory.name)
    return found


def test_crashed_world_is_swept_clean(harness_spec: WorldSpec, tmp_path: Path) -> None:
    """A harness killed mid-run leaves namespaces, processes and a gVisor container; the sweeper removes all."""
    world_file = tmp_path / "crash.yaml"
    world_file.write_text(_crash_spec(harness_spec))
    harness = subprocess.Popen(
        [sys.executable, "-m", "scenarios.world.cli", "up", str(world_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    swept = False
    try:
        assert harness.stdout is not None
        ready, _, _ = select.select([harness.stdout], [], [], UP_TIMEOUT)
        assert ready, f"the harness printed nothing within {UP_TIMEOUT:g}s"
        line = harness.stdout.readline()
        assert line, harness.stderr.read() if harness.stderr else ""
        described = json.loads(line)
        harness.kill()
        harness.wait(timeout=10)
        prefix = described["prefix"]
        state = WorldState.load(STATE_ROOT / prefix)
        pids = [(p["pid"], p["start"]) for p in state.processes]
        assert len(described["namespaces"]["instances"]) == 2
        assert runsc_containers(state.runsc_root), (
            "the crashed world should have left a gVisor container"
        )
        assert any(alive(pid, start) for pid, start in pids)
        envoys = [(p["pid"], p["start"]) for p in state.processes if p["what"].endswith("/envoy")]
        assert len(envoys) == len(described["namespaces"]["pods"]) == 2
        assert all(alive(pid, start) for pid, start in envoys), (
            "the crash should leave Envoys running"
        )

        report = sweep(prefix=prefix)
        swept = True

        assert report.worlds == [prefix]
        assert leftovers(prefix) == {
            "namespaces": [],
            "etc_netns": [],
            "links": [],
            "mounts": [],
            "state_dirs": [],
        }
        assert not any(alive(pid, start) for pid, start in pids)
        assert not Path(state.runsc_root).exists()
    finally:
        harness.kill()
        harness.wait(timeout=10)
        for pipe in (harness.stdout, harness.stderr):
            if pipe is not None:
                pipe.close()
        if not swept:
            # Whatever went wrong above, the crashed world must not outlive the test.
            for owned in _worlds_owned_by(harness.pid):
                sweep(prefix=owned)


def test_teardown_leaves_nothing(harness_spec: WorldSpec, tmp_path: Path) -> None:
    """Leaving a world's context removes every namespace, /etc/netns dir, process and mount."""
    spec = build_spec(
        {"emulator": harness_spec.emulator, "services": [], "pods": [], "clients": ["a", "b"]},
        base=tmp_path,
    )
    with world_up(spec, grace=0.5, logs_dir=tmp_path) as up:
        prefix = up.prefix
        assert len(leftovers(prefix)["namespaces"]) == 4
    assert leftovers(prefix) == {
        "namespaces": [],
        "etc_netns": [],
        "links": [],
        "mounts": [],
        "state_dirs": [],
    }
