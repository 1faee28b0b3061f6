"""A decided value and where it came from: what `krun explain` prints for every choice."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Source(enum.StrEnum):
    """Where a value came from."""

    ENV = "env"
    METADATA = "metadata"
    GKE = "gke"
    CRM = "crm"
    MESH_ENV = "mesh-env"
    KUBECONFIG = "kubeconfig"
    PROBE = "probe"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Decision(Generic[T_co]):
    """`value` as decided, its `source`, and `why` in a few words a user can check."""

    value: T_co
    source: Source
    why: str

    def as_json(self) -> dict[str, object]:
        return {"value": self.value, "source": str(self.source), "why": self.why}
