"""The object store: resourceVersions, conflicts, watches, history, cascades, snapshots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from emulator.kube.kinds import Registry
from emulator.kube.selectors import parse_fields, parse_labels
from emulator.kube.status import StatusError
from emulator.kube.store import Event, Store


def cm(name: str, namespace: str = "ns", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "data": data,
    }


@pytest.fixture
def store() -> Store:
    made = Store(Registry(), clock=lambda: 1_800_000_000.0, history=8)
    made.create("namespaces", {"metadata": {"name": "ns"}})
    return made


def test_versions_grow_and_stale_updates_conflict(store: Store) -> None:
    """Every write takes the next version; an update from an old one is a 409."""
    first = store.create("configmaps", cm("a"))
    assert "2" == first["metadata"]["resourceVersion"]
    assert "2027-01-15T08:00:00Z" == first["metadata"]["creationTimestamp"]
    second = store.update("configmaps", {**first, "data": {"k": "v"}})
    assert "3" == second["metadata"]["resourceVersion"]
    with pytest.raises(StatusError) as caught:
        store.update("configmaps", {**first, "data": {"k": "w"}})
    assert ("Conflict", 409) == (caught.value.reason, caught.value.code)


def test_uid_preconditions_must_name_the_stored_object(store: Store) -> None:
    """Update and delete with another object's UID are 409s that say which UIDs differ."""
    created = store.create("configmaps", cm("a"))
    stranger = {**created, "metadata": {**created["metadata"], "uid": "not-the-uid"}}
    with pytest.raises(StatusError) as on_update:
        store.update("configmaps", stranger)
    with pytest.raises(StatusError) as on_delete:
        store.delete("configmaps", "ns", "a", uid="not-the-uid")
    for caught in (on_update, on_delete):
        assert ("Conflict", 409) == (caught.value.reason, caught.value.code)
        assert "UID in precondition: not-the-uid" in str(caught.value)
    assert created["metadata"]["uid"] == store.get("configmaps", "ns", "a")["metadata"]["uid"]


def test_no_op_update_keeps_version(store: Store) -> None:
    """Writing an unchanged object sends no event and keeps its version."""
    created = store.create("configmaps", cm("a"))
    assert created == store.update("configmaps", created)
    assert 2 == store.resource_version


def test_create_errors(store: Store) -> None:
    """Duplicates are 409 AlreadyExists; a missing namespace is 404; generateName fills names."""
    store.create("configmaps", cm("a"))
    with pytest.raises(StatusError) as caught:
        store.create("configmaps", cm("a"))
    assert "AlreadyExists" == caught.value.reason
    with pytest.raises(StatusError) as caught:
        store.create("configmaps", cm("a", namespace="nowhere"))
    assert 'namespaces "nowhere" not found' == caught.value.message
    named = store.create("configmaps", {"metadata": {"generateName": "gen-", "namespace": "ns"}})
    assert named["metadata"]["name"].startswith("gen-")
    assert 9 == len(named["metadata"]["name"])


def test_list_filters(store: Store) -> None:
    """Lists filter by namespace, labels and fields, sorted by name."""
    for name in ("b", "a", "c"):
        store.create("configmaps", cm(name))
    items, rv = store.list(
        "configmaps",
        "ns",
        labels=parse_labels("app in (a,b)"),
        fields=parse_fields("metadata.name!=b"),
    )
    assert ["a"] == [i["metadata"]["name"] for i in items]
    assert store.resource_version == rv


def test_watch_replays_then_follows(store: Store) -> None:
    """A watch from a version replays later events, then delivers new ones, in order."""
    since = store.resource_version
    store.create("configmaps", cm("a"))
    seen: list[Event] = []
    subscription = store.watch("configmaps", since=since, callback=seen.append)
    store.update("configmaps", {**store.get("configmaps", "ns", "a"), "data": {"x": "1"}})
    store.delete("configmaps", "ns", "a")
    subscription.cancel()
    store.create("configmaps", cm("b"))
    assert ["ADDED", "MODIFIED", "DELETED"] == [e.type for e in seen]
    assert sorted(e.resource_version for e in seen) == [e.resource_version for e in seen]
    assert seen[2].previous is not None
    assert {"x": "1"} == seen[2].previous["data"]


def test_initial_events_and_too_old_versions(store: Store) -> None:
    """`initial` lists current objects as ADDED; a version older than the history is 410."""
    for index in range(10):
        store.create("configmaps", cm(f"c{index}"))
    seen: list[Event] = []
    store.watch("configmaps", namespace="ns", initial=True, callback=seen.append).cancel()
    assert 10 == len(seen)
    with pytest.raises(StatusError) as caught:
        store.watch("configmaps", since=1, callback=seen.append)
    assert (410, "Expired") == (caught.value.code, caught.value.reason)
    assert caught.value.message.startswith("too old resource version: 1 (")


def test_namespace_deletion_cascades(store: Store) -> None:
    """Deleting a namespace deletes what is in it, then itself."""
    store.create("configmaps", cm("a"))
    terminating = store.delete("namespaces", "", "ns")
    assert "Terminating" == terminating["status"]["phase"]
    assert store.find("configmaps", "ns", "a") is None
    assert store.find("namespaces", "", "ns") is None


def test_finalizers_hold_deletion(store: Store) -> None:
    """An object with finalizers is only marked; removing them completes the deletion."""
    created = store.create(
        "configmaps", {**cm("f"), "metadata": {**cm("f")["metadata"], "finalizers": ["x"]}}
    )
    marked = store.delete("configmaps", "ns", "f")
    assert marked["metadata"]["deletionTimestamp"]
    marked["metadata"]["finalizers"] = []
    store.update("configmaps", marked)
    assert store.find("configmaps", "ns", "f") is None
    assert created["metadata"]["uid"] == marked["metadata"]["uid"]


def test_crds_register_kinds_and_snapshots_restore_them(store: Store, tmp_path: Path) -> None:
    """A stored CRD serves its kind; a snapshot brings objects and kinds back, without history."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    store.create("customresourcedefinitions.apiextensions.k8s.io", crd)
    assert store.registry.lookup("example.com", "v1", "widgets") is not None
    store.create("widgets.example.com", {"metadata": {"name": "w", "namespace": "ns"}})
    path = tmp_path / "snapshot.json"
    store.save(path)
    restored = Store(Registry(), clock=store.clock)
    restored.load(path)
    assert restored.registry.lookup("example.com", "v1", "widgets") is not None
    assert "w" == restored.get("widgets.example.com", "ns", "w")["metadata"]["name"]
    assert store.resource_version == restored.resource_version
    with pytest.raises(StatusError):
        restored.watch(
            "widgets.example.com", since=restored.resource_version - 1, callback=lambda e: None
        )
    store.delete("customresourcedefinitions.apiextensions.k8s.io", "", "widgets.example.com")
    assert store.registry.lookup("example.com", "v1", "widgets") is None
    assert store.find("widgets.example.com", "ns", "w") is None


def test_async_events(store: Store) -> None:
    """`events()` hands changes to an asyncio consumer in order."""

    async def consume() -> list[str]:
        async with store.events("configmaps", namespace="ns") as events:
            store.create("configmaps", cm("a"))
            store.delete("configmaps", "ns", "a")
            return [f"{e.type} {e.name}" async for e in _take(events, 2)]

    assert ["ADDED a", "DELETED a"] == asyncio.run(consume())


async def _take(events: Any, count: int) -> Any:
    taken = 0
    async for event in events:
        yield event
        taken += 1
        if taken == count:
            return
