"""API settings: the secret rules of contract §1/§7 and the limits tests rely on shortening."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.exceptions import ApiConfigError
from api.settings import DEV_SECRET, api_settings

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "VENDORPULSE_JWT_SECRET",
        "VENDORPULSE_ENV",
        "VENDORPULSE_JWT_ALGORITHMS",
        "VENDORPULSE_ALLOWED_ORIGINS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_dev_gets_the_fixed_dev_secret() -> None:
    settings = api_settings(env="dev")
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == DEV_SECRET


def test_missing_secret_is_refused_outside_dev() -> None:
    with pytest.raises(ApiConfigError, match="VENDORPULSE_JWT_SECRET is not set"):
        api_settings(env="prod")


def test_dev_secret_is_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORPULSE_JWT_SECRET", DEV_SECRET)
    with pytest.raises(ApiConfigError, match="only accepted with VENDORPULSE_ENV=dev"):
        api_settings(env="prod")


def test_short_secret_is_refused_outside_dev() -> None:
    with pytest.raises(ApiConfigError, match="at least 32 bytes"):
        api_settings(env="prod", jwt_secret="short")


def test_secret_comes_from_the_environment_and_stays_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORPULSE_JWT_SECRET", SECRET)
    settings = api_settings(env="prod")
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


@pytest.mark.parametrize("algorithms", ["none", "HS256,none", ""])
def test_algorithm_allowlist_refuses_none_and_unknown(
    monkeypatch: pytest.MonkeyPatch, algorithms: str
) -> None:
    monkeypatch.setenv("VENDORPULSE_JWT_ALGORITHMS", algorithms)
    with pytest.raises(ApiConfigError, match="VENDORPULSE_JWT_ALGORITHMS"):
        api_settings(env="dev")


def test_public_key_algorithms_need_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(ApiConfigError, match="PUBLIC_KEY_FILE"):
        api_settings(env="dev", jwt_algorithms=["RS256"])
    with pytest.raises(ApiConfigError, match="does not exist"):
        api_settings(env="dev", jwt_algorithms=["RS256"], jwt_public_key_file=tmp_path / "missing.pem")


def test_leeway_is_at_most_30_seconds() -> None:
    assert api_settings(env="dev", jwt_leeway_seconds=30).jwt_leeway_seconds == 30
    with pytest.raises(ApiConfigError, match="jwt_leeway_seconds"):
        api_settings(env="dev", jwt_leeway_seconds=31)


def test_lists_parse_from_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORPULSE_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    assert api_settings(env="dev").allowed_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("VENDORPULSE_ALLOWED_ORIGINS", '["https://c.example"]')
    assert api_settings(env="dev").allowed_origins == ["https://c.example"]


def test_defaults_follow_the_contract() -> None:
    settings = api_settings(env="dev", topic_prefix="x-")
    assert settings.jwt_algorithms == ["HS256"]
    assert settings.jwt_audience == "vendorpulse"
    assert settings.heartbeat_seconds == 15
    assert settings.refresh_seconds == 30
    assert settings.missed_pongs == 2
    assert settings.broadcast_topic == "x-api-broadcast"


def test_shard_setting_splits_partitions_and_vendors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORPULSE_API_SHARD", "1/3")
    shard = api_settings(env="dev").shard
    assert str(shard) == "1/3"
    assert shard.partitions(list(range(8))) == [1, 4, 7]
    owners = [shard.of(f"vendor-{n}", 8) for n in range(300)]
    assert set(owners) == {0, 1, 2}
    assert all(shard.owns(f"vendor-{n}", 8) == (o == 1) for n, o in enumerate(owners))
    assert shard.owns("anyone", None)  # partition count not known yet: not refused
    assert api_settings(env="dev", api_shard="0/1").shard.owns("anyone", 8)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ApiConfigError, match="VENDORPULSE_API_SHARD"):
            api_settings(env="dev", api_shard=bad)
