"""Fixtures shared by every tier.

`clean_environ` (autouse) strips variables that would point real clients at
real Google, a real cluster or a proxy, and gives gcloud an empty config dir,
so a test sees only what it sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before grpc is imported (through emulator.testing): see scenarios/__init__.py.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from emulator.testing import PointGoogleAuth, RunningEmulator, start


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ files from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True under `--update-golden`: golden tests write their file instead of comparing."""
    return bool(request.config.getoption("--update-golden"))


_STRIP_PREFIXES = ("GCE_", "GOOGLE_", "CLOUDSDK_", "GRPC_", "KUBE", "ISTIO_", "K_", "KRUN_")
_STRIP = {
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NO_GCE_CHECK",
    "PORT",
}


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in list(os.environ):
        if name in _STRIP or name.startswith(_STRIP_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.mktemp("gcloud")))


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The demo world, served once per session. Do not move its clock; use `fresh_emu`."""
    with start(tmp_path_factory.mktemp("emulator")) as running:
        yield running


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emu" in request.fixturenames:
        running: RunningEmulator = request.getfixturevalue("emu")
        running.world.faults.clear()


@pytest.fixture
def point_google_auth(monkeypatch: pytest.MonkeyPatch) -> PointGoogleAuth:
    """Point google-auth at an emulator's metadata server, as `instance` (None: default caller).

    google-auth reads GCE_METADATA_HOST once, when it is imported (GCE_METADATA_IP at
    every ping), so a process started with the variable set sees it; a test sets the
    variables and that import-time copy alike. The library's code is not touched.
    """
    from google.auth.compute_engine import _metadata  # noqa: PLC0415 - only where used

    def point(emu: RunningEmulator, instance: str | None) -> dict[str, str]:
        env = emu.metadata_env(instance)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", env["GCE_METADATA_HOST"])
        return env

    return point


@pytest.fixture
def fresh_emu(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A demo world of the test's own: free to change, fault and move in time."""
    with start(tmp_path / "emulator") as running:
        yield running
