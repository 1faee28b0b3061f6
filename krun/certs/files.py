"""Where certificates, keys and roots go, and how they are written.

One path scheme: every file is under the base directory (`MESH_BASE_DIR`, `/` by default),
in two layouts read by different consumers:

* Istio: `etc/certs/cert-chain.pem`, `etc/certs/key.pem`, `etc/certs/root-cert.pem`, and
  `var/run/secrets/istio/root-cert.pem` (the root the agent checks istiod with);
* GKE workload certificates: `var/run/secrets/workload-spiffe-credentials/`
  `certificates.pem`, `private_key.pem`, `ca_certificates.pem`.

Keys are 0600 and owned by the proxy's uid/gid, certificates and roots 0644, directories
0755 (the original's 0660 directory and 0777 files are not kept). Ownership changes only
when running as root. Each file is written to a temporary name in its directory, synced
and renamed over the old one, so a reader never sees half a file; a set of files is
renamed only once every temporary is written.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from krun.errors import CertificateError

DIR_MODE = 0o755
KEY_MODE = 0o600
PUBLIC_MODE = 0o644


class Content(enum.StrEnum):
    """What a file holds."""

    CHAIN = "chain"
    KEY = "key"
    ROOTS = "roots"


LAYOUT: tuple[tuple[str, Content], ...] = (
    ("etc/certs/cert-chain.pem", Content.CHAIN),
    ("etc/certs/key.pem", Content.KEY),
    ("etc/certs/root-cert.pem", Content.ROOTS),
    ("var/run/secrets/istio/root-cert.pem", Content.ROOTS),
    ("var/run/secrets/workload-spiffe-credentials/certificates.pem", Content.CHAIN),
    ("var/run/secrets/workload-spiffe-credentials/private_key.pem", Content.KEY),
    ("var/run/secrets/workload-spiffe-credentials/ca_certificates.pem", Content.ROOTS),
)
"""Relative path and content of every file, in write order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    """A workload's certificate chain (leaf first), private key and trusted roots, as PEM."""

    chain: bytes
    # Not in repr(): a secret must not reach a log line or a traceback.
    key: bytes = field(repr=False)
    roots: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedFile:
    path: Path
    content: Content
    mode: int
    owner: tuple[int, int] | None
    """uid, gid to own the file; None: whoever writes it."""


def plan(base_dir: str | Path, *, proxy_uid: int, proxy_gid: int) -> list[PlannedFile]:
    """Every file with its mode and owner (pure)."""
    base = Path(base_dir)
    return [
        PlannedFile(
            path=base / relative,
            content=content,
            mode=KEY_MODE if content is Content.KEY else PUBLIC_MODE,
            owner=(proxy_uid, proxy_gid) if content is Content.KEY else None,
        )
        for relative, content in LAYOUT
    ]


def _data(material: Material, content: Content) -> bytes:
    return {
        Content.CHAIN: material.chain,
        Content.KEY: material.key,
        Content.ROOTS: material.roots,
    }[content]


def write_all(
    material: Material,
    files: Sequence[PlannedFile],
    *,
    as_root: bool | None = None,
    chown: Callable[[int, int, int], None] = os.fchown,
) -> None:
    """Write every planned file; owners are set only when `as_root`.

    Every temporary is written before any is renamed, so a failure (a full disk, a refused
    chown) replaces nothing: a new chain never sits beside an old key.
    """
    root = os.geteuid() == 0 if as_root is None else as_root
    staged: list[tuple[Path, Path]] = []
    try:
        for planned in files:
            data = _data(material, planned.content)
            owner = planned.owner if root else None
            temp = _stage(planned.path, data, mode=planned.mode, owner=owner, chown=chown)
            staged.append((temp, planned.path))
        while staged:
            _rename(*staged[0])
            staged.pop(0)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)


def make_dirs(path: Path) -> None:
    """Create `path` and its parents as 0755 (whatever the umask)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        directory.chmod(DIR_MODE)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int,
    owner: tuple[int, int] | None = None,
    chown: Callable[[int, int, int], None] = os.fchown,
) -> None:
    """Replace `path` with `data` in one rename; the mode and owner are set before any byte."""
    _rename(_stage(path, data, mode=mode, owner=owner, chown=chown), path)


def _rename(temp: Path, path: Path) -> None:
    """Move a staged temporary over `path`; on failure the temporary is removed."""
    try:
        temp.replace(path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise CertificateError(f"cannot write {path}: {error.strerror}") from None


def _stage(
    path: Path,
    data: bytes,
    *,
    mode: int,
    owner: tuple[int, int] | None,
    chown: Callable[[int, int, int], None],
) -> Path:
    """`data` in a synced temporary beside `path`, with its mode and owner; the temporary."""
    import tempfile  # noqa: PLC0415 - ~3 ms, only when files are written (not `krun explain`)

    try:
        make_dirs(path.parent)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise CertificateError(f"cannot create {path.parent}: {error.strerror}") from None
    temp = Path(name)
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                chown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise CertificateError(f"cannot write {path}: {error.strerror}") from None
    return temp
