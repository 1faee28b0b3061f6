"""krun's Kubernetes half against the emulator: mesh-env, kube clients, TokenRequest, the Istio CA."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography import x509

from emulator import kube_tokens
from emulator.kube.cluster import kube_cluster
from emulator.kube.kubeconfig import google_kubeconfig
from emulator.testing import RunningEmulator
from krun import cli
from krun.config import Settings
from krun.decisions import Source
from krun.discovery.discover import Discovery, discover
from krun.errors import CertificateError, ConfigError, DiscoveryError, IdentityError
from krun.http import HttpClient
from krun.identity.manager import Identity
from krun.meshenv import merged_ports
from krun.prepare import Prepared, prepare
from scenarios.krun_env import loopback_env as krun_env

pytestmark = pytest.mark.integration

FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
SERVICE_AGENT = "service-123456789012@gcp-sa-meshdataplane.iam.gserviceaccount.com"
SPIFFE = "spiffe://mesh-demo.svc.id.goog/ns/fortio/sa/default"
ISTIO = ("mesh-demo", "us-central1-c", "istio")


def settings_for(emu: RunningEmulator, instance: str | None, **extra: str) -> Settings:
    return Settings.from_env(krun_env(emu, instance, **extra))


def run(emu: RunningEmulator, instance: str | None, **extra: str) -> Discovery:
    settings = settings_for(emu, instance, **extra)
    return discover(settings, HttpClient(ca_file=settings.ca_file), sleep=lambda _: None)


def mesh_env_of(emu: RunningEmulator) -> dict[str, str]:
    store = kube_cluster(emu.world, emu.world.cluster(*ISTIO)).store
    return dict(store.get("configmaps", "istio-system", "mesh-env")["data"])


def set_mesh_env(emu: RunningEmulator, **values: str) -> None:
    kube = kube_cluster(emu.world, emu.world.cluster(*ISTIO))
    found = kube.store.get("configmaps", "istio-system", "mesh-env")
    kube.apply({**found, "data": {**found["data"], **values}})


@pytest.fixture
def prepared(fresh_emu: RunningEmulator, tmp_path: Path) -> Iterator[Callable[..., Prepared]]:
    """`prepare` for fortio-0 in a world of the test's own; renewal threads stop afterwards."""
    started: list[Prepared] = []

    def make(*, background: bool = False, **extra: str) -> Prepared:
        settings = settings_for(fresh_emu, "fortio-0", MESH_BASE_DIR=str(tmp_path), **extra)
        done = prepare(settings, clock=fresh_emu.clock, background=background)
        started.append(done)
        return done

    yield make
    for done in started:
        done.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# mesh-env.


def test_mesh_env_feeds_the_control_plane(emu: RunningEmulator) -> None:
    """The cluster's mesh-env gives XDS and CA (istiod), the project number and the cluster id."""
    d = run(emu, "fortio-0")

    assert d.mesh_env is not None
    istiod = emu.hostport("istiod/mesh-demo/istio")
    assert (istiod, istiod) == (d.value("xds_address"), d.value("ca_address"))
    assert {Source.MESH_ENV} == {d.decisions[k].source for k in ("xds_address", "ca_address")}
    assert ("123456789012", Source.MESH_ENV) == (
        d.value("project_number"),
        d.decisions["project_number"].source,
    )
    assert "istio" == d.mesh_env["ISTIO_META_CLUSTER_ID"]


def test_env_wins_over_mesh_env_port_by_port(fresh_emu: RunningEmulator) -> None:
    """Explicit env beats mesh-env (XDS_ADDR, TRUST_DOMAIN); PORT_* merge name by name, env winning."""
    set_mesh_env(
        fresh_emu,
        PORT_grpc="9090",
        PORT_http="8081",
        TRUST_DOMAIN="from-mesh-env.example",
        ISTIO_META_INTERCEPTION_MODE="NONE",
    )
    extra = {"XDS_ADDR": "10.1.1.1:15012", "PORT_http": "7070", "PORT_admin": "10.0.0.9:9"}
    settings = settings_for(fresh_emu, "fortio-0", **extra)

    d = discover(settings, HttpClient(ca_file=settings.ca_file))

    assert ("10.1.1.1:15012", Source.ENV) == (
        d.value("xds_address"),
        d.decisions["xds_address"].source,
    )
    assert ("from-mesh-env.example", Source.MESH_ENV) == (
        d.value("trust_domain"),
        d.decisions["trust_domain"].source,
    )
    assert {
        "grpc": "127.0.0.1:9090",
        "http": "127.0.0.1:7070",
        "admin": "10.0.0.9:9",
    } == merged_ports(settings.ports, d.mesh_env)


def test_forbidden_mesh_env_names_the_user_and_grant(fresh_emu: RunningEmulator) -> None:
    """Without the istio-autoconf binding, reading mesh-env is a clear 403, not an empty map."""
    kube = kube_cluster(fresh_emu.world, fresh_emu.world.cluster(*ISTIO))
    kind = kube.kind("rbac.authorization.k8s.io", "v1", "rolebindings")
    kube.delete(kind, "istio-system", "istio-autoconf-all", {})

    with pytest.raises(DiscoveryError) as caught:
        run(fresh_emu, "fortio-0")

    message = str(caught.value)
    assert 403 == caught.value.status
    assert f'User "{FORTIO}" cannot get resource "configmaps"' in message
    assert f"the cluster must grant {FORTIO} get on configmaps/mesh-env in istio-system" in message


# Kubernetes clients other than GKE's.


def test_admin_kubeconfig_off_google_cloud(emu: RunningEmulator, tmp_path: Path) -> None:
    """A gke_ kubeconfig context names project and cluster; with NO_GCE_CHECK, GKE is not called."""
    d = run(emu, None, NO_GCE_CHECK="true", KUBECONFIG=str(emu.kubeconfig()))

    assert {"project": "mesh-demo", "location": "us-central1-c", "name": "istio"} == d.value(
        "cluster"
    )
    assert Source.KUBECONFIG == d.decisions["cluster"].source
    assert Source.KUBECONFIG == d.decisions["kubernetes_api"].source
    assert d.mesh_env is not None
    assert emu.hostport("istiod/mesh-demo/istio") == d.value("xds_address")


def test_env_beats_the_kubeconfig_context(emu: RunningEmulator) -> None:
    """PROJECT_ID in env wins over the gke_ context's project (the original let the context win)."""
    d = run(
        emu,
        None,
        NO_GCE_CHECK="true",
        KUBECONFIG=str(emu.kubeconfig()),
        PROJECT_ID="other-project",
        CLUSTER_NAME="secret",
        CLUSTER_LOCATION="us-east1-b",
    )

    assert ("other-project", Source.ENV) == (
        d.value("config_project"),
        d.decisions["config_project"].source,
    )
    assert "secret" == d.value("cluster")["name"]


def test_google_auth_provider_kubeconfig_uses_the_metadata_token(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    """`auth-provider: gcp` means the instance's Google access token, so RBAC sees the GSA."""
    admin = yaml.safe_load(emu.kubeconfig().read_text())
    admin["users"][0]["user"] = {"auth-provider": {"name": "gcp"}}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(admin))

    d = run(emu, "fortio-0", KUBECONFIG=str(path))

    assert d.kube is not None
    token = d.kube.request_token("fortio", "default", "mesh-demo.svc.id.goog")
    claims = kube_tokens.verify(emu.world, token.value, now=emu.clock())
    assert "system:serviceaccount:fortio:default" == claims["sub"]


def test_google_kubeconfig_with_a_fixed_token(emu: RunningEmulator, tmp_path: Path) -> None:
    """A kubeconfig holding a Google access token calls as that account: mesh-env is readable."""
    cluster = emu.world.cluster(*ISTIO)
    path = google_kubeconfig(
        emu.world, cluster, "vm-default@mesh-demo.iam.gserviceaccount.com", tmp_path / "k"
    )

    d = run(emu, None, NO_GCE_CHECK="true", KUBECONFIG=str(path), PROJECT_ID="mesh-demo")

    assert d.mesh_env is not None
    assert "XDS_ADDR" in d.mesh_env


def test_in_cluster_config(emu: RunningEmulator, tmp_path: Path) -> None:
    """In a pod: KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA reach the API server."""
    cluster = emu.world.cluster(*ISTIO)
    account = kube_cluster(emu.world, cluster).store.get("serviceaccounts", "fortio", "default")
    token = kube_tokens.mint(
        cluster,
        "fortio",
        "default",
        [cluster.issuer],
        now=emu.clock(),
        sa_uid=account["metadata"]["uid"],
    )
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text(cluster.ca_pem)
    host, port = emu.hostport("kube/mesh-demo/us-central1-c/istio").split(":")
    settings = settings_for(
        emu, "gke-node-1", KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT=port
    )

    d = discover(settings, HttpClient(ca_file=settings.ca_file), in_cluster_dir=tmp_path)

    assert f"https://{host}:{port}" == d.value("kubernetes_api")
    assert "in-cluster" in d.decisions["kubernetes_api"].why
    assert d.mesh_env is not None
    assert "XDS_ADDR" in d.mesh_env


def test_kubeconfig_that_cannot_be_read(emu: RunningEmulator, tmp_path: Path) -> None:
    """A KUBECONFIG naming no file is a ConfigError for KUBECONFIG."""
    with pytest.raises(ConfigError, match="KUBECONFIG: no such file"):
        run(emu, "fortio-0", KUBECONFIG=str(tmp_path / "missing"))


# Identity.


def read_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_certificate_chains_to_the_world_root(
    prepared: Callable[..., Prepared], fresh_emu: RunningEmulator, tmp_path: Path
) -> None:
    """Files in both layouts: a leaf for the workload's SPIFFE id that chains to the world root."""
    done = prepared()

    chain = read_chain(tmp_path / "etc/certs/cert-chain.pem")
    roots = read_chain(tmp_path / "var/run/secrets/workload-spiffe-credentials/ca_certificates.pem")
    world_root = x509.load_pem_x509_certificate(fresh_emu.world.pki.root_pem)
    assert [world_root] == roots
    leaf = chain[0]
    for child, parent in zip(chain, [*chain[1:], world_root], strict=False):
        child.verify_directly_issued_by(parent)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [SPIFFE] == san.get_values_for_type(x509.UniformResourceIdentifier)
    assert (tmp_path / "etc/certs/cert-chain.pem").read_bytes() == (
        tmp_path / "var/run/secrets/workload-spiffe-credentials/certificates.pem"
    ).read_bytes()
    key = tmp_path / "etc/certs/key.pem"
    assert 0o600 == stat.S_IMODE(key.stat().st_mode)
    assert 0o755 == stat.S_IMODE((tmp_path / "etc/certs").stat().st_mode)
    if os.geteuid() == 0:
        assert (1337, 1337) == (key.stat().st_uid, key.stat().st_gid)
    assert ["discovery", "identity"] == list(done.timings)


def test_istio_token_is_written_for_the_ksa(
    prepared: Callable[..., Prepared], fresh_emu: RunningEmulator, tmp_path: Path
) -> None:
    """The istio-token is a TokenRequest JWT for fortio/default, audience the trust domain, 0600."""
    prepared()

    path = tmp_path / "var/run/secrets/tokens/istio-token"
    claims = kube_tokens.verify(
        fresh_emu.world,
        path.read_text(),
        now=fresh_emu.clock(),
        expected_audience="mesh-demo.svc.id.goog",
    )
    assert "system:serviceaccount:fortio:default" == claims["sub"]
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    if os.geteuid() == 0:
        assert 1337 == path.stat().st_uid


def test_oss_istio_token_audience(prepared: Callable[..., Prepared], tmp_path: Path) -> None:
    """OSS_ISTIO makes the istio-token's audience istio-ca; istiod still signs."""
    done = prepared(OSS_ISTIO="1")

    claims = jwt.decode(
        (tmp_path / "var/run/secrets/tokens/istio-token").read_text(),
        options={"verify_signature": False},
    )
    assert ["istio-ca"] == claims["aud"]
    assert done.identity.certificate is not None


def test_sts_subject_comes_from_token_request(
    prepared: Callable[..., Prepared], fresh_emu: RunningEmulator
) -> None:
    """Google tokens for the KSA: TokenRequest (audience the trust domain) -> STS -> IAM."""
    done = prepared()

    assert done.google is not None
    record = fresh_emu.world.tokens.resolve_access_token(
        done.google.access_token(), now=fresh_emu.clock()
    )
    assert record is not None
    assert f"serviceAccount:{SERVICE_AGENT}" == record.principal.subject


def test_certificate_rotates_without_a_restart(
    prepared: Callable[..., Prepared], tmp_path: Path
) -> None:
    """A 2-second certificate is replaced at about half its life by the background thread."""
    done = prepared(background=True, KRUN_CERT_TTL="2")
    first = (tmp_path / "etc/certs/cert-chain.pem").read_bytes()
    first_key = (tmp_path / "etc/certs/key.pem").read_bytes()

    wait_for(lambda: done.identity.rotations >= 3, "two rotations")

    assert first != (tmp_path / "etc/certs/cert-chain.pem").read_bytes()
    assert first_key != (tmp_path / "etc/certs/key.pem").read_bytes()
    latest = read_chain(tmp_path / "etc/certs/cert-chain.pem")[0]
    assert latest.not_valid_after_utc > dt.datetime.now(dt.UTC)


def test_token_refreshed_before_expiry(
    prepared: Callable[..., Prepared], fresh_emu: RunningEmulator, tmp_path: Path
) -> None:
    """Once 80% of the token's hour has passed on the world clock, a new token is written."""
    done = prepared(background=True)
    path = tmp_path / "var/run/secrets/tokens/istio-token"
    first = path.read_text()
    expiry = jwt.decode(first, options={"verify_signature": False})["exp"]

    fresh_emu.clock.advance(2800)
    done.identity.wake()
    time.sleep(0.2)
    assert first == path.read_text(), "not yet due at 2800 s of 3600"
    fresh_emu.clock.advance(200)
    done.identity.wake()
    wait_for(lambda: path.read_text() != first, "the refreshed token")

    renewed = path.read_text()
    assert jwt.decode(renewed, options={"verify_signature": False})["exp"] > expiry
    assert fresh_emu.clock() < expiry, "refreshed before the old token expired"
    assert 2 == done.identity.token_refreshes


def test_token_request_denied_names_the_grant(fresh_emu: RunningEmulator, tmp_path: Path) -> None:
    """A KSA the Google account may not mint tokens for: IdentityError with the API's message."""
    settings = settings_for(fresh_emu, "fortio-0", WORKLOAD_SERVICE_ACCOUNT="other")
    d = discover(settings, HttpClient(ca_file=settings.ca_file))
    identity = Identity.from_discovery(settings, d)

    with pytest.raises(IdentityError) as caught:
        identity.fetch_token()

    assert 403 == caught.value.status
    assert f'User "{FORTIO}" cannot create resource "serviceaccounts/token"' in str(caught.value)


def test_ca_refuses_a_wrong_cluster_id(fresh_emu: RunningEmulator, tmp_path: Path) -> None:
    """The ClusterID sent is istiod's (mesh-env); another one is refused, named by the error."""
    settings = settings_for(
        fresh_emu, "fortio-0", ISTIO_META_CLUSTER_ID="elsewhere", MESH_BASE_DIR=str(tmp_path)
    )
    d = discover(settings, HttpClient(ca_file=settings.ca_file))
    identity = Identity.from_discovery(settings, d)

    with pytest.raises(CertificateError, match=r"UNAUTHENTICATED: .*'elsewhere'"):
        identity.issue()


def test_identity_command_logs_phases(
    fresh_emu: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`krun identity --once` writes the files and logs times as fields, never a secret."""
    environ = krun_env(fresh_emu, "fortio-0", MESH_BASE_DIR=str(tmp_path))

    code = cli.main(["identity", "--once"], environ)

    out, err = capsys.readouterr()
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    assert 0 == code
    token = (tmp_path / "var/run/secrets/tokens/istio-token").read_text()
    key = (tmp_path / "etc/certs/key.pem").read_text().splitlines()[1]
    for secret in (token, token.split(".")[2], key):
        assert secret not in out + err
    phases = {line["phase"]: line["ms"] for line in lines if line["event"] == "phase"}
    assert {"discovery", "identity"} == set(phases)
    prepared_line = next(line for line in lines if line["event"] == "prepared")
    assert set(prepared_line["timings_ms"]) == {"discovery", "identity"}
    assert (tmp_path / "etc/certs/cert-chain.pem").exists()
