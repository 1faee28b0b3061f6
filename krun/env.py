"""Names of the environment variables krun reads: names only, one documented constant each.

Values are parsed and validated in `krun.config`; only `krun.cli` hands it `os.environ`.
Variables marked *mesh-env* may also come from the `istio-system/mesh-env` map, where an
explicit environment value wins.
"""

from __future__ import annotations

from typing import Final

# The mesh and the workload.

MESH: Final = "MESH"
"""Where the mesh is: `gke://`, a container.googleapis.com cluster, `file://`, `https://`, `td:`."""

WORKLOAD_NAMESPACE: Final = "WORKLOAD_NAMESPACE"
"""The Kubernetes namespace the workload joins (else derived; see docs/krun.md)."""

WORKLOAD_NAME: Final = "WORKLOAD_NAME"
"""The canonical service name (else `K_SERVICE`, the gateway name, then the namespace)."""

WORKLOAD_SERVICE_ACCOUNT: Final = "WORKLOAD_SERVICE_ACCOUNT"
"""The Kubernetes service account (KSA) the workload runs as; `default` when unset."""

GATEWAY_NAME: Final = "GATEWAY_NAME"
"""Run as an Istio gateway (router) with this name instead of a sidecar."""

MESH_TENANT: Final = "MESH_TENANT"
"""*mesh-env*. Managed control-plane tenant; `-` forces the in-cluster istiod."""

TRUST_DOMAIN: Final = "TRUST_DOMAIN"
"""The SPIFFE trust domain; `<config project>.svc.id.goog` when unset."""

# Cloud Run's container contract.

K_SERVICE: Final = "K_SERVICE"
"""Cloud Run service name; `VER--NAME` sets the name and the `ver` label."""

K_REVISION: Final = "K_REVISION"
"""Cloud Run revision; the base of the pod name."""

K_CONFIGURATION: Final = "K_CONFIGURATION"
"""Cloud Run configuration name."""

PORT: Final = "PORT"
"""The port Cloud Run sends requests to (krun serves HBONE there; the app gets 8080)."""

HOSTNAME: Final = "HOSTNAME"
"""Pod name when `K_REVISION` is unset."""

# Google.

PROJECT_ID: Final = "PROJECT_ID"
"""The config project (where the mesh's clusters live); the metadata project when unset."""

PROJECT_NUMBER: Final = "PROJECT_NUMBER"
"""*mesh-env*. The config project's number (mesh id, data-plane service agent)."""

CLUSTER_NAME: Final = "CLUSTER_NAME"
"""*mesh-env*. The config cluster's name; restricts cluster selection to that name."""

CLUSTER_LOCATION: Final = "CLUSTER_LOCATION"
"""*mesh-env*. The config cluster's location; restricts cluster selection to it."""

GCE_METADATA_HOST: Final = "GCE_METADATA_HOST"
"""`host[:port]` of the metadata server (google-auth's name); `169.254.169.254` when unset."""

NO_GCE_CHECK: Final = "NO_GCE_CHECK"
"""`true`: not on Google Cloud, do not probe the metadata server (google-auth's name)."""

GOOGLE_APPLICATION_CREDENTIALS: Final = "GOOGLE_APPLICATION_CREDENTIALS"
"""Application Default Credentials file (not used by krun yet; reported by `krun explain`)."""

# Trust for outgoing TLS.

SSL_CERT_FILE: Final = "SSL_CERT_FILE"
"""CA bundle for Google APIs and mesh-env URLs (OpenSSL's name)."""

REQUESTS_CA_BUNDLE: Final = "REQUESTS_CA_BUNDLE"
"""CA bundle, as requests names it; used when `SSL_CERT_FILE` is unset."""

# The control plane.

XDS_ADDR: Final = "XDS_ADDR"
"""*mesh-env*. Explicit `host:port` of the XDS server; `-` means proxyless (no agent)."""

CA_ADDR: Final = "CA_ADDR"
"""*mesh-env*. Explicit `host:port` of the certificate authority (Istio's name)."""

PROXY_CONFIG: Final = "PROXY_CONFIG"
"""Istio ProxyConfig as YAML or JSON; its `discoveryAddress` overrides `XDS_ADDR`."""

OSS_ISTIO: Final = "OSS_ISTIO"
"""*mesh-env*. Non-empty: the istio-token audience is `istio-ca`, not the trust domain."""

ISTIO_META_CLUSTER_ID: Final = "ISTIO_META_CLUSTER_ID"
"""*mesh-env*. The `ClusterID` sent to the Istio CA; `cn-PROJECT-LOCATION-CLUSTER` when unset."""

ISTIOD_SAN: Final = "ISTIOD_SAN"
"""*mesh-env*. Name checked on istiod's certificate; `istiod.istio-system.svc` on port 15012."""

CAROOT_PREFIX: Final = "CAROOT"
"""*mesh-env*. `CAROOT_*` keys hold PEM roots; `CAROOT_ISTIOD` verifies istiod (mesh-env only)."""

CA_POOL: Final = "CA_POOL"
"""*mesh-env*. `projects/P/locations/L/caPools/POOL`: sign with Certificate Authority Service."""

CAS_POOL: Final = "CAS_POOL"
"""*mesh-env*. The pool the mesh connector publishes as `CA_POOL`."""

MCP_CONFIG: Final = "MCP_CONFIG"
"""ConfigMap in `istio-system` holding the managed tenant (`env-asm-managed` when unset)."""

XDS_AGENT_DEBUG: Final = "XDS_AGENT_DEBUG"
"""Agent log levels, e.g. `dns:debug`."""

ENVOY_LOG_LEVEL: Final = "ENVOY_LOG_LEVEL"
"""Envoy log levels, e.g. `debug,config:warn`."""

MESH_DEBUG: Final = "MESH_DEBUG"
"""*mesh-env*. Non-empty: krun logs at debug level from the start."""

# Interception and the app.

ISTIO_META_INTERCEPTION_MODE: Final = "ISTIO_META_INTERCEPTION_MODE"
"""*mesh-env*. `NONE` (whitebox), `REDIRECT` or `TPROXY`."""

OUTBOUND_IP_RANGES_INCLUDE: Final = "OUTBOUND_IP_RANGES_INCLUDE"
"""*mesh-env*. Comma-separated CIDRs to capture, or `*`; `10.0.0.0/8` when unset."""

OUTBOUND_PORTS_EXCLUDE: Final = "OUTBOUND_PORTS_EXCLUDE"
"""*mesh-env*. Comma-separated ports never captured; 15008 and 15009 are always added."""

K8S_UID: Final = "K8S_UID"
"""The uid the app runs as when krun is root."""

GRPC_XDS_BOOTSTRAP: Final = "GRPC_XDS_BOOTSTRAP"
"""Set by the user: krun leaves the proxyless gRPC variables alone."""

PORT_PREFIX: Final = "PORT_"
"""*mesh-env*. `PORT_<name>=N|host:port`: HBONE port `<name>`; `PORT_http` is the app's port."""

PORT_HTTP: Final = "PORT_http"
"""*mesh-env*. The app's port (8080 when unset); `-` turns the default readiness check off."""

STARTUP_PROBE_HTTP: Final = "startupProbe.http"
"""*mesh-env*. URL polled until it answers 200 (app readiness)."""

STARTUP_PROBE_TCP: Final = "startupProbe.tcp"
"""*mesh-env*. `host:port` connected to until it accepts (app readiness)."""

# Local access (the Kubernetes half of discovery).

KUBECONFIG: Final = "KUBECONFIG"
"""Kubeconfig file for local development."""

KUBERNETES_SERVICE_HOST: Final = "KUBERNETES_SERVICE_HOST"
"""Set inside a pod: use the in-cluster configuration."""

KUBERNETES_SERVICE_PORT: Final = "KUBERNETES_SERVICE_PORT"
"""The API server's port inside a pod (443 when unset)."""

HOME: Final = "HOME"
"""Home directory (`~/.kube/config`)."""

SSH_AUTH: Final = "SSH_AUTH"
"""An extra authorized key for the debug SSH server."""

# krun's own (not in the original).

MESH_BASE_DIR: Final = "MESH_BASE_DIR"
"""Every file krun writes lives under this directory; `/` when unset."""

KRUN_PROXY_UID: Final = "KRUN_PROXY_UID"
"""The proxy's uid, owner of private keys; 1337 when unset."""

KRUN_PROXY_GID: Final = "KRUN_PROXY_GID"
"""The proxy's gid; 1337 when unset."""

KRUN_KEY_TYPE: Final = "KRUN_KEY_TYPE"
"""Workload key algorithm: `ec-p256` (default, fast) or `rsa-2048`."""

KRUN_CERT_TTL: Final = "KRUN_CERT_TTL"
"""Lifetime in seconds asked of the CA for workload certificates; 86400 when unset."""

KRUN_CERT_RENEW_AT: Final = "KRUN_CERT_RENEW_AT"
"""Share of a certificate's lifetime after which it is renewed, in (0, 1); 0.5 when unset."""

KRUN_IMPERSONATE: Final = "KRUN_IMPERSONATE"
"""Google service account to impersonate after STS instead of the mesh data-plane agent."""

KRUN_LOG_FORMAT: Final = "KRUN_LOG_FORMAT"
"""`json` (default: one object per line on stdout) or `text`."""

KRUN_CONTAINER_ENDPOINT: Final = "KRUN_CONTAINER_ENDPOINT"
"""Base URL of the GKE API; `https://container.googleapis.com` when unset."""

KRUN_CRM_ENDPOINT: Final = "KRUN_CRM_ENDPOINT"
"""Base URL of Resource Manager; `https://cloudresourcemanager.googleapis.com` when unset."""

KRUN_STS_ENDPOINT: Final = "KRUN_STS_ENDPOINT"
"""Base URL of STS; `https://sts.googleapis.com` when unset."""

KRUN_IAMCREDENTIALS_ENDPOINT: Final = "KRUN_IAMCREDENTIALS_ENDPOINT"
"""Base URL of IAM Credentials; `https://iamcredentials.googleapis.com` when unset."""
