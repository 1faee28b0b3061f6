"""What a world leaves on the machine, written down before it is made, and the sweeper.

Each world keeps a state file, `/run/krun-scenario/<prefix>/state.json`, updated
*before* each namespace, process, container or /etc/netns directory is created,
so a run killed at any moment leaves a complete list behind. `sweep` removes
what the list names, in an order that cannot strand anything:

1. processes, by PID *and* start time (a recycled PID is left alone);
2. gVisor containers (`runsc delete --force`), then the runsc state directory;
3. any process still inside one of the world's namespaces (found by namespace inode);
4. mounts whose path contains the prefix, then the namespaces themselves
   (their links go with them), then the /etc/netns directories;
5. the state directory.

A world whose owner process is still alive is skipped unless `include_live`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path("/run/krun-scenario")
PREFIX = re.compile(r"kw[0-9a-f]{6}")
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def alive(pid: int, start: int | None) -> bool:
    current = process_start(pid)
    if current is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and (start is None or current == start)


@dataclass
class WorldState:
    """The write-ahead list of everything one world creates."""

    prefix: str
    directory: Path
    owner: dict[str, int] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    etc: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    runsc_root: str = ""
    containers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / "state.json"

    @classmethod
    def create(cls, prefix: str, root: Path = STATE_ROOT) -> WorldState:
        directory = root / prefix
        directory.mkdir(parents=True, mode=0o755)
        pid = os.getpid()
        state = cls(prefix, directory, owner={"pid": pid, "start": process_start(pid) or 0})
        state.runsc_root = str(directory / "runsc")
        state.save()
        return state

    @classmethod
    def load(cls, directory: Path) -> WorldState:
        raw = json.loads((directory / "state.json").read_text())
        return cls(
            prefix=raw["prefix"],
            directory=directory,
            owner=raw.get("owner", {}),
            namespaces=list(raw.get("namespaces", [])),
            etc=list(raw.get("etc", [])),
            processes=list(raw.get("processes", [])),
            runsc_root=raw.get("runsc_root", ""),
            containers=list(raw.get("containers", [])),
        )

    def save(self) -> None:
        data = {
            "prefix": self.prefix,
            "owner": self.owner,
            "namespaces": self.namespaces,
            "etc": self.etc,
            "processes": self.processes,
            "runsc_root": self.runsc_root,
            "containers": self.containers,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        temporary.replace(self.path)

    def note(self, kind: str, value: Any) -> None:
        """Record something about to be created (idempotent)."""
        with self._lock:
            items: list[Any] = getattr(self, kind)
            if value not in items:
                items.append(value)
            self.save()

    def forget(self, kind: str, value: Any) -> None:
        with self._lock:
            items: list[Any] = getattr(self, kind)
            if value in items:
                items.remove(value)
            self.save()

    def note_process(self, pid: int, what: str) -> dict[str, Any]:
        entry = {"pid": pid, "start": process_start(pid), "what": what}
        self.note("processes", entry)
        return entry

    def owner_alive(self) -> bool:
        return bool(self.owner) and alive(self.owner["pid"], self.owner.get("start"))


@dataclass
class SweepReport:
    worlds: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worlds": self.worlds,
            "skipped_live": self.skipped_live,
            "killed": self.killed,
            "containers": self.containers,
            "namespaces": self.namespaces,
            "problems": self.problems,
        }


def _kill(pid: int, start: int | None, report: SweepReport) -> None:
    if not alive(pid, start):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    report.killed.append(pid)
    deadline = time.monotonic() + 5
    while alive(pid, start) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)


def runsc_containers(runsc_root: str) -> list[str]:
    if not runsc_root or not Path(runsc_root).is_dir() or shutil.which("runsc") is None:
        return []
    done = subprocess.run(  # noqa: S603
        ["runsc", "--root", runsc_root, "list", "-quiet"],  # noqa: S607 - from PATH, as installed
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def delete_container(runsc_root: str, container: str) -> None:
    subprocess.run(  # noqa: S603
        ["runsc", "--root", runsc_root, "delete", "--force", container],  # noqa: S607
        capture_output=True,
        check=False,
        timeout=30,
    )


def processes_in(namespaces: list[str]) -> list[int]:
    """PIDs whose network namespace is one of the named ones."""
    inodes = set()
    for name in namespaces:
        with contextlib.suppress(OSError):
            info = Path(f"/run/netns/{name}").stat()
            inodes.add((info.st_dev, info.st_ino))
    if not inodes:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            info = (entry / "ns" / "net").stat()
            if (info.st_dev, info.st_ino) in inodes:
                found.append(int(entry.name))
    return found


def mounts_with(prefix: str) -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1 and prefix in parts[1]:
                out.append(parts[1].replace("\\040", " "))
    # Deepest first, so nested mounts come off before their parents.
    return sorted(set(out), key=len, reverse=True)


def leftovers(prefix: str) -> dict[str, list[str]]:
    """Everything on the machine that still carries `prefix` (empty lists: clean)."""
    netns_dir = Path("/run/netns")
    namespaces = sorted(p.name for p in netns_dir.glob(f"{prefix}*")) if netns_dir.is_dir() else []
    etc = sorted(p.name for p in Path("/etc/netns").glob(f"{prefix}*"))
    links = []
    with contextlib.suppress(OSError):
        links = [p.name for p in Path("/sys/class/net").iterdir() if prefix in p.name]
    return {
        "namespaces": namespaces,
        "etc_netns": etc,
        "links": links,
        "mounts": mounts_with(prefix),
        "state_dirs": [str(p) for p in STATE_ROOT.glob(f"{prefix}*")]
        if STATE_ROOT.is_dir()
        else [],
    }


def sweep_world(state: WorldState, report: SweepReport) -> None:
    for entry in state.processes:
        _kill(int(entry["pid"]), entry.get("start"), report)
    for container in sorted(set(state.containers) | set(runsc_containers(state.runsc_root))):
        delete_container(state.runsc_root, container)
        report.containers.append(container)
    names = sorted(set(state.namespaces) | set(leftovers(state.prefix)["namespaces"]))
    for pid in processes_in(names):
        if pid != os.getpid():
            _kill(pid, None, report)
    for name in names:
        path = Path("/run/netns") / name
        if path.exists():
            if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err != 22:  # EINVAL: not a mount point any more
                    report.problems.append(f"umount {path}: {os.strerror(err)}")
            with contextlib.suppress(OSError):
                path.unlink()
            report.namespaces.append(name)
    for mount in mounts_with(state.prefix):
        _libc.umount2(mount.encode(), MNT_DETACH)
    for name in sorted(set(state.etc) | set(leftovers(state.prefix)["etc_netns"])):
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    if state.runsc_root:
        shutil.rmtree(state.runsc_root, ignore_errors=True)
    shutil.rmtree(state.directory, ignore_errors=True)
    report.worlds.append(state.prefix)


def sweep(
    *, prefix: str | None = None, include_live: bool = False, root: Path = STATE_ROOT
) -> SweepReport:
    """Remove what dead (or, with include_live, all) worlds left behind."""
    report = SweepReport()
    directories = sorted(root.glob(prefix or "kw*")) if root.is_dir() else []
    for directory in directories:
        if not directory.is_dir() or PREFIX.fullmatch(directory.name) is None:
            continue
        try:
            state = WorldState.load(directory)
        except (OSError, ValueError, KeyError) as exc:
            report.problems.append(f"{directory}: unreadable state ({exc}); removing what it names")
            state = WorldState(directory.name, directory, runsc_root=str(directory / "runsc"))
        if state.owner_alive() and not include_live:
            report.skipped_live.append(state.prefix)
            continue
        sweep_world(state, report)
    # Namespaces with a world prefix but no state directory: a run died before writing one.
    if Path("/run/netns").is_dir():
        orphans = {
            p.name.split("-", 1)[0]
            for p in Path("/run/netns").iterdir()
            if PREFIX.fullmatch(p.name.split("-", 1)[0])
        }
        for orphan in sorted(orphans):
            if (prefix is None or orphan == prefix) and not (root / orphan).exists():
                sweep_world(WorldState(orphan, root / orphan), report)
    return report
