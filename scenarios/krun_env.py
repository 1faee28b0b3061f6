"""The environment of a krun started against an emulator on loopback.

On Google Cloud krun finds Google's APIs at their well-known hosts; on loopback
each emulated API has its own port, so krun is pointed at them with its
endpoint overrides, at the metadata server as `instance` sees it, and told to
trust the world CA. One place for it: the tests and the benchmark share it.
"""

from __future__ import annotations

from emulator.testing import RunningEmulator


def loopback_env(emu: RunningEmulator, instance: str | None, **extra: str) -> dict[str, str]:
    """What a workload in `instance` would see, with Google's APIs pointed at the emulator."""
    environ = {
        "SSL_CERT_FILE": str(emu.ca_file),
        "KRUN_CONTAINER_ENDPOINT": emu.url("container"),
        "KRUN_CRM_ENDPOINT": emu.url("cloudresourcemanager"),
        "KRUN_STS_ENDPOINT": emu.url("sts"),
        "KRUN_IAMCREDENTIALS_ENDPOINT": emu.url("iamcredentials"),
    }
    if instance is not None:
        environ |= emu.metadata_env(instance)
    return environ | extra
