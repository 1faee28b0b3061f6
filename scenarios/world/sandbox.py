"""Processes inside a world: plain namespaces (gen2, pods) and gVisor (gen1).

A gen2 process is `ip netns exec NS [setpriv ...] COMMAND` in its own session:
root keeps every capability (CAP_NET_ADMIN included), so iptables works, and
`ip netns exec` binds /etc/netns/NS/{hosts,resolv.conf} over /etc.

A gen1 process runs in gVisor: `runsc run --detach` of a generated OCI bundle
whose root is read-only (tmpfs on /tmp), whose network namespace is the
instance's (with `--network=host` the sandbox uses its veth directly), and whose
/etc/hosts and /etc/resolv.conf are bound from /etc/netns/NS. iptables cannot
work inside, exactly as on Cloud Run gen1. stdout and stderr go to separate
files: gVisor keeps one offset per descriptor, so a shared file would be
overwritten.

Stopping is Cloud Run's: SIGTERM, then SIGKILL once `grace` seconds pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.world import netns
from scenarios.world.errors import SandboxError
from scenarios.world.sweep import WorldState, alive, process_start

DOCKER_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""What a container's root gets by default (and on Cloud Run gen1): no CAP_NET_ADMIN."""


def oci_config(
    *,
    args: list[str],
    env: Mapping[str, str],
    netns_path: str,
    root: str = "/",
    uid: int = 0,
    cwd: str = "/",
    etc_files: Mapping[str, str] | None = None,
    hostname: str = "localhost",
    binds: Sequence[str] = (),
    memory_overlay: bool = False,
) -> dict[str, Any]:
    """An OCI runtime config for runsc: read-only root, the given netns, /etc files bound in.

    `binds` are host directories shown read-only at the same path, after the
    fresh tmpfs mounts: a checkout under /tmp (as CI makes) would otherwise be
    hidden by the sandbox's own /tmp.

    `memory_overlay` marks the root writable for runsc's `--overlay2=root:memory`
    (Cloud Run gen1's in-memory writable file system): writes land in the
    sandbox's memory, never on the host. Without that flag runsc would write
    through to the host, so the two always go together (see GVisorProcess).
    """
    capabilities = list(DOCKER_CAPABILITIES) if uid == 0 else []
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        # Paths inside the sandbox, each a fresh tmpfs: nothing is shared with the host.
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},  # noqa: S108
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},  # noqa: S108
    ]
    for directory in binds:
        mounts.append(
            {
                "destination": directory,
                "type": "bind",
                "source": directory,
                "options": ["rbind", "ro"],
            }
        )
    for destination, source in sorted((etc_files or {}).items()):
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": source,
                "options": ["rbind", "ro"],
            }
        )
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": uid},
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd,
            "capabilities": dict.fromkeys(
                ("bounding", "effective", "inheritable", "permitted"), capabilities
            ),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}],
        },
        "root": {"path": root, "readonly": not memory_overlay},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": netns_path},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ]
        },
    }


@dataclass
class Logs:
    stdout: Path
    stderr: Path

    @classmethod
    def under(cls, directory: Path, name: str) -> Logs:
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"{name}.stdout", directory / f"{name}.stderr")

    def read(self) -> tuple[str, str]:
        def text(path: Path) -> str:
            try:
                return path.read_text(errors="replace")
            except OSError:
                return ""

        return text(self.stdout), text(self.stderr)


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: PATH, HOME, LANG, then what the caller adds."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@dataclass
class NamespaceProcess:
    """A command in a network namespace, outside any sandbox (gen2 instances, pods)."""

    name: str
    netns: str
    argv: list[str]
    env: dict[str, str]
    logs: Logs
    state: WorldState
    uid: int = 0
    cwd: str = "/"
    popen: subprocess.Popen[bytes] | None = None
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        argv = list(self.argv)
        if self.uid != 0:
            argv = [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--",
                *argv,
            ]
        with self.logs.stdout.open("wb") as out, self.logs.stderr.open("wb") as err:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built from the world file
                netns.exec_argv(self.netns, argv),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.entry = self.state.note_process(self.popen.pid, self.name)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that left the group die with the namespace's sweep; this reaps ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.state.forget("processes", self.entry)
        return self.popen.returncode


@dataclass
class GVisorProcess:
    """A command inside gVisor (`runsc run --detach`), in a given network namespace."""

    name: str
    netns: str
    argv: list[str]
    env: dict[str, str]
    logs: Logs
    state: WorldState
    bundle: Path
    container: str
    uid: int = 0
    root: str = "/"
    cwd: str = "/"
    sandbox_pid: int | None = None
    sandbox_start: int | None = None

    def _runsc(self, *args: str) -> list[str]:
        return ["runsc", "--root", self.state.runsc_root, *args]

    def start(self) -> None:
        self.bundle.mkdir(parents=True, exist_ok=True)
        etc = netns.ETC_NETNS / self.netns
        config = oci_config(
            args=self.argv,
            env=self.env,
            netns_path=str(netns.netns_path(self.netns)),
            root=self.root,
            uid=self.uid,
            cwd=self.cwd,
            binds=[self.cwd] if self.root == "/" and self.cwd != "/" else [],
            memory_overlay=True,
            etc_files={
                "/etc/hosts": str(etc / "hosts"),
                "/etc/resolv.conf": str(etc / "resolv.conf"),
            },
        )
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))
        Path(self.state.runsc_root).mkdir(parents=True, exist_ok=True)
        self.state.note("containers", self.container)
        run = self._runsc(
            "--ignore-cgroups",
            "--network=host",
            # Writable root in memory only; the bundle's root is writable because of it.
            "--overlay2=root:memory",
            "run",
            "--bundle",
            str(self.bundle),
            "--detach",
            self.container,
        )
        with self.logs.stdout.open("wb") as out, self.logs.stderr.open("wb") as err:
            done = subprocess.run(  # noqa: S603
                run, stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False, timeout=60
            )
        if done.returncode != 0:
            stderr = self.logs.read()[1][-2000:]
            raise SandboxError(f"runsc run {self.container} failed ({done.returncode}): {stderr}")
        state = self.runsc_state()
        pid = state.get("pid")
        if isinstance(pid, int) and pid > 0:
            self.sandbox_pid = pid
            self.sandbox_start = process_start(pid)
            self.state.note(
                "processes", {"pid": pid, "start": self.sandbox_start, "what": self.name}
            )

    def runsc_state(self) -> dict[str, Any]:
        done = subprocess.run(  # noqa: S603
            self._runsc("state", self.container),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode != 0:
            return {}
        try:
            parsed: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            return {}
        return parsed

    def alive(self) -> bool:
        return self.sandbox_pid is not None and alive(self.sandbox_pid, self.sandbox_start)

    def _stopped(self) -> bool:
        return self.runsc_state().get("status") in (None, "stopped")

    def stop(self, grace: float) -> int | None:
        subprocess.run(  # noqa: S603
            self._runsc("kill", self.container, "TERM"),
            capture_output=True,
            check=False,
            timeout=30,
        )
        deadline = time.monotonic() + grace
        while not self._stopped() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self._stopped():
            subprocess.run(  # noqa: S603
                self._runsc("kill", "--all", self.container, "KILL"),
                capture_output=True,
                check=False,
                timeout=30,
            )
        subprocess.run(  # noqa: S603
            self._runsc("delete", "--force", self.container),
            capture_output=True,
            check=False,
            timeout=30,
        )
        self.state.forget("containers", self.container)
        if self.sandbox_pid is not None:
            self.state.forget(
                "processes",
                {"pid": self.sandbox_pid, "start": self.sandbox_start, "what": self.name},
            )
        return None
