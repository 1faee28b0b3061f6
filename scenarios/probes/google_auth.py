"""A workload using unmodified google-auth against whatever metadata server its env names.

Run as a separate process, as a real workload would be: google-auth reads
GCE_METADATA_HOST when it is imported, so the environment must be set before
the interpreter starts. Prints one JSON document; exits 1 on the first failure.

Env: GCE_METADATA_HOST, GCE_METADATA_IP, REQUESTS_CA_BUNDLE (the world CA),
PROBE_AUDIENCE (the ID token's audience), PROBE_CERTS_URL (where the world
publishes its ID-token certificates).
"""

from __future__ import annotations

import json
import os
import sys
import time

import google.auth
import google.auth.compute_engine
import google.auth.transport.requests
import google.oauth2.id_token
import requests


def main() -> int:
    audience = os.environ["PROBE_AUDIENCE"]
    certs_url = os.environ["PROBE_CERTS_URL"]
    session = requests.Session()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    session.verify = bundle or True
    request = google.auth.transport.requests.Request(session)
    report: dict[str, object] = {}
    step = "google.auth.default"
    try:
        credentials, project = google.auth.default(request=request)
        report["default"] = {"project": project, "credentials": type(credentials).__name__}
        step = "compute_engine.Credentials.refresh"
        compute = google.auth.compute_engine.Credentials()
        compute.refresh(request)
        expiry = compute.expiry.timestamp() if compute.expiry else None
        report["access_token"] = {
            "service_account": compute.service_account_email,
            "token": str(compute.token)[:12] + "...",
            "expires_in_s": round(expiry - time.time()) if expiry else None,
        }
        step = "id_token.fetch_id_token"
        token = google.oauth2.id_token.fetch_id_token(request, audience)
        step = "id_token.verify_token"
        claims = google.oauth2.id_token.verify_token(
            token, request, audience=audience, certs_url=certs_url
        )
        report["id_token"] = {
            "verified": True,
            "iss": claims["iss"],
            "aud": claims["aud"],
            "email": claims.get("email"),
            "sub": claims["sub"],
        }
    except Exception as exc:  # report the step that failed, then fail
        report["error"] = f"{step}: {type(exc).__name__}: {exc}"
        print(json.dumps(report, indent=2))
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
