"""Who the workload is in the mesh: namespace, name, service account, trust domain (pure).

Namespace, first that gives one:

1. `WORKLOAD_NAMESPACE`, then the namespace segment of `MESH=gke://P/L/C/NS` (env);
2. the Google service account `k8s-NS@...` (metadata);
3. the workload project's label `mesh-namespace` (crm; read only when needed);
4. the workload project id `PREFIX-CONFIG-NS-SUFFIX`: its second-to-last `-` part when it has
   more than two (the original's convention);
5. `default`.

Name: `WORKLOAD_NAME`, then `K_SERVICE` (`VER--NAME` gives `NAME`), then `GATEWAY_NAME`,
then the namespace. Service account: `WORKLOAD_SERVICE_ACCOUNT`, else `default`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from krun import env
from krun.decisions import Decision, Source

NAMESPACE_LABEL = "mesh-namespace"


def namespace_from_email(email: str | None) -> str | None:
    """`k8s-fortio@p.iam.gserviceaccount.com` -> `fortio`."""
    if not email or not email.startswith("k8s-") or "@" not in email:
        return None
    return email[len("k8s-") : email.index("@")] or None


def namespace_from_project_id(project_id: str | None) -> str | None:
    """`wlhe-cr-fortio-1` -> `fortio`; None with two parts or fewer."""
    if not project_id:
        return None
    # Domain-scoped ids (`example.com:proj`) keep only the project part.
    parts = project_id.rsplit(":", 1)[-1].split("-")
    return parts[-2] if len(parts) > 2 else None


def derive_namespace(
    *,
    env_namespace: str | None,
    mesh_namespace: str | None,
    email: str | None,
    project_id: str | None,
    project_labels: Callable[[], tuple[Mapping[str, str] | None, str]],
) -> Decision[str]:
    """The namespace; `project_labels()` is called only if rules 1-2 do not decide.

    It returns the labels (None when unreadable) and a note on where they came from.
    """
    if env_namespace:
        return Decision(env_namespace, Source.ENV, env.WORKLOAD_NAMESPACE)
    if mesh_namespace:
        return Decision(mesh_namespace, Source.ENV, "the namespace segment of MESH")
    from_email = namespace_from_email(email)
    if from_email:
        return Decision(from_email, Source.METADATA, f"service account {email}")
    labels, note = project_labels()
    label = (labels or {}).get(NAMESPACE_LABEL)
    if label:
        return Decision(label, Source.CRM, f"label {NAMESPACE_LABEL} of project {project_id}")
    from_id = namespace_from_project_id(project_id)
    if from_id:
        return Decision(
            from_id, Source.METADATA, f"project id {project_id} (PREFIX-CONFIG-NAMESPACE-SUFFIX)"
        )
    return Decision("default", Source.DEFAULT, f"no other rule applied ({note})")


def derive_name(
    *,
    env_name: str | None,
    k_service: str | None,
    gateway: str | None,
    namespace: Decision[str],
) -> Decision[str]:
    """The workload's canonical name."""
    if env_name:
        return Decision(env_name, Source.ENV, env.WORKLOAD_NAME)
    if k_service:
        if "--" in k_service:
            return Decision(k_service.split("--", 1)[1], Source.ENV, f"{env.K_SERVICE} after '--'")
        return Decision(k_service, Source.ENV, env.K_SERVICE)
    if gateway:
        return Decision(gateway, Source.ENV, env.GATEWAY_NAME)
    return Decision(namespace.value, namespace.source, "the namespace")


def derive_service_account(env_value: str | None) -> Decision[str]:
    if env_value:
        return Decision(env_value, Source.ENV, env.WORKLOAD_SERVICE_ACCOUNT)
    return Decision("default", Source.DEFAULT, "Kubernetes' default service account")


def derive_trust_domain(
    *,
    env_value: str | None,
    mesh_env: Mapping[str, str] | None,
    config_project: Decision[str],
) -> Decision[str]:
    """`TRUST_DOMAIN` (env, then mesh-env), else the config project's workload pool."""
    if env_value:
        return Decision(env_value, Source.ENV, env.TRUST_DOMAIN)
    if mesh_env and mesh_env.get(env.TRUST_DOMAIN):
        return Decision(mesh_env[env.TRUST_DOMAIN], Source.MESH_ENV, env.TRUST_DOMAIN)
    return Decision(
        workload_pool(config_project.value),
        config_project.source,
        f"workload pool of config project {config_project.value}",
    )


def workload_pool(project_id: str) -> str:
    """GKE's Workload Identity pool of a project: `PROJECT.svc.id.goog`."""
    return f"{project_id}.svc.id.goog"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
