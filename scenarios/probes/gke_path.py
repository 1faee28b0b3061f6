"""From inside a workload: metadata token -> GKE API -> the cluster's endpoint -> its API server.

    python -m scenarios.probes.gke_path CLUSTER [--istiod HOST:PORT]

What a launcher does to find a cluster without a kubeconfig, with the standard
library only and no override knob: an access token from the metadata server, the
GKE API (`projects/P/locations/-/clusters`) at its real name, then the cluster's
`endpoint` over HTTPS trusting *only* the CA in the GKE answer
(`masterAuth.clusterCaCertificate`), calling as the Google account (`/version`
and a SelfSubjectReview saying who the API server thinks we are). With
`--istiod`, a TLS handshake with istiod (ALPN h2, SNI and name check
`istiod.istio-system.svc`) trusting the world CA from `SSL_CERT_FILE`.

Prints one JSON document; exits 1 on the first failure, naming the step.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from typing import Any

METADATA = "http://metadata.google.internal/computeMetadata/v1/"
GKE = "https://container.googleapis.com/v1/"
ISTIOD_NAME = "istiod.istio-system.svc"


def _metadata(path: str) -> str:
    # Fixed http(s) URLs only (S310): the metadata server and Google hosts.
    request = urllib.request.Request(METADATA + path, headers={"Metadata-Flavor": "Google"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


def _json(
    url: str,
    token: str,
    *,
    body: dict[str, Any] | None = None,
    context: ssl.SSLContext | None = None,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:  # noqa: S310
        return json.load(answer)


def istiod_handshake(hostport: str) -> dict[str, Any]:
    """TLS to istiod with the world CA; what was negotiated and whom the certificate names."""
    host, _, port = hostport.rpartition(":")
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=ISTIOD_NAME) as tls,
    ):
        cert: dict[str, Any] = dict(tls.getpeercert() or {})
        names = [str(pair[1]) for pair in cert.get("subjectAltName", ()) if pair[0] == "DNS"]
        return {"alpn": tls.selected_alpn_protocol(), "version": tls.version(), "dns_names": names}


def probe(cluster_name: str, istiod: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {}
    report["project"] = project = _metadata("project/project-id")
    token = json.loads(_metadata("instance/service-accounts/default/token"))["access_token"]
    listed = _json(f"{GKE}projects/{project}/locations/-/clusters", token)
    cluster = next(c for c in listed.get("clusters", []) if c["name"] == cluster_name)
    report["endpoint"] = endpoint = cluster["endpoint"]
    ca_pem = base64.b64decode(cluster["masterAuth"]["clusterCaCertificate"]).decode()
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca_file:
        ca_file.write(ca_pem)
        ca_file.flush()
        # Only the CA GKE handed out: the API server is not a Google front end.
        context = ssl.create_default_context(cafile=ca_file.name)
        report["version"] = _json(f"https://{endpoint}/version", token, context=context)
        review = _json(
            f"https://{endpoint}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            token,
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            context=context,
        )
    report["user"] = review["status"]["userInfo"]
    if istiod is not None:
        report["istiod"] = istiod_handshake(istiod)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gke_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("cluster")
    parser.add_argument("--istiod", help="HOST:PORT of istiod to handshake with")
    args = parser.parse_args(argv)
    try:
        report = probe(args.cluster, args.istiod)
    except Exception as exc:  # the probe reports any failure as data
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
