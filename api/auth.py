"""JWT verification (contract §7) with python-jose, keys built once, plus FastAPI dependencies.

Keys are grouped by algorithm and the token header's `alg` picks the group, so an HMAC token is only
ever checked against the shared secret and an RS/ES token only against public keys: an HS256 token
signed with the public key as secret (HS/RS confusion) cannot verify. `alg: none` is never allowed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from api.exceptions import ApiConfigError, InvalidTokenError
from api.settings import HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS, ApiSettings, api_settings

_OPTIONS = {"require_sub": True, "require_exp": True, "require_aud": True}


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token allows: one vendor, or every vendor and the admin routes."""

    subject: str
    vendor_id: str | None
    admin: bool
    expires_at: float  # epoch seconds

    def may_read(self, vendor_id: str) -> bool:
        return self.admin or self.vendor_id == vendor_id


class Verifier:
    """Verifies tokens against the configured allowlist with keys built once (see MEASURED.md)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self._options: dict[str, Any] = {**_OPTIONS, "leeway": self.leeway}
        self._keys: dict[str, list[tuple[str | None, Key]]] = {}  # alg -> [(kid, key)]
        for alg in settings.jwt_algorithms:
            if alg in HMAC_ALGORITHMS and settings.secret is not None:
                self._keys[alg] = [(None, jwk.construct(settings.secret.get_secret_value(), alg))]
            elif alg in PUBLIC_KEY_ALGORITHMS:
                self._keys[alg] = _public_keys(settings, alg)

    def verify(self, token: str) -> Claims:
        """The token's claims, or InvalidTokenError saying why (never quoting the token)."""
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise InvalidTokenError("malformed token") from exc
        alg = header.get("alg")
        candidates = self._keys.get(alg) if isinstance(alg, str) else None
        if not isinstance(alg, str) or not candidates:
            raise InvalidTokenError(f"algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        keys = [key for key_id, key in candidates if kid is None or key_id in (kid, None)]
        failure: JOSEError | None = None
        for key in keys or [key for _, key in candidates]:  # several only with a JWKS without `kid`
            try:
                claims = jwt.decode(
                    token, key, algorithms=[alg], audience=self.audience, options=self._options
                )
            except JOSEError as exc:
                failure = exc
            else:
                return _claims(claims)
        assert failure is not None
        raise InvalidTokenError(_reason(failure)) from failure


def _reason(exc: JOSEError) -> str:
    text = str(exc)
    if "expired" in text.lower():
        return "token expired"
    if "audience" in text.lower():
        return "wrong audience"
    if "signature" in text.lower():
        return "bad signature"
    return text[:120]


def _claims(raw: dict[str, Any]) -> Claims:
    sub, vendor, role, exp = raw.get("sub"), raw.get("vendor_id"), raw.get("role"), raw.get("exp")
    if not isinstance(sub, str) or not sub:
        raise InvalidTokenError("claim sub must be a non-empty string")
    if not isinstance(exp, int | float):
        raise InvalidTokenError("claim exp must be a number")
    admin = role == "admin"
    if not admin and (not isinstance(vendor, str) or not vendor):
        raise InvalidTokenError('token needs a vendor_id claim or role "admin"')
    return Claims(sub, vendor if isinstance(vendor, str) and vendor else None, admin, float(exp))


def _public_keys(settings: ApiSettings, alg: str) -> list[tuple[str | None, Key]]:
    keys: list[tuple[str | None, Key]] = []
    try:
        if settings.jwt_public_key_file is not None:
            keys.append((None, jwk.construct(settings.jwt_public_key_file.read_text(), alg)))
        if settings.jwt_jwks_file is not None:
            for entry in json.loads(settings.jwt_jwks_file.read_text()).get("keys", []):
                if entry.get("alg", alg) != alg or entry.get("use", "sig") != "sig":
                    continue
                if entry.get("kty") != ("RSA" if alg.startswith("RS") else "EC"):
                    continue
                keys.append((entry.get("kid"), jwk.construct(entry, alg)))
    except (OSError, ValueError, JOSEError) as exc:
        raise ApiConfigError(f"cannot load the JWT public key for {alg}: {exc}") from exc
    if not keys:
        raise ApiConfigError(f"no usable {alg} key in the configured PEM/JWKS file")
    return keys


def make_token(
    vendor: str | None,
    admin: bool = False,
    ttl: int = 3600,
    *,
    settings: ApiSettings | None = None,
    subject: str | None = None,
) -> str:
    """A token for `vendor` (or an admin token) signed with the configured HMAC secret, valid `ttl` s."""
    settings = settings or api_settings()
    if vendor is None and not admin:
        raise ApiConfigError("a token needs a vendor (--vendor V) or --admin")
    if ttl <= 0:
        raise ApiConfigError("the token lifetime (--ttl) must be positive")
    secret = settings.secret
    alg = next((a for a in settings.jwt_algorithms if a in HMAC_ALGORITHMS), None)
    if secret is None or alg is None:
        raise ApiConfigError(
            "tokens are signed with VENDORPULSE_JWT_SECRET and an HS* algorithm; this API accepts "
            f"{settings.jwt_algorithms}: sign RS/ES tokens with your identity provider"
        )
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject or ("admin" if admin and vendor is None else f"vendor:{vendor}"),
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl,
    }
    if vendor is not None:
        claims["vendor_id"] = vendor
    if admin:
        claims["role"] = "admin"
    return str(jwt.encode(claims, secret.get_secret_value(), algorithm=alg))


# --- FastAPI dependencies ------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="JWT per contract §7 (`vendorpulse token`)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def verifier_of(request: Request) -> Verifier:
    verifier = request.app.state.verifier
    assert isinstance(verifier, Verifier)
    return verifier


async def current_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers=_CHALLENGE)
    try:
        return verifier_of(request).verify(credentials.credentials)
    except InvalidTokenError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=_CHALLENGE) from exc


CurrentClaims = Annotated[Claims, Depends(current_claims)]


async def admin_claims(claims: CurrentClaims) -> Claims:
    if not claims.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, 'this route needs a token with role "admin"')
    return claims


AdminClaims = Annotated[Claims, Depends(admin_claims)]
