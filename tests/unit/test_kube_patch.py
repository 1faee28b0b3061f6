"""The three patch formats: JSON merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.kube.mergekeys import schema_for
from emulator.kube.patch import EMPTY, PatchError, json_patch, merge_patch, strategic_merge

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet="abc", max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
OBJECTS = st.dictionaries(st.text(alphabet="abc", max_size=3), JSON, max_size=4)


class TestMergePatch:
    def test_rfc7386_example(self) -> None:
        """The RFC's worked example: null deletes, objects merge, arrays replace."""
        target = {
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "x",
        }
        patch = {
            "title": "Hello!",
            "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": None},
            "tags": ["example"],
        }
        assert {
            "title": "Hello!",
            "author": {"givenName": "John"},
            "tags": ["example"],
            "content": "x",
            "phoneNumber": "+01-123-456-7890",
        } == merge_patch(target, patch)

    @given(OBJECTS, OBJECTS)
    def test_strategic_without_schema_is_a_merge_patch(
        self, target: dict[str, Any], patch: dict[str, Any]
    ) -> None:
        """With no merge keys and no directives, a strategic merge is a JSON merge patch."""
        assert merge_patch(target, patch) == strategic_merge(target, patch, EMPTY)

    @given(OBJECTS, OBJECTS)
    def test_inputs_are_not_changed(self, target: dict[str, Any], patch: dict[str, Any]) -> None:
        """Applying a patch leaves both documents as they were."""
        before = (repr(target), repr(patch))
        merge_patch(target, patch)
        assert before == (repr(target), repr(patch))


class TestJsonPatch:
    DOC: ClassVar[dict[str, Any]] = {"a": {"b": [1, 2, 3]}, "c": "x"}

    @pytest.mark.parametrize(
        ("ops", "expected"),
        [
            ([{"op": "add", "path": "/a/b/-", "value": 4}], {"a": {"b": [1, 2, 3, 4]}, "c": "x"}),
            ([{"op": "add", "path": "/a/b/0", "value": 0}], {"a": {"b": [0, 1, 2, 3]}, "c": "x"}),
            ([{"op": "remove", "path": "/a/b/1"}], {"a": {"b": [1, 3]}, "c": "x"}),
            ([{"op": "replace", "path": "/c", "value": "y"}], {"a": {"b": [1, 2, 3]}, "c": "y"}),
            ([{"op": "move", "from": "/c", "path": "/d"}], {"a": {"b": [1, 2, 3]}, "d": "x"}),
            (
                [{"op": "copy", "from": "/a/b/0", "path": "/e"}],
                {"a": {"b": [1, 2, 3]}, "c": "x", "e": 1},
            ),
            (
                [
                    {"op": "test", "path": "/c", "value": "x"},
                    {"op": "add", "path": "/a~1b", "value": 1},
                ],
                {"a": {"b": [1, 2, 3]}, "c": "x", "a/b": 1},
            ),
        ],
    )
    def test_operations(self, ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
        """Each RFC 6902 operation does what the RFC says."""
        assert expected == json_patch(self.DOC, ops)

    @pytest.mark.parametrize(
        "ops",
        [
            [{"op": "test", "path": "/c", "value": "y"}],
            [{"op": "test", "path": "/a/b/0", "value": True}],
            [{"op": "remove", "path": "/nope"}],
            [{"op": "replace", "path": "/a/b/9", "value": 1}],
            [{"op": "replace", "path": "/a/b/\u00b2", "value": 1}],
            [{"op": "add", "path": "/a/b/" + "9" * 5000, "value": 1}],
            [{"op": "move", "from": "/a", "path": "/a/b/x"}],
            [{"op": "frobnicate", "path": "/c"}],
            [{"op": "add", "path": "c", "value": 1}],
            {"op": "add"},
        ],
    )
    def test_failures_are_patch_errors(self, ops: Any) -> None:
        """A failed test, a missing path or a bad operation is a PatchError; nothing is applied."""
        with pytest.raises(PatchError):
            json_patch(self.DOC, ops)
        assert {"a": {"b": [1, 2, 3]}, "c": "x"} == self.DOC


class TestStrategicMerge:
    POD: ClassVar[dict[str, Any]] = {
        "metadata": {"name": "p", "finalizers": ["a"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "side", "image": "side:1"},
            ],
            "tolerations": [{"key": "x"}],
        },
    }

    def test_containers_merge_by_name_and_ports_by_container_port(self) -> None:
        """Lists with merge keys merge item by item; plain lists are replaced."""
        patch = {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "app:2",
                        "ports": [{"containerPort": 443}],
                        "env": [{"name": "B", "value": "2"}],
                    }
                ],
                "tolerations": [{"key": "y"}],
            }
        }
        merged = strategic_merge(self.POD, patch, schema_for("Pod"))
        app, side = merged["spec"]["containers"]
        assert "app:2" == app["image"]
        assert [80, 443] == [p["containerPort"] for p in app["ports"]]
        assert ["A", "B"] == [e["name"] for e in app["env"]]
        assert "side:1" == side["image"]
        assert [{"key": "y"}] == merged["spec"]["tolerations"]

    def test_directives(self) -> None:
        """`$patch: delete`, `$setElementOrder`, `$deleteFromPrimitiveList` and null deletion."""
        patch = {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                "containers": [
                    {"name": "app", "$patch": "delete"},
                    {"name": "side", "image": None},
                ],
            },
        }
        merged = strategic_merge(self.POD, patch, schema_for("Pod"))
        assert ["b"] == merged["metadata"]["finalizers"]
        assert [{"name": "side"}] == merged["spec"]["containers"]

    def test_set_element_order_reorders(self) -> None:
        """Items named in `$setElementOrder` come first, in that order."""
        patch = {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}}
        merged = strategic_merge(self.POD, patch, schema_for("Pod"))
        assert ["side", "app"] == [c["name"] for c in merged["spec"]["containers"]]

    def test_replace_and_retain_keys(self) -> None:
        """`$patch: replace` swaps a map whole; `$retainKeys` drops other union members."""
        deployment = {
            "spec": {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"containers": []}},
            }
        }
        patch = {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        }
        assert {"type": "Recreate"} == strategic_merge(deployment, patch, schema_for("Deployment"))[
            "spec"
        ]["strategy"]
        replaced = strategic_merge(
            deployment, {"spec": {"$patch": "replace", "replicas": 2}}, schema_for("Deployment")
        )
        assert {"replicas": 2} == replaced["spec"]

    def test_service_ports_merge_by_port(self) -> None:
        """Service ports merge on `port`, keeping fields the patch does not name."""
        service = {"spec": {"ports": [{"port": 80, "name": "http", "nodePort": 30001}]}}
        merged = strategic_merge(
            service,
            {"spec": {"ports": [{"port": 80, "name": "web"}, {"port": 443}]}},
            schema_for("Service"),
        )
        assert [{"port": 80, "name": "web", "nodePort": 30001}, {"port": 443}] == merged["spec"][
            "ports"
        ]

    @pytest.mark.parametrize(
        "patch",
        [
            {"spec": {"containers": [{"image": "no-name"}]}},
            {"spec": {"containers": ["not-an-object"]}},
            {"$patch": "sideways"},
            {"$unknown": 1},
        ],
    )
    def test_malformed_patches(self, patch: dict[str, Any]) -> None:
        """A merge-list item without its key or an unknown directive is a PatchError."""
        with pytest.raises(PatchError):
            strategic_merge(self.POD, patch, schema_for("Pod"))
