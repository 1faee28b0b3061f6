"""Label and field selectors: parsing, rendering and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.kube.selectors import (
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    SelectorError,
    from_match,
    parse_fields,
    parse_labels,
)

NAMES = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)
KEYS = st.one_of(
    NAMES,
    st.builds(
        lambda p, n: f"{p}/{n}",
        st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,5}){0,2}", fullmatch=True),
        NAMES,
    ),
)
REQUIREMENTS = st.one_of(
    st.builds(lambda k, v: Requirement(k, "=", (v,)), KEYS, NAMES),
    st.builds(lambda k, v: Requirement(k, "!=", (v,)), KEYS, NAMES),
    st.builds(
        lambda k, vs: Requirement(k, "in", tuple(sorted(vs))),
        KEYS,
        st.frozensets(NAMES, min_size=1, max_size=3),
    ),
    st.builds(
        lambda k, vs: Requirement(k, "notin", tuple(sorted(vs))),
        KEYS,
        st.frozensets(NAMES, min_size=1, max_size=3),
    ),
    st.builds(lambda k: Requirement(k, "exists"), KEYS),
    st.builds(lambda k: Requirement(k, "!"), KEYS),
    st.builds(lambda k, n: Requirement(k, "gt", (str(n),)), KEYS, st.integers(0, 10**6)),
)


class TestLabels:
    @pytest.mark.parametrize(
        ("text", "labels", "expected"),
        [
            ("", {}, True),
            ("app=web", {"app": "web"}, True),
            ("app==web", {"app": "db"}, False),
            ("app!=web", {}, True),
            ("app in (web, db)", {"app": "db"}, True),
            ("app notin (web,db)", {"app": "db"}, False),
            ("app", {"app": ""}, True),
            ("!app", {"app": "x"}, False),
            ("tier>2", {"tier": "3"}, True),
            ("tier<2", {"tier": "x"}, False),
            ("a=1,b", {"a": "1"}, False),
            ("example.com/team=mesh", {"example.com/team": "mesh"}, True),
        ],
    )
    def test_matching(self, text: str, labels: dict[str, str], expected: bool) -> None:
        """Each operator selects exactly what kube-apiserver's selector does."""
        assert expected == parse_labels(text).matches(labels)

    @pytest.mark.parametrize(
        "text",
        [
            "a in (b",
            "a in ()",
            "=b",
            "a b",
            "a=b c",
            "a,",
            "Bad Key=1",
            "a=has space",
            "a>x",
            "x/=1",
            "/x=1",
        ],
    )
    def test_malformed_is_a_selector_error(self, text: str) -> None:
        """Bad selectors raise SelectorError with a message, nothing else."""
        with pytest.raises(SelectorError):
            parse_labels(text)

    @given(st.lists(REQUIREMENTS, max_size=4))
    def test_render_parse_round_trip(self, requirements: list[Requirement]) -> None:
        """Any valid selector parses back from its rendering."""
        selector = LabelSelector(tuple(requirements))
        assert selector == parse_labels(selector.render())

    @given(st.text(max_size=40))
    def test_any_text_parses_or_fails_cleanly(self, text: str) -> None:
        """Arbitrary input gives a selector or a SelectorError, never another exception."""
        try:
            parse_labels(text)
        except SelectorError:
            pass

    def test_match_expressions(self) -> None:
        """A metav1.LabelSelector object becomes the same requirements."""
        selector = from_match(
            {
                "matchLabels": {"app": "x"},
                "matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}],
            }
        )
        assert selector.matches({"app": "x", "t": "a"})
        assert not selector.matches({"app": "x", "t": "b"})


class TestFields:
    def test_operators_and_escapes(self) -> None:
        """`=`, `==` and `!=` parse; `\\,` and `\\=` escape separators in values."""
        selector = parse_fields(r"metadata.name=a\,b\=c,status.phase!=Failed,spec.nodeName==n1")
        assert (
            FieldRequirement("metadata.name", "=", "a,b=c"),
            FieldRequirement("status.phase", "!=", "Failed"),
            FieldRequirement("spec.nodeName", "=", "n1"),
        ) == selector.requirements
        assert selector.matches(
            {"metadata.name": "a,b=c", "status.phase": "Running", "spec.nodeName": "n1"}
        )

    @pytest.mark.parametrize("text", ["name", "=x", r"a=b\q", "a=b=c", "a=b\\"])
    def test_malformed(self, text: str) -> None:
        """A term without an operator, an empty field or a bad escape is a SelectorError."""
        with pytest.raises(SelectorError):
            parse_fields(text)

    @given(
        st.lists(
            st.tuples(
                st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6})?", fullmatch=True),
                st.sampled_from(["=", "!="]),
                st.text(max_size=10),
            ),
            max_size=3,
        )
    )
    def test_round_trip(self, terms: list[tuple[str, str, str]]) -> None:
        """Any values, separators included, survive render then parse."""
        selector = FieldSelector(tuple(FieldRequirement(*t) for t in terms))
        assert selector == parse_fields(selector.render())
