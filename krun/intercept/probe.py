"""Probing what this process may do to its network namespace (I/O; nothing is changed).

* root: the effective uid;
* `CAP_NET_ADMIN`: bit 12 of `CapEff` in `/proc/self/status`;
* iptables: `iptables-restore --test` of a table with one empty probe chain. `--test` parses
  and builds the ruleset without committing it, but still needs netfilter and the
  permission to use it: it fails in gVisor (Cloud Run gen1) and without `CAP_NET_ADMIN`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from krun.intercept.choose import Probes

CAP_NET_ADMIN = 12
PROBE_RULES = "*nat\n:KRUN-PROBE - [0:0]\nCOMMIT\n"
TIMEOUT = 5.0


def effective_caps(status: str) -> int:
    """The `CapEff` mask of a `/proc/PID/status` text (0 when absent)."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    return 0


def probe_iptables() -> tuple[bool, str]:
    """Whether iptables-restore accepts a probe chain, and its complaint if not."""
    binary = shutil.which("iptables-restore")
    if binary is None:
        return False, "iptables-restore is not installed"
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv
            [binary, "--test"],
            input=PROBE_RULES,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    if done.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return False, lines[0] if lines else f"exit status {done.returncode}"


def probe(*, iptables: bool = True) -> Probes:
    """Probe root, CAP_NET_ADMIN and (when `iptables`) iptables."""
    root = os.geteuid() == 0
    try:
        caps = effective_caps(Path("/proc/self/status").read_text())
    except OSError:
        caps = 0
    cap = bool(caps >> CAP_NET_ADMIN & 1)
    if not iptables:
        return Probes(root=root, cap_net_admin=cap)
    works, error = probe_iptables()
    return Probes(root=root, cap_net_admin=cap, iptables=works, iptables_error=error)
