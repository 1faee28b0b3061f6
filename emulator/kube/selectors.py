"""Label and field selectors: parse, render and match (pure).

Label selectors follow `k8s.io/apimachinery/pkg/labels`: comma-separated
requirements, all of which must hold: `k`, `!k`, `k=v`, `k==v`, `k!=v`,
`k in (a,b)`, `k notin (a,b)`, and the integer comparisons `k>N`, `k<N`. Keys
are qualified names (`prefix/name`), values are label values; anything else is
a SelectorError whose message says what was wrong, never another exception.

Field selectors are `field=value`, `field==value` or `field!=value`, joined by
commas, with `\\`, `\\,` and `\\=` escaping those characters in values. Which
fields a kind supports is the caller's business (see `kinds.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(_NAME + r"\Z")
_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")

OPERATORS = ("=", "!=", "in", "notin", "exists", "!", "gt", "lt")
"""Requirement operators after normalisation (`==` is `=`, `!` is does-not-exist)."""


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message names the offending part."""


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key (a qualified name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if slash and (len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_RE.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _NAME_RE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case "=":
                return present and value == self.values[0]
            case "!=":
                return not present or value != self.values[0]
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case _:  # gt, lt
                try:
                    number = int(value)
                except ValueError:
                    return False
                bound = int(self.values[0])
                return present and (number > bound if self.operator == "gt" else number < bound)

    def render(self) -> str:
        match self.operator:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "in" | "notin":
                return f"{self.key} {self.operator} ({','.join(sorted(self.values))})"
            case "gt":
                return f"{self.key}>{self.values[0]}"
            case "lt":
                return f"{self.key}<{self.values[0]}"
            case _:
                return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(r.matches(found) for r in self.requirements)

    def render(self) -> str:
        return ",".join(r.render() for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - every character matches some token
            raise SelectorError(f"unable to parse requirement: unexpected {text[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def parse_labels(text: str) -> LabelSelector:
    """Parse a label selector; the empty string selects everything."""
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def take(what: str) -> str:
        nonlocal index
        token = peek()
        if token is None:
            raise SelectorError(f"found '', expected: {what}")
        index += 1
        return token

    while index < len(tokens):
        negated = peek() == "!"
        if negated:
            take("identifier")
        key = take("identifier")
        if key in ("!=", "==", "=", "!", "(", ")", ",", ">", "<"):
            raise SelectorError(f"found '{key}', expected: !, identifier, or 'end of string'")
        _check_key(key)
        following = peek()
        if negated:
            if following not in (None, ","):
                raise SelectorError(f"found '{following}', expected: ',' or 'end of string'")
            requirements.append(Requirement(key, "!"))
        elif following in (None, ","):
            requirements.append(Requirement(key, "exists"))
        elif following in ("=", "==", "!="):
            take("operator")
            value = peek()
            if value in (None, ","):
                value = ""
            else:
                value = take("value")
                if value in ("(", ")", "!", "=", "==", "!=", ">", "<"):
                    raise SelectorError(f"found '{value}', expected: identifier")
            _check_value(value)
            requirements.append(Requirement(key, "!=" if following == "!=" else "=", (value,)))
        elif following in (">", "<"):
            take("operator")
            value = take("integer")
            try:
                int(value)
            except ValueError:
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                    f"an integer, not {value!r}"
                ) from None
            requirements.append(Requirement(key, "gt" if following == ">" else "lt", (value,)))
        elif following in ("in", "notin"):
            take("operator")
            if take("(") != "(":
                raise SelectorError("found something else, expected: '('")
            values: list[str] = []
            while True:
                item = take("identifier or ')'")
                if item == ")":
                    break
                if item == ",":
                    values.append("")  # `in (a,,b)` holds an empty value, as in Go
                    continue
                if item in ("(", "!", "=", "==", "!=", ">", "<"):
                    raise SelectorError(f"found '{item}', expected: ',', ')' or identifier")
                _check_value(item)
                values.append(item)
                after = take("',' or ')'")
                if after == ")":
                    break
                if after != ",":
                    raise SelectorError(f"found '{after}', expected: ',' or ')'")
            if not values:
                raise SelectorError(
                    "unable to parse requirement: for 'in', 'notin' operators, values set "
                    "can't be empty"
                )
            requirements.append(Requirement(key, following, tuple(sorted(set(values)))))
        else:
            raise SelectorError(
                f"found '{following}', expected: in, notin, =, ==, !=, gt, lt, ',' or "
                "'end of string'"
            )
        separator = peek()
        if separator is None:
            break
        if separator != ",":
            raise SelectorError(f"found '{separator}', expected: ',' or 'end of string'")
        take(",")
        if peek() is None:
            raise SelectorError("found '', expected: identifier after ','")
    return LabelSelector(tuple(requirements))


def _check_key(key: str) -> None:
    problem = label_key_problem(key)
    if problem is not None:
        raise SelectorError(f'unable to parse requirement: key: Invalid value: "{key}": {problem}')


def _check_value(value: str) -> None:
    problem = label_value_problem(value)
    if problem is not None:
        raise SelectorError(
            f'unable to parse requirement: values[0]: Invalid value: "{value}": {problem}'
        )


def from_match(selector: Mapping[str, object] | None) -> LabelSelector:
    """A `metav1.LabelSelector` object ({matchLabels, matchExpressions}) as a LabelSelector."""
    if not selector:
        return LabelSelector()
    requirements: list[Requirement] = []
    labels = selector.get("matchLabels") or {}
    if isinstance(labels, Mapping):
        for key, value in sorted(labels.items()):
            requirements.append(Requirement(str(key), "=", (str(value),)))
    expressions = selector.get("matchExpressions") or []
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    if isinstance(expressions, list):
        for expression in expressions:
            if not isinstance(expression, Mapping):
                raise SelectorError("a matchExpressions entry is not an object")
            operator = operators.get(str(expression.get("operator")))
            if operator is None:
                raise SelectorError(f"{expression.get('operator')!r} is not a valid operator")
            values = expression.get("values") or []
            if not isinstance(values, list):
                raise SelectorError("matchExpressions values must be a list")
            requirements.append(
                Requirement(str(expression.get("key")), operator, tuple(map(str, values)))
            )
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    operator: str
    """`=` or `!=`."""
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field) == self.value
        return equal if self.operator == "=" else not equal


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def render(self) -> str:
        return ",".join(
            f"{r.field}{r.operator}{escape_field_value(r.value)}" for r in self.requirements
        )

    @property
    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def exact(self, field: str) -> str | None:
        """The value `field` must equal, when one requirement pins it."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def parse_fields(text: str) -> FieldSelector:
    """Parse a field selector; the empty string selects everything."""
    requirements: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        found = _operator(term)
        if found is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        at, operator = found
        field, raw = term[:at], term[at + len(operator) :]
        normal = "!=" if operator == "!=" else "="
        if not field:
            raise SelectorError(f"invalid selector: '{text}'; field name is empty in '{term}'")
        requirements.append(FieldRequirement(field, normal, _unescape(raw, text)))
    return FieldSelector(tuple(requirements))


def _operator(term: str) -> tuple[int, str] | None:
    """Where the first unescaped `!=`, `==` or `=` of a term is, and which."""
    for operator in ("!=", "==", "="):
        at = _find_unescaped(term, operator)
        if at >= 0:
            return at, operator
    return None


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _find_unescaped(text: str, operator: str) -> int:
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
            continue
        if text.startswith(operator, index):
            return index
    return -1


def _unescape(raw: str, whole: str) -> str:
    out: list[str] = []
    escaped = False
    for char in raw:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: '{whole}': invalid escape sequence")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: '{whole}': unescaped {char!r}")
        else:
            out.append(char)
    if escaped:
        raise SelectorError(f"invalid field selector: '{whole}': trailing backslash")
    return "".join(out)
