"""The token matrix of contract §7 over HTTP and the WebSocket (close codes before any data)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import WS_PATH, create_app
from api.auth import Verifier, make_token
from api.exceptions import ApiConfigError, InvalidTokenError
from api.settings import ApiSettings, api_settings

SECRET = "k" * 48
METRICS = "/api/v1/analytics/vendors/{}/metrics"
STATUS = "/api/v1/analytics/websocket/status"
BROADCAST = "/api/v1/analytics/websocket/test-broadcast"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "user-1", "aud": "vendorpulse", "exp": now + 300, "vendor_id": "v1"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str | bytes = SECRET, alg: str = "HS256") -> str:
    """Signs by hand, so it can also forge what jose refuses to make (a PEM used as HMAC secret)."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def unsigned(payload: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(payload).encode())}."


@pytest.fixture(scope="module")
def rsa_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("keys") / "rsa.pub.pem"
    path.write_bytes(public)
    return private, path


@pytest.fixture(scope="module")
def ec_jwks(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    entry = jwk.construct(public, "ES256").to_dict() | {"kid": "ec-1", "use": "sig", "alg": "ES256"}
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps({"keys": [entry]}))
    return private, path


def hs_settings(**overrides: Any) -> ApiSettings:
    return api_settings(env="test", jwt_secret=SECRET, **overrides)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(hs_settings(), kafka=False)) as c:
        yield c


def ws_close_code(client: TestClient, token: str | None, vendor: str = "v1") -> int | None:
    """The close code the server answers with, asserting that no data came before it (None: accepted)."""
    query = f"?vendor_id={vendor}" + (f"&token={token}" if token is not None else "")
    try:
        with client.websocket_connect(WS_PATH + query) as ws:
            first = ws.receive_json()
    except WebSocketDisconnect as exc:
        return exc.code
    assert first["type"] == "connection_status"
    return None


def http_status(client: TestClient, token: str | None, vendor: str = "v1") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(METRICS.format(vendor), headers=headers).status_code


REFUSED: dict[str, Callable[[], str | None]] = {
    "no token": lambda: None,
    "garbage": lambda: "not-a-jwt",
    "bad signature": lambda: hs256(claims(), secret="another-secret-another-secret-another"),
    "alg none": lambda: unsigned(claims()),
    "alg none, admin": lambda: unsigned(claims(role="admin", vendor_id=None)),
    "HS384 not allowed": lambda: jwt.encode(claims(), SECRET, algorithm="HS384"),
    "expired": lambda: hs256(claims(exp=int(time.time()) - 60)),
    "wrong audience": lambda: hs256(claims(aud="someone-else")),
    "no audience": lambda: hs256(claims(aud=None)),
    "no exp": lambda: hs256(claims(exp=None)),
    "no sub": lambda: hs256(claims(sub=None)),
    "neither vendor_id nor admin": lambda: hs256(claims(vendor_id=None, role="viewer")),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_tokens_get_401_and_close_4001(client: TestClient, case: str) -> None:
    token = REFUSED[case]()
    assert http_status(client, token) == 401
    assert ws_close_code(client, token) == 4001


def test_valid_vendor_token_reads_its_vendor_only(client: TestClient) -> None:
    token = make_token("v1", settings=hs_settings())
    assert http_status(client, token, "v1") == 200
    assert ws_close_code(client, token, "v1") is None
    assert http_status(client, token, "v2") == 403
    assert ws_close_code(client, token, "v2") == 4003


def test_admin_token_reads_any_vendor_and_admin_routes(client: TestClient) -> None:
    token = make_token(None, admin=True, settings=hs_settings())
    assert http_status(client, token, "anyone") == 200
    assert ws_close_code(client, token, "anyone") is None
    assert ws_close_code(client, token, "") == 4000  # admin must say which vendor
    body = client.get(STATUS, headers={"Authorization": f"Bearer {token}"}).json()
    assert body["connections"] == {"total": 0, "perVendor": {}}


def test_non_admin_is_refused_on_admin_routes(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {make_token('v1', settings=hs_settings())}"}
    assert client.get(STATUS, headers=headers).status_code == 403
    assert client.post(BROADCAST, headers=headers, json={"message": "hi"}).status_code == 403
    assert client.get(STATUS).status_code == 401
    assert client.post(BROADCAST, json={"message": "hi"}).status_code == 401


def test_leeway_accepts_a_just_expired_token() -> None:
    verifier = Verifier(hs_settings(jwt_leeway_seconds=30))
    assert verifier.verify(hs256(claims(exp=int(time.time()) - 5))).vendor_id == "v1"
    with pytest.raises(InvalidTokenError, match="expired"):
        verifier.verify(hs256(claims(exp=int(time.time()) - 60)))


def test_rs256_with_a_pem_key(rsa_pem: tuple[str, Path]) -> None:
    private, public_path = rsa_pem
    settings = hs_settings(jwt_algorithms=["RS256"], jwt_public_key_file=public_path)
    verifier = Verifier(settings)
    assert verifier.verify(jwt.encode(claims(), private, algorithm="RS256")).vendor_id == "v1"
    with pytest.raises(InvalidTokenError, match="not allowed"):
        verifier.verify(hs256(claims()))  # an HS256 token, even with the right secret


@pytest.mark.parametrize("algorithms", [["RS256"], ["HS256", "RS256"]])
def test_hs_rs_confusion_is_refused(rsa_pem: tuple[str, Path], algorithms: list[str]) -> None:
    """An HS256 token whose HMAC key is the server's public RSA key (the classic confusion attack)."""
    _, public_path = rsa_pem
    settings = hs_settings(jwt_algorithms=algorithms, jwt_public_key_file=public_path)
    forged = hs256(claims(role="admin"), secret=public_path.read_bytes())
    with TestClient(create_app(settings, kafka=False)) as c:
        assert http_status(c, forged) == 401
        assert ws_close_code(c, forged) == 4001


def test_rs256_token_is_refused_by_an_hs256_server(client: TestClient, rsa_pem: tuple[str, Path]) -> None:
    token = jwt.encode(claims(), rsa_pem[0], algorithm="RS256")
    assert http_status(client, token) == 401
    assert ws_close_code(client, token) == 4001


def test_es256_with_a_jwks_file(ec_jwks: tuple[str, Path]) -> None:
    private, jwks_path = ec_jwks
    verifier = Verifier(hs_settings(jwt_algorithms=["ES256"], jwt_jwks_file=jwks_path))
    token = jwt.encode(
        claims(role="admin", vendor_id=None), private, algorithm="ES256", headers={"kid": "ec-1"}
    )
    assert verifier.verify(token).admin
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidTokenError, match="signature"):
        verifier.verify(jwt.encode(claims(), other.decode(), algorithm="ES256", headers={"kid": "ec-1"}))


def test_make_token_claims_and_refusals() -> None:
    settings = hs_settings()
    decoded = jwt.decode(make_token("v9", ttl=60, settings=settings), SECRET, audience="vendorpulse")
    assert decoded["vendor_id"] == "v9"
    assert decoded["sub"] == "vendor:v9"
    assert decoded["exp"] - decoded["iat"] == 60
    admin = jwt.decode(make_token(None, admin=True, settings=settings), SECRET, audience="vendorpulse")
    assert admin["role"] == "admin"
    assert "vendor_id" not in admin
    with pytest.raises(ApiConfigError, match="--vendor"):
        make_token(None, settings=settings)
    with pytest.raises(ApiConfigError, match="--ttl"):
        make_token("v1", ttl=0, settings=settings)
