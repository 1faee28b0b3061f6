"""The emulated Kubernetes API against the real `kubectl` (installed by scripts/install)."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from emulator import kube_tokens
from emulator.kube.cluster import KubeCluster, kube_cluster
from emulator.kube.kubeconfig import google_kubeconfig
from emulator.kube.manifests import MANIFESTS
from emulator.testing import RunningEmulator, demo_world_text, start

pytestmark = pytest.mark.integration

FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not on PATH: run scripts/install (it installs kubernetes-client)")
    return found


class Kubectl:
    """Runs kubectl with one kubeconfig and a clean environment (HOME in a temp dir)."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
        self.binary = kubectl_binary()

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--kubeconfig", str(self.kubeconfig), *args]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def kemu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The demo world without its seeded manifests: a cluster as an Istio install leaves it."""
    world = yaml.safe_load(demo_world_text())
    for project in world["projects"]:
        for cluster in project.get("clusters", []):
            cluster.pop("manifests", None)
    with start(tmp_path_factory.mktemp("kubectl"), world_text=yaml.safe_dump(world)) as running:
        yield running


@pytest.fixture(scope="module")
def kube(kemu: RunningEmulator) -> KubeCluster:
    return kube_cluster(kemu.world, kemu.world.cluster("mesh-demo", "us-central1-c", "istio"))


@pytest.fixture(scope="module")
def admin(kemu: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(kemu.kubeconfig(), tmp_path_factory.mktemp("home-admin"))


@pytest.fixture(scope="module")
def as_fortio(
    kemu: RunningEmulator, kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    home = tmp_path_factory.mktemp("home-fortio")
    return Kubectl(google_kubeconfig(kemu.world, kube.cluster, FORTIO, home / "kubeconfig"), home)


@pytest.fixture(scope="module")
def applied(admin: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's manifests applied with `apply -k`, after the Istio CRDs; returns a copy."""
    crds = admin("apply", "-f", str(MANIFESTS / "crds" / "istio.yaml"))
    assert 0 == crds.returncode, crds.stderr
    namespace = admin("create", "namespace", "istio-system")
    assert 0 == namespace.returncode, namespace.stderr
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("crds", "*.md"))
    result = admin("apply", "-k", str(copy))
    assert 0 == result.returncode, result.stderr
    assert "rolebinding.rbac.authorization.k8s.io/istio-autoconf-all created" in result.stdout
    assert "deployment.apps/hgate created" in result.stdout
    assert "virtualservice.networking.istio.io/hgate-istiod created" in result.stdout
    return copy


def test_apply_k_updates_what_changed(applied: Path, admin: Kubectl, kube: KubeCluster) -> None:
    """A second `apply -k` with a new image and env var configures only the Deployment."""
    path = applied / "hgate" / "deployment.yaml"
    text = path.read_text().replace("localhost/krun/hgate:dev", "localhost/krun/hgate:v2")
    text = text.replace(
        "          env:\n", "          env:\n            - {name: EXTRA, value: x}\n"
    )
    path.write_text(text)
    result = admin("apply", "-k", str(applied))
    assert 0 == result.returncode, result.stderr
    assert "deployment.apps/hgate configured" in result.stdout
    assert "service/hgate unchanged" in result.stdout
    stored = kube.store.get("deployments.apps", "istio-system", "hgate")
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert "localhost/krun/hgate:v2" == container["image"]
    assert ["EXTRA", "WORKLOAD_NAMESPACE"] == [e["name"] for e in container["env"]]
    assert 2 == stored["metadata"]["generation"]


def test_apply_f_then_get_json_and_yaml(admin: Kubectl, tmp_path: Path) -> None:
    """`apply -f` creates then configures; `get -o json` and `-o yaml` show the result."""
    manifest = tmp_path / "cm.yaml"
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": "default"},
        "data": {"a": "1", "b": "2"},
    }
    manifest.write_text(yaml.safe_dump(document))
    assert "configmap/applied created" in admin("apply", "-f", str(manifest)).stdout
    document["data"] = {"a": "9"}
    manifest.write_text(yaml.safe_dump(document))
    assert "configmap/applied configured" in admin("apply", "-f", str(manifest)).stdout
    as_json = json.loads(admin("get", "configmap", "applied", "-o", "json").stdout)
    assert {"a": "9"} == as_json["data"]
    assert ("ConfigMap", "v1") == (as_json["kind"], as_json["apiVersion"])
    as_yaml = yaml.safe_load(admin("get", "configmap", "applied", "-o", "yaml").stdout)
    assert as_json["metadata"]["resourceVersion"] == as_yaml["metadata"]["resourceVersion"]


def test_get_watch_sees_a_change(admin: Kubectl, kube: KubeCluster) -> None:
    """`get -w` prints the object, then its change, without polling."""
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "watched", "namespace": "default"},
    }
    kube.apply({**cm, "data": {"v": "1"}})
    lines: queue.Queue[str] = queue.Queue()
    watching = kube.store.watchers("configmaps")
    process = subprocess.Popen(
        admin.command("get", "configmap", "watched", "-w", "-o", 'jsonpath={.data.v}{"\\n"}'),
        env=admin.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert "1" == lines.get(timeout=20)
        # A watch of one object starts with a synthetic ADDED event that kubectl does not
        # print; a change made before the watch is open would hide in it, on any server.
        deadline = time.monotonic() + 20
        while kube.store.watchers("configmaps") == watching and time.monotonic() < deadline:
            time.sleep(0.02)
        kube.apply({**cm, "data": {"v": "2"}})
        assert "2" == lines.get(timeout=20)
    finally:
        process.kill()
        process.wait(timeout=10)
        reader.join(timeout=10)
        process.stdout.close()


def test_create_token(admin: Kubectl, kemu: RunningEmulator, kube: KubeCluster) -> None:
    """`create token` returns a token for the audience and duration asked (kubectl >= 1.24)."""
    version = json.loads(admin("version", "--client", "-o", "json").stdout)["clientVersion"]
    minor = int(re.match(r"\d+", version["minor"]).group())  # type: ignore[union-attr]
    assert minor >= 24, f"kubectl 1.{minor} has no `create token`; install kubectl 1.24 or newer"
    now = kemu.world.clock()
    result = admin(
        "create", "token", "default", "-n", "default", "--audience", "aud-x", "--duration", "10m"
    )
    assert 0 == result.returncode, result.stderr
    claims = kube_tokens.verify(
        kemu.world, result.stdout.strip(), now=kemu.world.clock(), expected_audience="aud-x"
    )
    assert "system:serviceaccount:default:default" == claims["sub"]
    assert abs(claims["exp"] - (now + 600)) <= 2
    assert kube.cluster.issuer == claims["iss"]


def test_auth_can_i_for_a_google_account(
    applied: Path, as_fortio: Kubectl, kube: KubeCluster
) -> None:
    """A Cloud Run account may get mesh-env (exit 0, yes) but not update it (exit 1, no)."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "mesh-env", "namespace": "istio-system"},
            "data": {"A": "1"},
        }
    )
    allowed = as_fortio("auth", "can-i", "get", "configmaps/mesh-env", "-n", "istio-system")
    assert (0, "yes") == (allowed.returncode, allowed.stdout.strip())
    denied = as_fortio("auth", "can-i", "update", "configmaps/mesh-env", "-n", "istio-system")
    assert (1, "no") == (denied.returncode, denied.stdout.strip())


def test_forbidden_verb_and_missing_object(
    applied: Path, as_fortio: Kubectl, admin: Kubectl
) -> None:
    """kubectl prints the server's Forbidden and NotFound Status messages and exits 1."""
    forbidden = as_fortio("label", "configmap", "mesh-env", "-n", "istio-system", "x=y")
    assert 1 == forbidden.returncode
    assert (
        f'Error from server (Forbidden): configmaps "mesh-env" is forbidden: User "{FORTIO}" '
        'cannot patch resource "configmaps" in API group "" in the namespace "istio-system"'
    ) == forbidden.stderr.strip()
    missing = admin("get", "configmap", "nope")
    assert 1 == missing.returncode
    assert 'Error from server (NotFound): configmaps "nope" not found' == missing.stderr.strip()


def test_delete(admin: Kubectl, kube: KubeCluster) -> None:
    """`delete` removes the object and returns once it is gone."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "doomed", "namespace": "default"},
        }
    )
    result = admin("delete", "configmap", "doomed")
    assert 0 == result.returncode, result.stderr
    assert 'configmap "doomed" deleted' == result.stdout.strip()
    assert kube.store.find("configmaps", "default", "doomed") is None
