"""krun's discovery against the emulated metadata server, GKE API and Resource Manager."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from emulator.istio.meshenv import publish_mesh_env
from emulator.kube.cluster import kube_cluster
from emulator.testing import RunningEmulator
from krun import cli
from krun.config import Settings
from krun.decisions import Source
from krun.discovery.discover import Discovery, discover
from krun.discovery.metadata import MetadataClient, Platform
from krun.errors import ConfigError, DiscoveryError
from krun.http import HttpClient
from krun.intercept import probe as machine
from krun.intercept.choose import Probes
from scenarios.krun_env import loopback_env as krun_env

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent.parent / "golden" / "krun"
FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"


def run(emu: RunningEmulator, instance: str | None, **extra: str) -> Discovery:
    settings = Settings.from_env(krun_env(emu, instance, **extra))
    return discover(settings, HttpClient(ca_file=settings.ca_file), sleep=lambda _: None)


def values(d: Discovery) -> dict[str, Any]:
    return {key: decision.value for key, decision in d.decisions.items()}


def seed_mesh_cluster(emu: RunningEmulator, project: str, location: str, name: str) -> None:
    """What installing the mesh leaves in another cluster: mesh-env, its RBAC, fortio's tokens."""

    def rbac(kind: str, namespace: str, role: dict[str, Any], subject: dict[str, str]) -> list[Any]:
        meta = {"name": role["name"], "namespace": namespace}
        group = "rbac.authorization.k8s.io"
        return [
            {"apiVersion": f"{group}/v1", "kind": "Role", "metadata": meta, "rules": role["rules"]},
            {
                "apiVersion": f"{group}/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": group, "kind": "Role", "name": role["name"]},
                "subjects": [{"apiGroup": group, "kind": kind, **subject}],
            },
        ]

    cluster = emu.world.cluster(project, location, name)
    documents: list[Any] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in ("istio-system", "fortio")
    ]
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "mesh-env", "namespace": "istio-system"},
            "data": {"CLUSTER_NAME": name, "CLUSTER_LOCATION": location},
        }
    )
    read = {
        "name": "istio-autoconf",
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["get"],
                "resourceNames": ["mesh-env", "istio-ca-root-cert"],
            },
        ],
    }
    tokens = {
        "name": "gsa",
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["serviceaccounts/token"],
                "verbs": ["create"],
                "resourceNames": ["default"],
            },
        ],
    }
    documents += rbac("Group", "istio-system", read, {"name": "system:authenticated"})
    documents += rbac("User", "fortio", tokens, {"name": FORTIO})
    kube_cluster(emu.world, cluster).apply_documents(documents)
    publish_mesh_env(emu.world, emu.endpoints)


@pytest.mark.parametrize(
    ("instance", "platform", "region", "email"),
    [
        ("fortio-0", Platform.CLOUD_RUN, "us-central1", FORTIO),
        ("vm-1", Platform.VM, "us-central1", "vm-default@mesh-demo.iam.gserviceaccount.com"),
        ("gke-node-1", Platform.GKE, "us-central1", FORTIO),
    ],
)
def test_metadata_discovery_per_platform(
    emu: RunningEmulator, instance: str, platform: Platform, region: str, email: str
) -> None:
    """Each flavour of metadata server is recognised, with its project, region, account and token."""
    settings = Settings.from_env(emu.metadata_env(instance))

    info = MetadataClient(HttpClient(), settings.endpoints.metadata_host).discover()

    assert platform == info.platform
    assert ("mesh-demo", "123456789012", region, email) == (
        info.project_id,
        info.project_number,
        info.region,
        info.email,
    )
    assert info.instance_id == emu.world.instance(instance).id
    assert info.token is not None
    assert emu.world.tokens.resolve_access_token(info.token.token, now=emu.clock()) is not None
    if platform is Platform.GKE:
        assert ("istio", "us-central1-c") == (info.cluster_name, info.cluster_location)
    else:
        assert (None, None) == (info.cluster_name, info.cluster_location)


@pytest.mark.parametrize("instance", ["fortio-0", "vm-1", "gke-node-1"])
def test_every_platform_finds_the_mesh_cluster(emu: RunningEmulator, instance: str) -> None:
    """The demo world's only mesh cluster near us-central1 is chosen; a GKE node names its own."""
    d = run(emu, instance)

    cluster = d.decisions["cluster"]
    assert {"project": "mesh-demo", "location": "us-central1-c", "name": "istio"} == cluster.value
    assert Source.GKE == cluster.source
    assert (
        "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio"
        == d.value("cluster_url")
    )
    assert "mesh-demo.svc.id.goog" == d.value("trust_domain")
    if instance == "gke-node-1":
        assert "instance/attributes/cluster-name" in cluster.why


MESH_FORMS = {
    "gke:// project lists every cluster": (
        {"MESH": "gke://mesh-demo", "CLUSTER_NAME": "plain"},
        "europe-west1/plain",
    ),
    "gke:// with cluster and namespace": (
        {"MESH": "gke://mesh-demo/europe-west1/plain/payments"},
        "europe-west1/plain",
    ),
    "resource name": (
        {
            "MESH": "//container.googleapis.com/projects/mesh-demo/locations/us-central1-c/clusters/istio"
        },
        "us-central1-c/istio",
    ),
    "selfLink": (
        {
            "MESH": "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio"
        },
        "us-central1-c/istio",
    ),
    "partial resource name selects mesh clusters": (
        {"MESH": "//container.googleapis.com/projects/mesh-demo"},
        "us-central1-c/istio",
    ),
    "env names the cluster": (
        {"CLUSTER_NAME": "istio", "CLUSTER_LOCATION": "us-central1-c"},
        "us-central1-c/istio",
    ),
}


@pytest.mark.parametrize("case", MESH_FORMS)
def test_mesh_forms_against_gke(emu: RunningEmulator, case: str) -> None:
    """Each MESH form reaches the cluster it names or selects."""
    extra, expected = MESH_FORMS[case]

    d = run(emu, "fortio-0", **extra)

    cluster = d.value("cluster")
    assert expected == f"{cluster['location']}/{cluster['name']}"
    if "payments" in extra.get("MESH", ""):
        assert ("payments", Source.ENV) == (d.value("namespace"), d.decisions["namespace"].source)
    if cluster["name"] == "istio":
        # The mesh cluster's mesh-env names istiod, so the control plane comes from it.
        assert d.mesh_env is not None
        assert emu.hostport("istiod/mesh-demo/istio") == d.mesh_env["XDS_ADDR"]
        assert (emu.hostport("istiod/mesh-demo/istio"), Source.MESH_ENV) == (
            d.value("xds_address"),
            d.decisions["xds_address"].source,
        )
    else:
        # `plain` has no mesh-env ConfigMap: an empty map, as the original, not an error.
        assert {} == d.mesh_env
        assert "does not exist (404)" in d.mesh_env_why


def test_mesh_env_file_supplies_the_cluster_and_control_plane(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    """MESH=file:// loads a ConfigMap-shaped mesh-env: it names the cluster and the connector; env still wins."""
    document = tmp_path / "mesh-env.yaml"
    document.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mesh-env, namespace: istio-system}\n"
        "data:\n  PROJECT_ID: mesh-demo\n  CLUSTER_NAME: plain\n  CLUSTER_LOCATION: europe-west1\n"
        "  IMCON_ADDR: 10.1.2.3\n  TRUST_DOMAIN: td.example\n"
    )

    d = run(emu, "fortio-0", MESH=f"file://{document}", TRUST_DOMAIN="mesh-demo.svc.id.goog")

    assert "plain" == d.value("cluster")["name"]
    assert Source.MESH_ENV == d.decisions["config_project"].source
    assert ("10.1.2.3:15012", Source.MESH_ENV) == (
        d.value("xds_address"),
        d.decisions["xds_address"].source,
    )
    assert ("mesh-demo.svc.id.goog", Source.ENV) == (
        d.value("trust_domain"),
        d.decisions["trust_domain"].source,
    )


def test_preferred_label_beats_region(fresh_emu: RunningEmulator) -> None:
    """A cluster labelled krun-config-cluster=true wins over one in the instance's region."""
    plain = fresh_emu.world.cluster("mesh-demo", "europe-west1", "plain")
    plain.resource_labels["krun-config-cluster"] = "true"

    d = run(fresh_emu, "fortio-0", MESH="gke://mesh-demo")

    assert "plain" == d.value("cluster")["name"]
    assert "krun-config-cluster=true" in d.decisions["cluster"].why


def test_namespace_from_the_project_label(emu: RunningEmulator) -> None:
    """A VM without a k8s- account takes the project's mesh-namespace label from Resource Manager."""
    d = run(emu, "vm-1")

    assert ("fortio", Source.CRM) == (d.value("namespace"), d.decisions["namespace"].source)
    assert "crm" in d.timings


def test_namespace_falls_back_to_default(fresh_emu: RunningEmulator) -> None:
    """Without the label, and a two-part project id, the namespace is default."""
    del fresh_emu.world.project("mesh-demo").labels["mesh-namespace"]

    d = run(fresh_emu, "vm-1")

    assert ("default", Source.DEFAULT) == (d.value("namespace"), d.decisions["namespace"].source)


def test_env_namespace_skips_resource_manager(emu: RunningEmulator) -> None:
    """WORKLOAD_NAMESPACE decides alone: Resource Manager is not called."""
    d = run(emu, "vm-1", WORKLOAD_NAMESPACE="shop")

    assert ("shop", Source.ENV) == (d.value("namespace"), d.decisions["namespace"].source)
    assert "crm" not in d.timings


def test_other_project_is_denied_clearly(emu: RunningEmulator) -> None:
    """A config project the workload may not read gives a 403 naming the project, account and permission."""
    with pytest.raises(DiscoveryError) as caught:
        run(emu, "fortio-0", MESH="gke://other-project")

    message = str(caught.value)
    assert 403 == caught.value.status
    assert "listing clusters of project other-project" in message
    assert f"as {FORTIO}" in message
    assert "container.clusters.list" in message


def test_multi_project_uses_the_config_project(fresh_emu: RunningEmulator) -> None:
    """Granted on another project, krun bills it (x-goog-user-project) and picks its cluster."""
    other = fresh_emu.world.project("other-project")
    other.iam.setdefault("roles/container.clusterViewer", set()).add(f"serviceAccount:{FORTIO}")
    seed_mesh_cluster(fresh_emu, "other-project", "us-east1-b", "secret")

    d = run(fresh_emu, "fortio-0", MESH="gke://other-project")

    assert {"project": "other-project", "location": "us-east1-b", "name": "secret"} == d.value(
        "cluster"
    )
    assert ("other-project", "mesh-demo") == (
        d.value("config_project"),
        d.value("workload_project"),
    )
    assert "other-project" == d.value("quota_project")
    assert "other-project.svc.id.goog" == d.value("trust_domain")
    # The number of a project we may not read stays unknown, with the reason, not a crash.
    assert d.value("project_number") is None
    assert "Resource Manager refused project other-project" in d.decisions["project_number"].why
    # The other project's cluster is the one whose mesh-env and istiod are used.
    assert emu_istiod(fresh_emu, "other-project/secret") == d.value("xds_address")


def test_unknown_quota_project_is_refused(emu: RunningEmulator) -> None:
    """The emulator checks the billed project exists: a config project that does not is a clear 4xx."""
    with pytest.raises(DiscoveryError) as caught:
        run(emu, "fortio-0", MESH="gke://no-such-project")

    assert caught.value.status in (400, 403)
    assert "no-such-project" in str(caught.value)


def test_missing_cluster_is_a_clear_error(emu: RunningEmulator) -> None:
    """A named cluster that does not exist is a 404 naming it, not a crash later."""
    with pytest.raises(DiscoveryError) as caught:
        run(
            emu,
            "fortio-0",
            MESH="//container.googleapis.com/projects/mesh-demo/locations/us-central1-c/clusters/nope",
        )

    assert 404 == caught.value.status
    assert "cluster mesh-demo/us-central1-c/nope not found" in str(caught.value)


def test_no_mesh_cluster_is_a_clear_error(fresh_emu: RunningEmulator) -> None:
    """When no cluster carries mesh_id, discovery says so and how to widen the search."""
    fresh_emu.world.cluster("mesh-demo", "us-central1-c", "istio").resource_labels.clear()

    with pytest.raises(
        DiscoveryError, match="no cluster found in project mesh-demo labelled mesh_id"
    ):
        run(fresh_emu, "fortio-0")


def test_unknown_cluster_name_lists_what_exists(emu: RunningEmulator) -> None:
    """A CLUSTER_NAME that matches nothing names the clusters that exist."""
    with pytest.raises(DiscoveryError, match=r"no cluster named 'nope'.*us-central1-c/istio"):
        run(emu, "fortio-0", CLUSTER_NAME="nope")


def test_metadata_server_down_is_a_discovery_error(emu: RunningEmulator) -> None:
    """An unreachable metadata server is a DiscoveryError naming its URL."""
    with pytest.raises(DiscoveryError) as caught:
        run(emu, None, GCE_METADATA_HOST="127.0.0.1:9")

    assert caught.value.status is None
    assert "127.0.0.1:9" in str(caught.value)


def test_off_google_cloud_needs_a_project(emu: RunningEmulator) -> None:
    """With NO_GCE_CHECK and no project anywhere, discovery fails at the project step."""
    d = Discovery()
    settings = Settings.from_env(krun_env(emu, None, NO_GCE_CHECK="true"))

    with pytest.raises(DiscoveryError, match="no project"):
        discover(settings, HttpClient(ca_file=settings.ca_file), into=d)

    assert "project" == d.step
    assert "none" == d.value("platform")


def emu_istiod(emu: RunningEmulator, key: str) -> str:
    return emu.hostport(f"istiod/{key}")


# `krun explain`.

VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "TIME"),
]
ROOT_AND_CAPABLE = Probes(root=True, cap_net_admin=True, iptables=True)


@pytest.fixture
def fixed_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback goldens must not depend on who runs them: the machine probes are fixed."""
    monkeypatch.setattr(machine, "probe", lambda **_: ROOT_AND_CAPABLE)


def normalise(document: dict[str, Any], base: Path) -> dict[str, Any]:
    """Drop what changes between runs: timings, ports, times, lifetimes, the base directory."""
    document = dict(document)
    document["timings_ms"] = sorted(document["timings_ms"])
    issued = (document.get("certificate") or {}).get("issued")
    if issued:
        issued["lifetime_s"] = round(issued["lifetime_s"], -2)
    text = json.dumps(document, indent=2, sort_keys=True).replace(str(base), "BASE")
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return dict(json.loads(text))


def check_golden(name: str, document: dict[str, Any], update: bool) -> None:
    path = GOLDEN / name
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden"
    assert path.read_text() == text


def explain(
    emu: RunningEmulator, instance: str | None, capsys: pytest.CaptureFixture[str], **extra: str
) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["explain"], krun_env(emu, instance, **extra))
    out, err = capsys.readouterr()
    return code, json.loads(out), err


CLOUD_RUN_CONTRACT = {"K_SERVICE": "fortio", "K_REVISION": "fortio-00001-abc", "PORT": "8080"}


@pytest.mark.usefixtures("fixed_probes")
def test_explain_fortio_0_golden(
    emu: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, update_golden: bool
) -> None:
    """`krun explain` for Cloud Run instance fortio-0 prints every decision, its source, and a real certificate."""
    code, document, err = explain(
        emu, "fortio-0", capsys, MESH_BASE_DIR=str(tmp_path), **CLOUD_RUN_CONTRACT
    )

    assert (0, "") == (code, err)
    assert document["ok"]
    assert ["spiffe://mesh-demo.svc.id.goog/ns/fortio/sa/default"] == document["certificate"]["san"]
    check_golden("explain-fortio-0.json", normalise(document, tmp_path), update_golden)
    assert not list(tmp_path.iterdir()), "explain must not write files"


@pytest.mark.usefixtures("fixed_probes")
def test_explain_multi_project_golden(
    fresh_emu: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    update_golden: bool,
) -> None:
    """Config project other-project, workload in mesh-demo: its cluster, mesh-env, istiod and trust domain."""
    other = fresh_emu.world.project("other-project")
    other.iam.setdefault("roles/container.clusterViewer", set()).add(f"serviceAccount:{FORTIO}")
    seed_mesh_cluster(fresh_emu, "other-project", "us-east1-b", "secret")

    code, document, err = explain(
        fresh_emu,
        "fortio-0",
        capsys,
        MESH="gke://other-project",
        MESH_BASE_DIR=str(tmp_path),
        **CLOUD_RUN_CONTRACT,
    )

    assert (0, "") == (code, err), document["error"]
    assert ["spiffe://other-project.svc.id.goog/ns/fortio/sa/default"] == document["certificate"][
        "san"
    ]
    assert "other-project" == document["decisions"]["quota_project"]["value"]
    check_golden("explain-multi-project.json", normalise(document, tmp_path), update_golden)


def test_explain_multi_project_failure_golden(
    emu: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, update_golden: bool
) -> None:
    """A denied config project: exit 1, one sentence naming the step, and the decisions made so far."""
    code, document, err = explain(
        emu,
        "fortio-0",
        capsys,
        MESH="gke://other-project",
        MESH_BASE_DIR=str(tmp_path),
        **CLOUD_RUN_CONTRACT,
    )

    assert 1 == code
    assert err.startswith(
        "krun explain: step 'gke' failed: GKE: listing clusters of project other-project"
    )
    assert "gke" == document["failed_step"]
    check_golden(
        "explain-fortio-0-other-project.json", normalise(document, tmp_path), update_golden
    )


def test_explain_bad_setting(emu: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed setting: exit 2 and a sentence naming the variable."""
    code, document, err = explain(emu, "fortio-0", capsys, MESH="istio")

    assert 2 == code
    assert ("settings", "MESH") == (document["failed_step"], document["error_variable"])
    assert err.startswith("krun explain: the setting MESH is invalid")


def test_explain_shows_the_control_plane_from_mesh_env(
    emu: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cluster's mesh-env names istiod: XDS and CA addresses are real, with source mesh-env."""
    _, document, _ = explain(emu, "fortio-0", capsys)

    assert document["mesh_env"]["loaded"]
    assert "ConfigMap istio-system/mesh-env" in document["mesh_env"]["why"]
    for key in ("xds_address", "ca_address"):
        assert {"value": emu_istiod(emu, "mesh-demo/istio"), "source": "mesh-env"} == {
            k: document["decisions"][key][k] for k in ("value", "source")
        }


def test_explain_bad_kubeconfig_names_the_field(
    emu: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A kubeconfig whose context names no cluster: exit 2, the file and field named."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "current-context: c\ncontexts: [{name: c, context: {cluster: nope, user: u}}]\n"
        "clusters: []\nusers: [{name: u, user: {token: t}}]\n"
    )

    code, document, err = explain(emu, "fortio-0", capsys, KUBECONFIG=str(kubeconfig))

    assert 2 == code
    assert "KUBECONFIG" == document["error_variable"]
    assert f"{kubeconfig}: contexts[0].context.cluster: names no entry of clusters" in err


def test_config_error_is_raised_before_any_call() -> None:
    """Settings errors surface before discovery touches the network."""
    with pytest.raises(ConfigError):
        Settings.from_env({"MESH": "gke://"})
