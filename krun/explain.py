"""`krun explain`: run discovery without changing anything, and say what was decided and why.

The report is one JSON document: every decision with its value, its source (`env`,
`metadata`, `gke`, `crm`, `mesh-env`, `default`) and a reason; the mesh-env map's state;
the files krun would write and the certificate it would request. On failure the report
still holds what was decided before the failing step, and `error` says what went wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from krun import __version__
from krun.certs.files import plan
from krun.config import Settings
from krun.discovery.discover import Discovery, discover
from krun.errors import ConfigError, KrunError
from krun.http import HttpClient


def explain(environ: Mapping[str, str]) -> tuple[dict[str, Any], KrunError | None]:
    """The report, and the error that stopped discovery (None when every step passed)."""
    d = Discovery()
    settings: Settings | None = None
    failure: KrunError | None = None
    try:
        settings = Settings.from_env(environ)
        discover(settings, HttpClient(ca_file=settings.ca_file), into=d)
    except KrunError as error:
        failure = error
    return report(d, settings, failure), failure


def report(d: Discovery, settings: Settings | None, failure: KrunError | None) -> dict[str, Any]:
    """The JSON-ready report (pure)."""
    document: dict[str, Any] = {
        "krun": __version__,
        "ok": failure is None,
        "failed_step": None if failure is None else d.step,
        "error": None if failure is None else str(failure),
        "decisions": {key: decision.as_json() for key, decision in d.decisions.items()},
        "mesh_env": {
            "loaded": d.mesh_env is not None,
            "why": d.mesh_env_why,
            "keys": sorted(d.mesh_env) if d.mesh_env is not None else [],
        },
        "notes": list(d.notes),
        "timings_ms": dict(d.timings),
    }
    if isinstance(failure, ConfigError):
        document["error_variable"] = failure.variable
    if settings is not None:
        document["certificate"] = {
            "san": d.value("spiffe_id"),
            "key_type": str(settings.key_type),
            "renew_at_share": settings.renew_at,
            "expiry": None,
            "why": "not requested: the CA client comes with the Istio CA half",
        }
        document["files"] = [
            {
                "path": str(planned.path),
                "holds": str(planned.content),
                "mode": f"{planned.mode:04o}",
                "owner": None if planned.owner is None else "{}:{}".format(*planned.owner),
            }
            for planned in plan(
                settings.base_dir, proxy_uid=settings.proxy_uid, proxy_gid=settings.proxy_gid
            )
        ]
    return document


def sentence(d_step: str | None, failure: KrunError) -> str:
    """The one line a person reads first."""
    if isinstance(failure, ConfigError):
        return f"krun explain: the setting {failure.variable} is invalid: {failure}"
    return f"krun explain: step {d_step!r} failed: {failure}"
