"""The few predefined IAM roles the world understands, and what each permits.

Only permissions that an emulated API checks are listed. A member holds a role
on a project (project IAM policy) or on one service account (its own policy).
"""

from __future__ import annotations

_VIEW = frozenset(
    {
        "container.clusters.get",
        "container.clusters.list",
        "resourcemanager.projects.get",
    }
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/owner": _VIEW
    | {
        "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getOpenIdToken",
        "run.routes.invoke",
        "container.clusters.getCredentials",
    },
    "roles/editor": _VIEW | {"run.routes.invoke", "container.clusters.getCredentials"},
    "roles/viewer": _VIEW,
    "roles/browser": frozenset({"resourcemanager.projects.get"}),
    "roles/container.clusterViewer": frozenset(
        {"container.clusters.get", "container.clusters.list", "container.clusters.getCredentials"}
    ),
    "roles/container.viewer": _VIEW | {"container.clusters.getCredentials"},
    "roles/container.admin": _VIEW | {"container.clusters.getCredentials"},
    "roles/iam.serviceAccountTokenCreator": frozenset(
        {"iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken"}
    ),
    "roles/iam.workloadIdentityUser": frozenset({"iam.serviceAccounts.getAccessToken"}),
    "roles/run.invoker": frozenset({"run.routes.invoke"}),
}


def permits(role: str, permission: str) -> bool:
    """Whether `role` grants `permission`; unknown roles grant nothing."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
