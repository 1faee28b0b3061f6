"""The three PATCH formats kube-apiserver accepts (pure).

* JSON merge patch (RFC 7386, `application/merge-patch+json`): objects merge
  recursively, `null` deletes, anything else (lists too) replaces.
* JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace,
  move, copy and test on JSON pointers.
* Strategic merge patch (`application/strategic-merge-patch+json`), for the
  built-in kinds only: like a merge patch, except that lists a kind declares
  mergeable merge item by item on a merge key (containers by `name`, ports by
  `containerPort`), primitive merge lists take a union, and the directives
  kubectl's client-side apply sends are honoured: `$patch: replace|delete|merge`,
  `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
  Which lists merge, and on what key, is a `Schema` (see `mergekeys.py`).

Every function returns a new document and never changes its inputs; a patch
that cannot apply raises PatchError (a ValueError) naming why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


class PatchError(ValueError):
    """A patch that is malformed or does not apply to the document."""


# JSON merge patch.


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: apply `patch` to `target`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# JSON patch.


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"path {path!r} is not a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"path {path!r} does not start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], step: str, *, allow_end: bool, path: str) -> int:
    if step == "-" and allow_end:
        return len(container)
    if not (step.isascii() and step.isdigit()) or (step.startswith("0") and step != "0"):
        raise PatchError(f"{path}: {step!r} is not an array index")
    limit = len(container) if allow_end else len(container) - 1
    # No list is 19 digits long, and int() refuses strings of thousands of them.
    index = int(step) if len(step) <= 18 else limit + 1
    if index > limit:
        raise PatchError(f"{path}: index {index} is out of range")
    return index


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for token in parts[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"{path}: {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False, path=path)]
        else:
            raise PatchError(f"{path}: cannot descend into a {type(node).__name__}")
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"{path}: the path does not exist")
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(parent, token, allow_end=False, path=path)]
    raise PatchError(f"{path}: the path does not exist")


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    token = parts[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, allow_end=True, path=path), value)
    else:
        raise PatchError(f"{path}: the parent is not an object or an array")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, parts, path)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"{path}: the path does not exist")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, allow_end=False, path=path))
    raise PatchError(f"{path}: the path does not exist")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: apply a list of operations, all or nothing."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for number, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise PatchError(f"operation {number} is not an object")
        op = operation.get("op")
        path = operation.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {number} ({op}) has no string 'path'")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"operation {number} ({op}) has no 'value'")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            doc = _add(doc, path, value)
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            _get(doc, path)  # must exist
            if _pointer(path):
                doc, _ = _remove(doc, path)
            doc = _add(doc, path, value) if _pointer(path) else value
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {number} ({op}) has no string 'from'")
            if op == "move":
                if path.startswith(source + "/"):
                    raise PatchError(f"cannot move {source} into its own child {path}")
                doc, moved = _remove(doc, source)
            else:
                moved = copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, moved)
        elif op == "test":
            if _get(doc, path) != value or type(_get(doc, path)) is not type(value):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"operation {number}: unknown op {op!r}")
    return doc


# Strategic merge patch.


@dataclass(frozen=True, slots=True)
class Field:
    """How one field of a built-in kind merges."""

    merge_key: str | None = None
    """Lists: merge items on this key. None with `merge=True`: a primitive union."""
    merge: bool = False
    """Lists: `patchStrategy: merge`; otherwise a patch replaces the list."""
    retain_keys: bool = False
    """`patchStrategy: retainKeys`: a union type; `$retainKeys` prunes other members."""
    schema: Schema | None = None
    """The item (for lists) or value (for maps) schema."""


@dataclass(frozen=True, slots=True)
class Schema:
    fields: dict[str, Field] = field(default_factory=dict)

    def get(self, name: str) -> Field:
        return self.fields.get(name, _PLAIN)


_PLAIN = Field()
EMPTY = Schema()


def strategic_merge(original: Any, patch: Any, schema: Schema = EMPTY) -> Any:
    """Apply a strategic merge patch to an object; PatchError if it is malformed."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    merged = _merge_map(original if isinstance(original, dict) else {}, patch, schema)
    return {} if merged is None else merged


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> Any:
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != DIRECTIVE}, schema)
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch type {directive!r} in $patch")
    result = copy.deepcopy(original)
    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (DIRECTIVE, RETAIN_KEYS):
            continue
        if key.startswith(SET_ORDER):
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            orders[key[len(SET_ORDER) :]] = value
            continue
        if key.startswith(DELETE_PRIMITIVE):
            name = key[len(DELETE_PRIMITIVE) :]
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        if key.startswith("$"):
            raise PatchError(f"unknown directive {key!r}")
        if value is None:
            result.pop(key, None)
            continue
        meta = schema.get(key)
        current = result.get(key)
        if isinstance(value, dict):
            merged = _merge_map(
                current if isinstance(current, dict) else {}, value, meta.schema or EMPTY
            )
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            if meta.merge:
                result[key] = _merge_list(current if isinstance(current, list) else [], value, meta)
            else:
                result[key] = copy.deepcopy(value)  # replaced verbatim, as RFC 7386 does
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _reorder(result[name], order, schema.get(name).merge_key)
    return result


def _merge_list(original: list[Any], patch: list[Any], meta: Field) -> list[Any]:
    key = meta.merge_key
    item_schema = meta.schema or EMPTY
    if key is None:  # a list of primitives that merges as a set, in order
        replace = any(isinstance(v, dict) and v.get(DIRECTIVE) == "replace" for v in patch)
        values = [v for v in patch if not isinstance(v, dict)]
        if replace:
            return values
        return [*original, *(v for v in values if v not in original)]
    if any(isinstance(v, dict) and v.get(DIRECTIVE) == "replace" for v in patch):
        return [
            _strip(v, item_schema)
            for v in patch
            if not (isinstance(v, dict) and v.get(DIRECTIVE) == "replace")
        ]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"a list merged on {key!r} holds a non-object item {item!r}")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        at = next(
            (i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        if item.get(DIRECTIVE) == "delete":
            if at is not None:
                result.pop(at)
            continue
        if at is None:
            result.append(_strip(item, item_schema))
        else:
            merged = _merge_map(result[at], item, item_schema)
            if merged is None:
                result.pop(at)
            else:
                result[at] = merged
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Put items named in `$setElementOrder` first, in that order; keep the rest after."""

    def ident(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [o.get(key) if key is not None and isinstance(o, dict) else o for o in order]
    ranked = [i for w in wanted for i in items if ident(i) == w]
    rest = [i for i in items if ident(i) not in wanted]
    return ranked + rest


def _strip(value: Any, schema: Schema) -> Any:
    """A new value for the document: directives removed, as if merged into nothing."""
    if isinstance(value, dict):
        merged = _merge_map({}, value, schema)
        return {} if merged is None else merged
    if isinstance(value, list):
        return [_strip(v, schema) for v in value]
    return value
