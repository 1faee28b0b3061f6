"""The object store of one emulated cluster: objects, resourceVersions, watch history.

Objects are plain JSON dicts kept per resource (`Kind.resource_key`, e.g.
`configmaps` or `workloadentries.networking.istio.io`), namespace and name.
Every write takes the next cluster-wide resourceVersion (a decimal string on
the wire, as etcd's revision is), stamps it into `metadata.resourceVersion` and
appends an `Event` to a bounded history, so a watch can resume from any version
still in it; older ones raise 410 Expired, exactly like a compacted etcd.

The store is also the in-process API the other emulated components (the Istio
control plane) use; it does no authentication and no admission:

    store.get("services", "default", "kubernetes")          # a deep copy
    items, rv = store.list("services", labels=parse_labels("app=x"))
    sub = store.watch("services", since=rv, callback=on_event)   # thread-safe
    sub.cancel()
    async with store.events("endpoints", initial=True) as events:  # asyncio form
        async for event in events: ...

Callbacks run synchronously in the writer's thread while the store's lock is
held, in resourceVersion order: they must be quick and must not block (the
asyncio form just hands each event to its loop with `call_soon_threadsafe`).

`save(path)` and `load(path)` snapshot the objects to a JSON file and back; a
restored store keeps its resourceVersion but no history.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import datetime as dt
import json
import secrets
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.kube import status
from emulator.kube.kinds import CRD_RESOURCE, NAMESPACES, Registry
from emulator.kube.selectors import FieldSelector, LabelSelector

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def timestamp(now: float) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time marshals."""
    return dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Event:
    """One change; `object` is the state after it (the last state for DELETED)."""

    type: str
    resource: str
    namespace: str
    name: str
    object: dict[str, Any]
    previous: dict[str, Any] | None
    resource_version: int


@dataclass(slots=True)
class Subscription:
    """A registered watcher; `cancel()` stops delivery."""

    resource: str
    namespace: str | None
    callback: Callable[[Event], None]
    active: bool = True
    _store: Store | None = None

    def cancel(self) -> None:
        self.active = False
        if self._store is not None:
            self._store._unsubscribe(self)  # noqa: SLF001 - the store owns the list
            self._store = None


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj["metadata"]`, created when missing."""
    found = obj.setdefault("metadata", {})
    if not isinstance(found, dict):
        found = obj["metadata"] = {}
    return found


def field_value(obj: dict[str, Any], path: str) -> str:
    """A dotted field of an object as a field selector compares it (bools as true/false)."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def matches(
    obj: dict[str, Any], labels: LabelSelector | None, fields: FieldSelector | None
) -> bool:
    if labels is not None and not labels.matches(meta(obj).get("labels")):
        return False
    if fields is not None:
        values = {name: field_value(obj, name) for name in fields.fields}
        return fields.matches(values)
    return True


class Store:
    """One cluster's objects; every method is thread-safe."""

    def __init__(
        self, registry: Registry, *, clock: Callable[[], float], history: int = 4096
    ) -> None:
        self.registry = registry
        self.clock = clock
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 0
        """Every event at or below this version is gone from the history."""
        self._rv = 0
        self._subscriptions: list[Subscription] = []
        self._lock = threading.RLock()

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    # Reads.

    def find(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the object, or None."""
        with self._lock:
            found = self._objects.get(resource, {}).get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the object; StatusError 404 when it does not exist."""
        found = self.find(resource, namespace, name)
        if found is None:
            raise self._not_found(resource, name)
        return found

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Matching objects sorted by namespace and name, and the version they were read at."""
        with self._lock:
            bucket = self._objects.get(resource, {})
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(bucket.items())
                if (namespace is None or ns == namespace) and matches(obj, labels, fields)
            ]
            return items, self._rv

    def resources(self) -> builtins.list[str]:
        with self._lock:
            return sorted(r for r, objs in self._objects.items() if objs)

    # Writes.

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object; fills uid, resourceVersion, creationTimestamp, generation."""
        with self._lock:
            obj = copy.deepcopy(obj)
            metadata = meta(obj)
            namespace = str(metadata.get("namespace") or "")
            kind = self.registry.by_resource(resource)
            if namespace:
                owner = self._objects.get(NAMESPACES, {}).get(("", namespace))
                if owner is None:
                    raise status.not_found(NAMESPACES, "", namespace)
                if owner.get("metadata", {}).get("deletionTimestamp"):
                    raise status.forbidden(
                        resource.split(".", 1)[0],
                        resource.partition(".")[2],
                        str(metadata.get("name") or ""),
                        f"unable to create new content in namespace {namespace} because it "
                        "is being terminated",
                    )
            bucket = self._objects.setdefault(resource, {})
            if not metadata.get("name") and metadata.get("generateName"):
                for _ in range(16):
                    suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
                    candidate = f"{metadata['generateName']}{suffix}"
                    if (namespace, candidate) not in bucket:
                        metadata["name"] = candidate
                        break
            name = str(metadata.get("name") or "")
            if (namespace, name) in bucket:
                raise self._exists(resource, name)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = timestamp(self.clock())
            for dropped in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                metadata.pop(dropped, None)
            if kind is not None and kind.generation:
                metadata["generation"] = 1
            else:
                metadata.pop("generation", None)
            return self._put(ADDED, resource, namespace, name, obj, None)

    def update(
        self, resource: str, obj: dict[str, Any], *, check_version: bool = True
    ) -> dict[str, Any]:
        """Replace an object; a stale `metadata.resourceVersion` is a 409 Conflict.

        Without a resourceVersion in `obj` (or with `check_version=False`) the
        write is unconditional, as a PUT without one is on the real server.
        An update that changes nothing keeps the old version and sends no event.
        """
        with self._lock:
            obj = copy.deepcopy(obj)
            metadata = meta(obj)
            namespace = str(metadata.get("namespace") or "")
            name = str(metadata.get("name") or "")
            bucket = self._objects.get(resource, {})
            old = bucket.get((namespace, name))
            if old is None:
                raise self._not_found(resource, name)
            old_meta = old["metadata"]
            wanted = metadata.get("resourceVersion")
            if check_version and wanted and wanted != old_meta["resourceVersion"]:
                raise self._conflict(resource, name, status.STALE)
            self._check_uid(resource, name, metadata.get("uid"), old_meta)
            for kept in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if kept in old_meta:
                    metadata[kept] = old_meta[kept]
                else:
                    metadata.pop(kept, None)
            kind = self.registry.by_resource(resource)
            if kind is not None and kind.generation:
                generation = int(old_meta.get("generation", 1))
                if _spec_of(obj) != _spec_of(old):
                    generation += 1
                metadata["generation"] = generation
            metadata["resourceVersion"] = old_meta["resourceVersion"]
            if obj == old:
                return copy.deepcopy(old)
            if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
                return self._remove(resource, namespace, name)
            return self._put(MODIFIED, resource, namespace, name, obj, old)

    def delete(
        self,
        resource: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Delete an object (or mark it, while finalizers remain); return its last state.

        Deleting a namespace deletes everything in it first, as the namespace
        controller does; deleting a CRD deletes its custom resources.
        """
        with self._lock:
            old = self._objects.get(resource, {}).get((namespace, name))
            if old is None:
                raise self._not_found(resource, name)
            old_meta = old["metadata"]
            self._check_uid(resource, name, uid, old_meta)
            if resource_version and resource_version != old_meta["resourceVersion"]:
                raise self._conflict(
                    resource,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
                    f"ResourceVersion in object meta: {old_meta['resourceVersion']}",
                )
            if old_meta.get("finalizers"):
                if old_meta.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = timestamp(self.clock())
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._put(MODIFIED, resource, namespace, name, marked, old)
            if resource == NAMESPACES:
                return self._delete_namespace(name)
            if resource == CRD_RESOURCE:
                for kind in self.registry.remove_crd(name):
                    for ns, child in list(self._objects.get(kind.resource_key, {})):
                        self._remove(kind.resource_key, ns, child)
            return self._remove(resource, namespace, name)

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        old = self._objects[NAMESPACES][("", name)]
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = timestamp(self.clock())
        terminating.setdefault("status", {})["phase"] = "Terminating"
        self._put(MODIFIED, NAMESPACES, "", name, terminating, old)
        for resource, bucket in list(self._objects.items()):
            for ns, child in [k for k in bucket if k[0] == name]:
                self._remove(resource, ns, child)
        self._remove(NAMESPACES, "", name)
        return copy.deepcopy(terminating)

    def _put(
        self,
        event: str,
        resource: str,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Store `obj` at the next resourceVersion, tell the watchers, return a copy."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects.setdefault(resource, {})[(namespace, name)] = obj
        if resource == CRD_RESOURCE:
            self.registry.install_crd(obj)
        self._emit(event, resource, namespace, name, obj, old)
        return copy.deepcopy(obj)

    def _remove(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        old = self._objects[resource].pop((namespace, name))
        gone = copy.deepcopy(old)
        self._rv += 1
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(DELETED, resource, namespace, name, gone, old)
        return copy.deepcopy(gone)

    # Watching.

    def watch(
        self,
        resource: str,
        *,
        namespace: str | None = None,
        since: int | None = None,
        initial: bool = False,
        callback: Callable[[Event], None],
    ) -> Subscription:
        """Deliver every later change of `resource` (in `namespace`, or all) to `callback`.

        `since`: first replay the retained events after that version (410 when
        it is older than the history). `initial`: first deliver an ADDED event
        for every existing object, as a watch without a resourceVersion does.
        """
        with self._lock:
            if since is not None and since < self._compacted:
                raise status.gone(f"too old resource version: {since} ({self._compacted})")
            subscription = Subscription(resource, namespace, callback, _store=self)
            if initial:
                for (ns, name), obj in sorted(self._objects.get(resource, {}).items()):
                    if namespace is None or ns == namespace:
                        callback(
                            Event(
                                ADDED,
                                resource,
                                ns,
                                name,
                                copy.deepcopy(obj),
                                None,
                                int(obj["metadata"]["resourceVersion"]),
                            )
                        )
            if since is not None:
                for event in self._history:
                    if event.resource_version > since and _wanted(subscription, event):
                        callback(event)
            self._subscriptions.append(subscription)
            return subscription

    @asynccontextmanager
    async def events(
        self,
        resource: str,
        *,
        namespace: str | None = None,
        since: int | None = None,
        initial: bool = False,
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """`watch` as an async iterator of events in the running loop; cancels on exit."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def deliver(event: Event) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, event)

        subscription = self.watch(
            resource, namespace=namespace, since=since, initial=initial, callback=deliver
        )

        async def iterate() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()

        try:
            yield iterate()
        finally:
            subscription.cancel()

    def watchers(self, resource: str) -> int:
        """How many subscriptions watch `resource` (tests wait for a client's watch with it)."""
        with self._lock:
            return sum(1 for s in self._subscriptions if s.resource == resource and s.active)

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def _emit(
        self,
        kind: str,
        resource: str,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None,
    ) -> None:
        event = Event(
            kind,
            resource,
            namespace,
            name,
            copy.deepcopy(obj),
            copy.deepcopy(previous) if previous is not None else None,
            self._rv,
        )
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].resource_version
        self._history.append(event)
        for subscription in list(self._subscriptions):
            if subscription.active and _wanted(subscription, event):
                subscription.callback(event)

    # Snapshots.

    def save(self, path: Path) -> None:
        """Write every object and the current resourceVersion to a JSON file."""
        with self._lock:
            document = {
                "resourceVersion": self._rv,
                "objects": {
                    resource: [bucket[key] for key in sorted(bucket)]
                    for resource, bucket in sorted(self._objects.items())
                    if bucket
                },
            }
            text = json.dumps(document, indent=1, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)

    def load(self, path: Path) -> None:
        """Replace every object with a snapshot's; watches older than it get 410."""
        document = json.loads(path.read_text(encoding="utf-8"))
        with self._lock:
            for crd in list(self._objects.get(CRD_RESOURCE, {}).values()):
                self.registry.remove_crd(crd["metadata"]["name"])
            self._objects = {}
            for resource, items in document["objects"].items():
                bucket = self._objects.setdefault(resource, {})
                for obj in items:
                    metadata = obj["metadata"]
                    bucket[(metadata.get("namespace", ""), metadata["name"])] = obj
            for crd in self._objects.get(CRD_RESOURCE, {}).values():
                self.registry.install_crd(crd)
            self._rv = max(self._rv, int(document["resourceVersion"]))
            self._history.clear()
            self._compacted = self._rv

    def snapshot_iter(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(resource, object copy) for every stored object."""
        with self._lock:
            pairs = [
                (resource, copy.deepcopy(obj))
                for resource, bucket in sorted(self._objects.items())
                for _, obj in sorted(bucket.items())
            ]
        yield from pairs

    # Errors name the resource the way the REST layer names it.

    def _split(self, resource: str) -> tuple[str, str]:
        plural, _, group = resource.partition(".")
        return plural, group

    def _not_found(self, resource: str, name: str) -> status.StatusError:
        return status.not_found(*self._split(resource), name)

    def _exists(self, resource: str, name: str) -> status.StatusError:
        return status.already_exists(*self._split(resource), name)

    def _conflict(self, resource: str, name: str, why: str) -> status.StatusError:
        return status.conflict(*self._split(resource), name, why)

    def _check_uid(
        self, resource: str, name: str, uid: str | None, old_meta: dict[str, Any]
    ) -> None:
        """A UID precondition (update or delete) must name the stored object."""
        if uid and uid != old_meta["uid"]:
            raise self._conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old_meta['uid']}",
            )


def _wanted(subscription: Subscription, event: Event) -> bool:
    return subscription.resource == event.resource and (
        subscription.namespace is None or subscription.namespace == event.namespace
    )


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
