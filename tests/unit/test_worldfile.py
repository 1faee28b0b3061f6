"""World files: the demo world loads, and every kind of mistake is named by its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import WorldFileError
from emulator.testing import demo_world_text
from emulator.world import Flavour
from emulator.worldfile import build_world, load_world, parse_world

MINIMAL = {"projects": [{"id": "proj-one", "number": 42}]}


def problems(raw: object) -> list[str]:
    with pytest.raises(WorldFileError) as caught:
        build_world(raw)
    return caught.value.problems


def test_demo_world_loads_with_everything_linked() -> None:
    """The shipped demo world is valid and its references resolve."""
    world = parse_world(demo_world_text())
    assert ["fortio-0", "vm-1", "gke-node-1", "outsider-vm"] == list(world.instances)
    fortio = world.instance("fortio-0")
    assert Flavour.SERVERLESS == fortio.flavour
    assert "k8s-fortio@mesh-demo.iam.gserviceaccount.com" == fortio.service_account
    assert "us-central1" == fortio.region
    node = world.instance("gke-node-1")
    assert "istio" == node.attributes["cluster-name"]
    assert "us-central1-c" == node.zone
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    assert world.pki.root_pem.decode() == cluster.ca_pem
    assert cluster.sa_signing_key is not None
    assert "mesh-demo.svc.id.goog" == cluster.workload_pool


def test_minimal_world_gets_defaults() -> None:
    """A project with only id and number is a whole world."""
    world = build_world(MINIMAL)
    assert "world" == world.name
    assert 3600 == world.token_lifetime
    assert 42 == world.project("proj-one").number
    assert world.project("42") is world.project("proj-one")


def test_every_problem_is_reported_with_its_path() -> None:
    """One pass reports all problems, each prefixed by the path of the bad field."""
    found = problems(
        {
            "projects": [
                {"id": "Bad_Id", "number": "seven", "clusters": [{"name": "c"}]},
            ],
            "instances": [{"name": "v", "flavour": "mainframe"}],
            "faults": [{"service": "x", "kind": "slow"}],
            "extra": True,
        }
    )
    expected = [
        "world.extra: unknown field",
        "world.projects[0].id: 'Bad_Id' does not match",
        "world.projects[0].number: must be an integer",
        "world.projects[0].clusters[0].location: required",
        "world.instances[0].flavour: must be one of",
        "world.faults[0].kind: must be one of",
    ]
    assert len(expected) == len(found), found
    for want, got in zip(expected, found, strict=True):
        assert got.startswith(want), (want, got)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "world.projects: required"),
        ([], "world: must be a mapping, got list"),
        (
            {"projects": [{"id": "proj-one", "number": 1}, {"id": "proj-one", "number": 2}]},
            "world.projects[1].id: duplicate project id 'proj-one'",
        ),
        (
            {"projects": [{"id": "proj-one", "number": 1, "service_accounts": [{"name": "x"}]}]},
            "world.projects[0].service_accounts[0].name: 'x' does not match",
        ),
        (
            {"projects": [{"id": "proj-one", "number": 1, "service_accounts": [{}]}]},
            "world.projects[0].service_accounts[0]: give exactly one of 'name'",
        ),
        (
            {"projects": [{"id": "proj-one", "number": 1, "iam": {"owner": ["allUsers"]}}]},
            "world.projects[0].iam.owner: role names start with 'roles/'",
        ),
        (
            {"projects": [{"id": "proj-one", "number": 1, "iam": {"roles/owner": ["bob"]}}]},
            "world.projects[0].iam.roles/owner[0]: 'bob' is not an IAM member",
        ),
        (
            {
                "projects": [
                    {
                        "id": "proj-one",
                        "number": 1,
                        "run_services": [
                            {"name": "svc", "region": "us-central1", "service_account": "a@b.com"}
                        ],
                    }
                ]
            },
            "world.projects[0].run_services[0].service_account: 'a@b.com' is not a service account",
        ),
        (
            {**MINIMAL, "instances": [{"name": "vm", "flavour": "vm", "project": "proj-one"}]},
            "world.instances[0].zone: required for a vm",
        ),
        (
            {
                **MINIMAL,
                "instances": [
                    {"name": "vm", "flavour": "vm", "project": "proj-one", "zone": "us-east1"}
                ],
            },
            "world.instances[0].zone: 'us-east1' is a region",
        ),
        (
            {**MINIMAL, "instances": [{"name": "n", "flavour": "gke", "project": "proj-one"}]},
            "world.instances[0].cluster: a gke instance names a cluster",
        ),
        (
            {**MINIMAL, "token_lifetime_s": 5},
            "world.token_lifetime_s: must be an integer in [60, 43200], got 5",
        ),
        (
            {**MINIMAL, "faults": [{"service": "sts", "kind": "latency"}]},
            "world.faults[0].latency_ms: required for a latency fault",
        ),
    ],
)
def test_named_problem(raw: object, expected: str) -> None:
    """Each mistake produces a problem that starts with the field's path."""
    found = problems(raw)
    assert any(p.startswith(expected) for p in found), found


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """Broken YAML is reported with its line and column."""
    path = tmp_path / "w.yaml"
    path.write_text("projects:\n  - id: [unclosed\n")
    with pytest.raises(WorldFileError) as caught:
        load_world(path)
    assert str(path) == caught.value.source
    assert caught.value.problems[0].startswith("line ")


def test_non_utf8_file_is_a_world_file_error(tmp_path: Path) -> None:
    """A world file of non-UTF-8 bytes is a WorldFileError, not a traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(WorldFileError, match="cannot read: not UTF-8"):
        load_world(path)


def test_missing_file_is_a_world_file_error(tmp_path: Path) -> None:
    """An unreadable file is a WorldFileError, not an OSError."""
    with pytest.raises(WorldFileError, match="cannot read"):
        load_world(tmp_path / "absent.yaml")


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "projects",
                    "instances",
                    "id",
                    "number",
                    "name",
                    "flavour",
                    "project",
                    "zone",
                    "clusters",
                    "location",
                    "faults",
                    "kind",
                    "service",
                    "iam",
                    "labels",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_input_fails_only_with_world_file_error(raw: object) -> None:
    """Whatever the parsed YAML holds, the loader builds a world or raises WorldFileError."""
    try:
        build_world(raw)
    except WorldFileError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and ": " in p for p in exc.problems)


def test_demo_world_round_trips_through_yaml() -> None:
    """The demo file is plain YAML data (no tags), so tools can rewrite it."""
    assert isinstance(yaml.safe_load(demo_world_text()), dict)


def test_unhashable_id_is_a_named_problem() -> None:
    """A list where a project id belongs is reported, not a TypeError (found by Hypothesis)."""
    found = problems({"projects": [{"projects": None, "id": []}]})
    assert any(p.startswith("world.projects[0].id: must be a non-empty string") for p in found)
