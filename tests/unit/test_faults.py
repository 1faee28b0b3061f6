"""Fault specs: parsing names bad fields; the table matches, counts down and expires."""

from __future__ import annotations

import pytest

from emulator.faults import FaultKind, FaultTable, parse_fault


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "status"}, "fault.service: required"),
        ({"service": "sts", "kind": "boom"}, "fault.kind: must be one of"),
        (
            {"service": "sts", "kind": "status", "status": 200},
            "fault.status: must be an integer in [400, 599]",
        ),
        ({"service": "sts", "kind": "latency"}, "fault.latency_ms: required"),
        ({"service": "sts", "kind": "reset", "times": 0}, "fault.times: must be an integer in [1,"),
        (
            {"service": "sts", "kind": "reset", "path": "("},
            "fault.path: not a valid regular expression",
        ),
        (
            {"service": "sts", "kind": "reset", "duration_s": -1},
            "fault.duration_s: must be a positive number",
        ),
        ({"service": "sts", "kind": "reset", "colour": "red"}, "fault.colour: unknown field"),
        ({"service": "sts", "kind": "reset", "path": 404}, "fault.path: must be a string"),
        ({"service": "sts", "kind": "reset", "method": ["GET"]}, "fault.method: must be a string"),
        ({"service": "sts", "kind": "status", "message": None}, "fault.message: must be a string"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    """Every invalid spec raises ValueError starting with the bad field's path."""
    with pytest.raises(ValueError) as caught:
        parse_fault(spec, where="fault", now=0)
    assert str(caught.value).startswith(message)


def test_non_mapping_is_refused() -> None:
    """A list where a mapping belongs is named as such."""
    with pytest.raises(ValueError, match="fault: must be a mapping, got list"):
        parse_fault([], where="fault", now=0)


def test_take_matches_service_method_and_path() -> None:
    """Only faults for this service (or '*'), method and path regex apply."""
    table = FaultTable()
    table.add(
        parse_fault(
            {"service": "sts", "kind": "status", "method": "post", "path": "^/v1/token$"},
            where="f",
            now=0,
        )
    )
    table.add(parse_fault({"service": "*", "kind": "latency", "latency_ms": 5}, where="f", now=0))
    assert [FaultKind.STATUS, FaultKind.LATENCY] == [
        f.kind for f in table.take("sts", "POST", "/v1/token", 0)
    ]
    assert [FaultKind.LATENCY] == [f.kind for f in table.take("sts", "GET", "/v1/token", 0)]
    assert [FaultKind.LATENCY] == [f.kind for f in table.take("container", "POST", "/v1/token", 0)]


def test_times_counts_down_then_the_fault_is_gone() -> None:
    """A fault with times=2 applies to exactly two requests."""
    table = FaultTable()
    table.add(parse_fault({"service": "sts", "kind": "reset", "times": 2}, where="f", now=0))
    hits = [len(table.take("sts", "GET", "/", 0)) for _ in range(3)]
    assert [1, 1, 0] == hits
    assert [] == table.active(0)


def test_duration_expires_on_the_world_clock() -> None:
    """duration_s is measured on the clock passed in, not wall time."""
    table = FaultTable()
    table.add(
        parse_fault({"service": "sts", "kind": "outage", "duration_s": 10}, where="f", now=100)
    )
    assert table.take_outage("sts", 105) is not None
    assert table.take_outage("sts", 111) is None


def test_outage_is_not_a_request_fault() -> None:
    """Outages act on connections; request matching never returns them."""
    table = FaultTable()
    table.add(parse_fault({"service": "sts", "kind": "outage"}, where="f", now=0))
    assert [] == table.take("sts", "GET", "/", 0)
    assert table.take_outage("sts", 0) is not None
    assert table.take_outage("iamcredentials", 0) is None


def test_remove_and_clear() -> None:
    """Faults can be removed by id and cleared."""
    table = FaultTable()
    one = table.add(parse_fault({"service": "a", "kind": "reset"}, where="f", now=0))
    table.add(parse_fault({"service": "b", "kind": "reset"}, where="f", now=0))
    assert table.remove(one.id)
    assert not table.remove(one.id)
    assert ["b"] == [f.service for f in table.active(0)]
    table.clear()
    assert [] == table.active(0)


def test_to_json_round_trips_through_the_parser() -> None:
    """What the admin API shows can be posted back."""
    original = parse_fault(
        {
            "service": "sts",
            "kind": "status",
            "status": 429,
            "path": "/x",
            "method": "GET",
            "times": 3,
        },
        where="f",
        now=0,
    )
    shown = original.to_json()
    shown.pop("id")
    again = parse_fault(shown, where="f", now=0)
    assert (original.service, original.kind, original.status, original.times) == (
        again.service,
        again.kind,
        again.status,
        again.times,
    )
    assert original.path is not None
    assert again.path is not None
    assert original.path.pattern == again.path.pattern
