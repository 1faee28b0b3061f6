"""Google's public token-verification endpoints, for the world's ID-token key.

* `GET /oauth2/v1/certs`: key id -> PEM certificate (what google-auth's
  `verify_oauth2_token` fetches by default);
* `GET /oauth2/v3/certs`: the same key as a JWKS;
* `GET /.well-known/openid-configuration`: the discovery document of the
  issuer `https://accounts.google.com`, pointing at the JWKS above;
* `GET /tokeninfo?id_token=...|access_token=...`: what Google says about a token.

Served in a world as www.googleapis.com, oauth2.googleapis.com and
accounts.google.com; on loopback, at the base URL in the endpoint map.
"""

from __future__ import annotations

import jwt

from emulator.asgi import ASGIApp, Request, Response, Router, json_api_app
from emulator.tokens import GOOGLE_ISSUER
from emulator.world import World

HOSTNAMES = ("www.googleapis.com", "oauth2.googleapis.com", "accounts.google.com")
_CACHE = [("cache-control", "public, max-age=3600, must-revalidate, no-transform")]


def _oauth_error(description: str, status: int = 400) -> Response:
    return Response.json({"error": "invalid_token", "error_description": description}, status)


def create_app(world: World) -> ASGIApp:
    router = Router()

    async def certs_v1(request: Request) -> Response:
        return Response.json(world.tokens.pem_certs(), headers=_CACHE)

    async def certs_v3(request: Request) -> Response:
        return Response.json(world.tokens.jwks(), headers=_CACHE)

    async def discovery(request: Request) -> Response:
        host = request.header("host") or "accounts.google.com"
        base = f"{request.scheme}://{host}"
        return Response.json(
            {
                "issuer": GOOGLE_ISSUER,
                "jwks_uri": f"{base}/oauth2/v3/certs",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/v1/userinfo",
                "response_types_supported": ["code", "token", "id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "sub"],
            },
            headers=_CACHE,
        )

    async def tokeninfo(request: Request) -> Response:
        now = world.clock()
        access = request.param("access_token")
        if access is not None:
            record = world.tokens.resolve_access_token(access, now=now)
            if record is None:
                return _oauth_error("Invalid Value")
            info = {
                "azp": record.principal.subject,
                "scope": " ".join(record.scopes),
                "exp": str(int(record.expires_at)),
                "expires_in": str(record.expires_in(now)),
                "access_type": "online",
            }
            if record.principal.email:
                info["email"] = record.principal.email
                info["email_verified"] = "true"
            return Response.json(info)
        id_token = request.param("id_token")
        if id_token is None:
            return _oauth_error("either access_token or id_token is required")
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("kid") != world.tokens.key_id:
                return _oauth_error("Invalid Value")
            # Time is checked below against the world clock, which tests move ahead of the host's.
            claims = jwt.decode(
                id_token,
                world.tokens.public_key,
                algorithms=["RS256"],
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            return _oauth_error("Invalid Value")
        if int(claims.get("exp", 0)) <= now:
            return _oauth_error("Token expired")
        return Response.json(
            {k: str(v) if isinstance(v, bool | int) else v for k, v in claims.items()}
        )

    router.add("GET", r"/oauth2/v1/certs", certs_v1)
    router.add("GET", r"/oauth2/v3/certs", certs_v3)
    router.add("GET", r"/\.well-known/openid-configuration", discovery)
    router.add("GET POST", r"/(oauth2/v3/)?tokeninfo", tokeninfo)
    return json_api_app(router, service="oauth2")
