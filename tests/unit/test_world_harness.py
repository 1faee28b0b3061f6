"""Pure parts of the world harness: the addressing plan, harness files, OCI bundles, rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from scenarios.world.errors import WorldSpecError
from scenarios.world.plan import METADATA_IP, Plan, hosts_file, make_plan
from scenarios.world.pods import istio_rules
from scenarios.world.sandbox import oci_config
from scenarios.world.spec import build_spec, expand

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
