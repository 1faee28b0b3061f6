"""Pure parts of the world harness: the addressing plan, harness files, OCI bundles, rules."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.world import Cluster
from scenarios.apps.echo import fetch_allowed
from scenarios.world import mesh
from scenarios.world.errors import WorldSpecError
from scenarios.world.plan import METADATA_IP, Plan, hosts_file, make_plan, new_prefix
from scenarios.world.pods import istio_rules
from scenarios.world.sandbox import oci_config
from scenarios.world.spec import PodRun, build_spec, expand
from scenarios.world.sweep import WorldState, alive, process_start, sweep

NET = ipaddress.IPv4Network("10.77.0.0/16")
EMULATOR = {"projects": [{"id": "mesh-demo", "number": 1}]}


def _plan() -> Plan:
    return make_plan(
        "kwabc123",
        NET,
        run_hosts=("a-x-uc.a.run.app",),
        clusters=("p/us-central1-c/istio",),
        clients=("client",),
        pods=("p1", "p2"),
        meshes=("p/us-central1-c/istio",),
        pod_routes={"p1": ("10.12.0.0/20",)},
    )


class TestPlan:
    def test_every_address_is_distinct_and_inside_the_world(self) -> None:
        """No two participants or services share an address, and all sit in the world network."""
        plan = _plan()
        addresses = [
            plan.emulator.address,
            *plan.google.values(),
            plan.run_frontend,
            *plan.cluster_endpoints.values(),
            *plan.istiods.values(),
            *(a.address for a in plan.clients.values()),
            *(a.address for a in plan.pods.values()),
            plan.instance(0, connector=False).address,
            plan.instance(1, connector=False).address,
        ]
        assert len(addresses) == len(set(addresses))
        assert all(ipaddress.IPv4Address(a) in NET for a in addresses)

    def test_the_same_inputs_give_the_same_plan(self) -> None:
        """The plan is a pure function."""
        assert _plan() == _plan()

    def test_names_carry_the_prefix(self) -> None:
        """Every namespace name starts with the run prefix."""
        plan = _plan()
        names = [plan.world_netns, plan.emulator.netns, plan.instance(3, connector=True).netns]
        names += [a.netns for a in (*plan.clients.values(), *plan.pods.values())]
        assert all(n.startswith("kwabc123-") for n in names)

    def test_instances_route_to_pods_only_with_a_connector(self) -> None:
        """Without a connector an instance reaches Google and metadata only; never a default route."""
        plan = _plan()
        plain = {r.destination for r in plan.instance(0, connector=False).routes}
        connected = {r.destination for r in plan.instance(0, connector=True).routes}
        assert plain == {"10.77.0.0/24", f"{METADATA_IP}/32"}
        assert connected == plain | {"10.77.2.0/24"}
        every = [plan.emulator, *plan.clients.values(), *plan.pods.values()]
        assert all(r.destination not in ("0.0.0.0/0", "default") for a in every for r in a.routes)

    def test_services_bind_their_real_ports_on_their_own_addresses(self) -> None:
        """Each Google service gets :443 on its own address; metadata 169.254.169.254:80."""
        bind = _plan().bind_map()
        assert bind["metadata"] == (METADATA_IP, 80)
        assert bind["sts"] == ("10.77.0.12", 443)
        assert bind["run"] == ("10.77.0.20", 443)
        assert len({host for host, _ in bind.values()}) == len(bind)

    def test_hosts_file_names_every_google_host(self) -> None:
        """The hosts file resolves metadata, googleapis hosts, accounts.google.com and run.app hosts."""
        text = hosts_file(_plan(), own_name="me", own_address="10.77.3.10")
        lines = {
            line.split("\t")[0]: line.split("\t")[1].split()
            for line in text.splitlines()
            if "\t" in line
        }
        assert "metadata.google.internal" in lines[METADATA_IP]
        assert "sts.googleapis.com" in lines["10.77.0.12"]
        assert "accounts.google.com" in lines["10.77.0.14"]
        assert lines["10.77.0.20"] == ["a-x-uc.a.run.app"]
        assert lines["10.77.3.10"] == ["me"]

    def test_cluster_services_bind_on_their_own_addresses(self) -> None:
        """Each cluster's API server gets :443 and each mesh's istiod :15012, on its own address."""
        plan = _plan()
        bind = plan.bind_map()
        assert bind["kube/p/us-central1-c/istio"] == ("10.77.0.30", 443)
        assert bind["istiod/p/istio"] == ("10.77.0.40", 15012)
        assert {"10.77.0.30", "10.77.0.40"} <= set(plan.emulator.extra)

    def test_pods_route_their_clusters_service_range(self) -> None:
        """A pod of a cluster routes its Service VIPs to the world; other pods do not."""
        plan = _plan()
        assert "10.12.0.0/20" in {r.destination for r in plan.pods["p1"].routes}
        assert "10.12.0.0/20" not in {r.destination for r in plan.pods["p2"].routes}

    def test_cluster_participants_resolve_istiod_kubernetes_and_services_once(self) -> None:
        """Inside a cluster: istiod, kubernetes.default.svc and the given Services; no name twice."""
        text = hosts_file(
            _plan(),
            own_name="p1",
            own_address="10.77.2.10",
            cluster="p/us-central1-c/istio",
            extra=(("10.12.0.5", ("echo.ns.svc.cluster.local", "p1")),),
        )
        entries = text.splitlines()[3:]  # after the comment and the two localhost lines
        names = [n for line in entries for n in line.split("\t")[1].split()]
        lines = {
            line.split("\t")[1].split()[0]: line.split("\t")[0] for line in text.splitlines()[1:]
        }
        assert lines["istiod.istio-system.svc"] == "10.77.0.40"
        assert lines["kubernetes.default.svc"] == "10.77.0.30"
        assert lines["echo.ns.svc.cluster.local"] == "10.12.0.5"
        assert len(names) == len(set(names))
        outside = hosts_file(_plan(), own_name="c", own_address="10.77.3.10")
        assert "istiod.istio-system.svc" in outside
        assert "kubernetes.default.svc" not in outside

    def test_a_world_needs_four_subnets(self) -> None:
        """A network smaller than a /22 is refused."""
        with pytest.raises(ValueError, match="/22"):
            make_plan("kwabc123", ipaddress.IPv4Network("10.0.0.0/24"))


class TestSpec:
    def test_a_valid_file_builds(self, tmp_path: Path) -> None:
        """Services, pods and clients come out typed, with defaults filled in."""
        spec = build_spec(
            {
                "emulator": EMULATOR,
                "services": [{"service": "a", "generation": "gen1", "command": ["{python}", "-V"]}],
                "pods": [{"name": "p", "command": ["true"]}],
            },
            base=tmp_path,
        )
        assert spec.services[0].generation == "gen1"
        assert spec.pods[0].interception == "istio"
        assert spec.clients == ("client",)
        assert expand(spec.services[0].command, "/py") == ["/py", "-V"]

    def test_every_problem_is_named_by_its_field(self, tmp_path: Path) -> None:
        """One error lists each bad field by path."""
        with pytest.raises(WorldSpecError) as raised:
            build_spec(
                {
                    "emulator": EMULATOR,
                    "network": "10.0.0.0/24",
                    "services": [
                        {"service": "a", "generation": "gen3", "command": ["x"]},
                        {"service": "b", "generation": "gen2", "command": [], "root": "/srv"},
                    ],
                    "pods": [
                        {"name": "Bad_Name", "command": ["x"], "interception": "tproxy", "extra": 1}
                    ],
                },
                base=tmp_path,
            )
        problems = "\n".join(raised.value.problems)
        for field in (
            "world.network:",
            "world.services[0].generation:",
            "world.services[1].command:",
            "world.services[1].root:",
            "world.pods[0].name:",
            "world.pods[0].interception:",
            "world.pods[0].extra:",
        ):
            assert field in problems

    def test_pods_and_kube_services_come_out_typed(self, tmp_path: Path) -> None:
        """Pod labels, ports and sidecar, and Service ports with their defaults."""
        spec = build_spec(
            {
                "emulator": EMULATOR,
                "pods": [
                    {"name": "a", "command": ["x"], "labels": {"app": "a"}, "ports": [8080]},
                    {"name": "b", "command": ["x"], "interception": "none"},
                ],
                "kube_services": [
                    {"name": "a", "cluster": "c", "selector": {"app": "a"}, "ports": [{"port": 80}]}
                ],
            },
            base=tmp_path,
        )
        assert (spec.pods[0].labels, spec.pods[0].ports, spec.pods[0].sidecar) == (
            {"app": "a"},
            (8080,),
            True,
        )
        assert spec.pods[1].sidecar is False
        service = spec.kube_services[0]
        assert service.namespace == "default"
        assert service.to_json()["spec"]["ports"] == [
            {"port": 80, "targetPort": 80, "protocol": "TCP"}
        ]
        assert service.selects(mesh_pod(labels={"app": "a"}, cluster="c", namespace="default"))

    def test_pod_and_service_problems_are_named_by_field(self, tmp_path: Path) -> None:
        """Bad pod ports, a sidecar without capture and incomplete Services are each named."""
        with pytest.raises(WorldSpecError) as raised:
            build_spec(
                {
                    "emulator": EMULATOR,
                    "pods": [
                        {
                            "name": "a",
                            "command": ["x"],
                            "ports": [0],
                            "interception": "none",
                            "sidecar": True,
                            "labels": ["x"],
                        }
                    ],
                    "kube_services": [
                        {"name": "s", "cluster": "c", "ports": [{"port": 1}, {"port": 2}]},
                        {"cluster": "c", "selector": {"a": "b"}, "ports": [{"port": "x", "y": 1}]},
                    ],
                },
                base=tmp_path,
            )
        problems = "\n".join(raised.value.problems)
        for field in (
            "world.pods[0].ports[0].port:",
            "world.pods[0].sidecar:",
            "world.pods[0].labels:",
            "world.kube_services[0].selector:",
            "world.kube_services[0].ports: every port needs a name",
            "world.kube_services[1].name: required",
            "world.kube_services[1].ports[0].port:",
            "world.kube_services[1].ports[0].y: unknown field",
        ):
            assert field in problems

    def test_the_emulator_world_can_be_a_path(self, tmp_path: Path) -> None:
        """A relative emulator path is read next to the harness file."""
        (tmp_path / "w.yaml").write_text("name: w\nprojects: [{id: mesh-demo, number: 1}]\n")
        spec = build_spec({"emulator": "w.yaml"}, base=tmp_path)
        assert spec.name == "w"
        assert spec.emulator["projects"][0]["id"] == "mesh-demo"


class TestBundleAndRules:
    def test_oci_config_uses_the_instance_namespace_and_a_read_only_root(self) -> None:
        """The bundle joins the named netns, keeps root read-only and binds the world's /etc files."""
        config = oci_config(
            args=["app"],
            env={"PORT": "8080"},
            netns_path="/run/netns/kwabc123-i0",
            etc_files={"/etc/hosts": "/etc/netns/kwabc123-i0/hosts"},
        )
        assert config["root"] == {"path": "/", "readonly": True}
        overlaid = oci_config(args=["app"], env={}, netns_path="/n", memory_overlay=True)
        assert overlaid["root"] == {"path": "/", "readonly": False}
        assert {"type": "network", "path": "/run/netns/kwabc123-i0"} in config["linux"][
            "namespaces"
        ]
        assert "PORT=8080" in config["process"]["env"]
        binds = {m["destination"]: m["source"] for m in config["mounts"] if m["type"] == "bind"}
        assert binds == {"/etc/hosts": "/etc/netns/kwabc123-i0/hosts"}
        assert "CAP_NET_ADMIN" not in config["process"]["capabilities"]["effective"]

    def test_oci_config_binds_a_checkout_after_the_sandbox_tmp(self) -> None:
        """A working directory under /tmp stays visible: its bind comes after the /tmp tmpfs."""
        config = oci_config(
            args=["app"], env={}, netns_path="/run/netns/x", cwd="/tmp/ci", binds=["/tmp/ci"]
        )
        destinations = [m["destination"] for m in config["mounts"]]
        assert destinations.index("/tmp") < destinations.index("/tmp/ci")
        bind = config["mounts"][destinations.index("/tmp/ci")]
        assert (bind["source"], bind["options"]) == ("/tmp/ci", ["rbind", "ro"])
        assert config["process"]["cwd"] == "/tmp/ci"

    def test_istio_rules_redirect_everything_but_the_proxy(self) -> None:
        """Inbound goes to 15006 and outbound to 15001; uid 1337 and 127.0.0.6 are exempt."""
        rules = istio_rules()
        assert rules.startswith("*nat\n")
        assert rules.endswith("COMMIT\n")
        assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in rules
        assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
        assert "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN" in rules
        assert "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN" in rules
        assert "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN" in rules


def mesh_pod(**fields: object) -> PodRun:
    defaults: dict[str, object] = {"name": "web", "command": ("app",), "namespace": "ns"}
    return PodRun(**{**defaults, **fields})  # type: ignore[arg-type]


class TestMeshObjects:
    def test_pod_is_pending_with_its_ip_and_the_injectors_marks(self) -> None:
        """Before it is ready a pod already has its IP, account and istio tlsMode label."""
        pod = mesh.pod_object(
            mesh_pod(labels={"app": "web"}, service_account="sa", ports=(8080,)),
            address="10.77.2.10",
            node="n",
            now=0,
        )
        assert pod["status"]["phase"] == "Pending"
        assert pod["status"]["podIP"] == "10.77.2.10"
        assert pod["spec"]["serviceAccountName"] == "sa"
        assert pod["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
        assert "sidecar.istio.io/status" in pod["metadata"]["annotations"]
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "istio-proxy"]
        ready = mesh.pod_status("10.77.2.10", now=0, ready=True)
        assert ready["phase"] == "Running"
        assert {"type": "Ready", "status": "True"}.items() <= ready["conditions"][-1].items()

    def test_endpoint_slice_lists_pods_with_their_readiness(self) -> None:
        """The slice is labelled with its Service and marks each pod's address ready or not."""
        service = build_spec(
            {
                "emulator": EMULATOR,
                "kube_services": [
                    {
                        "name": "web",
                        "cluster": "c",
                        "selector": {"app": "web"},
                        "ports": [{"port": 80}],
                    }
                ],
            },
            base=Path("/"),
        ).kube_services[0]
        pods = [
            {**mesh.pod_object(mesh_pod(name=n), address=a, node="n", now=0), "status": s}
            for n, a, s in (
                ("b", "10.0.0.2", mesh.pod_status("10.0.0.2", now=0, ready=False)),
                ("a", "10.0.0.1", mesh.pod_status("10.0.0.1", now=0, ready=True)),
            )
        ]
        slice_ = mesh.endpoint_slice(service, pods)
        assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
        assert [(e["addresses"], e["conditions"]["ready"]) for e in slice_["endpoints"]] == [
            (["10.0.0.1"], True),
            (["10.0.0.2"], False),
        ]

    def test_sidecar_bootstrap_names_the_pod_and_keeps_admin_on_loopback(
        self, tmp_path: Path
    ) -> None:
        """Node id and metadata are the agent's; admin is 127.0.0.1:15000; xDS goes to istiod."""
        cluster = Cluster("p", "istio", "us-central1-c", resource_labels={"mesh_id": "m"})
        bootstrap = mesh.sidecar_bootstrap(
            mesh_pod(labels={"app": "web"}),
            address="10.77.2.10",
            cluster=cluster,
            istiod="10.77.0.40:15012",
            ca_file=tmp_path / "ca.pem",
            token="t",
        )
        assert bootstrap["node"]["id"] == "sidecar~10.77.2.10~web.ns~ns.svc.cluster.local"
        metadata = bootstrap["node"]["metadata"]
        assert (metadata["INTERCEPTION_MODE"], metadata["CLUSTER_ID"]) == ("REDIRECT", "istio")
        assert metadata["LABELS"]["security.istio.io/tlsMode"] == "istio"
        assert bootstrap["admin"]["address"]["socket_address"] == {
            "address": "127.0.0.1",
            "port_value": 15000,
        }
        clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
        for name in ("xds-grpc", "sds-grpc"):
            address = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            assert address["endpoint"]["address"]["socket_address"]["port_value"] == 15012


class TestSweep:
    def test_a_recycled_pid_is_not_the_recorded_process(self) -> None:
        """A PID counts as alive only with the start time recorded for it."""
        start = process_start(os.getpid())
        assert start is not None
        assert alive(os.getpid(), start)
        assert not alive(os.getpid(), start + 1)

    def test_live_worlds_are_kept_and_dead_ones_swept(self, tmp_path: Path) -> None:
        """Without include_live a world whose owner runs (this process too) is left alone."""
        live = WorldState.create(new_prefix(), tmp_path)
        dead = WorldState.create(new_prefix(), tmp_path)
        child = subprocess.Popen(["sleep", "30"])
        dead.owner = {"pid": child.pid, "start": process_start(child.pid) or 0}
        dead.save()
        child.kill()
        child.wait()

        kept = sweep(prefix=live.prefix, root=tmp_path)
        swept = sweep(prefix=dead.prefix, root=tmp_path)

        assert (kept.skipped_live, kept.worlds) == ([live.prefix], [])
        assert live.directory.is_dir()
        assert swept.worlds == [dead.prefix]
        assert not dead.directory.exists()
        assert sweep(prefix=live.prefix, root=tmp_path, include_live=True).worlds == [live.prefix]
        assert not live.directory.exists()


class TestEchoFetchAllowlist:
    """The echo app's /fetch only reaches hosts whose every address is allowed."""

    @staticmethod
    def resolver(table: dict[str, list[str]]) -> Callable[[str], list[str]]:
        def resolve(host: str) -> list[str]:
            if host not in table:
                raise OSError("unknown host")
            return table[host]

        return resolve

    def test_inside_and_outside(self) -> None:
        """All addresses inside: allowed; any address outside, or none: refused with the reason."""
        resolve = self.resolver(
            {"in": ["10.77.1.2"], "mixed": ["10.77.1.2", "8.8.8.8"], "none": [], "lo": ["::1"]}
        )
        allow = "10.77.0.0/16,::1/128"
        assert fetch_allowed("in", allow, resolve) is None
        assert fetch_allowed("lo", allow, resolve) is None
        assert "['8.8.8.8']" in (fetch_allowed("mixed", allow, resolve) or "")
        assert "resolves outside" in (fetch_allowed("none", allow, resolve) or "")
        assert "cannot resolve 'gone'" in (fetch_allowed("gone", allow, resolve) or "")
        assert "not a list of CIDRs" in (fetch_allowed("in", "10.0.0.0/33", resolve) or "")
