"""Gateway settings (flags over environment over defaults) and API key checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siesta.gateway.auth import (
    KeyFile,
    KeyScope,
    Rate,
    UpstreamKey,
    bearer_token,
    key_matches,
    parse_keys,
)
from siesta.gateway.ratelimit import RateLimiter
from siesta.gateway.settings import settings_from


def test_defaults_match_the_contract() -> None:
    settings = settings_from({}, environ={"POD_NAME": "gw-0"})
    assert settings.port == 8080
    assert settings.max_body == 4 * 1024 * 1024
    assert settings.queue_size == 100
    assert settings.max_held == 1000
    assert settings.api_keys_file is None
    assert settings.namespaces == ()
    assert settings.pod_name == "gw-0"


def test_flags_win_over_environment() -> None:
    env = {
        "SIESTA_GATEWAY_PORT": "9000",
        "SIESTA_NAMESPACES": "a, b",
        "SIESTA_GATEWAY_KEEPALIVE": "1s",
    }
    settings = settings_from({"port": "9100"}, environ=env)
    assert settings.port == 9100
    assert settings.namespaces == ("a", "b")
    assert settings.keepalive_interval == 1.0


def test_bad_values_are_reported() -> None:
    with pytest.raises(ValueError, match="gateway setting"):
        settings_from({"queue_size": "many"}, environ={})
    with pytest.raises(ValueError, match="positive"):
        settings_from({"max_held": "0"}, environ={})


def test_keys() -> None:
    keys = parse_keys("# comment\n  key-one \n\nkey-two\n")
    assert set(keys) == {"key-one", "key-two"}
    assert keys["key-one"] == KeyScope("key-one")  # the flat file: every model, no rate
    assert bearer_token("Bearer key-one") == "key-one"
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None
    assert key_matches("key-two", keys)
    assert not key_matches("key-three", keys)
    assert not key_matches(None, keys)


def test_key_file_reloads_when_the_secret_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old\n")
    keys = KeyFile(path)
    assert keys.allows("Bearer old")
    path.write_text("new\n")
    import os

    os.utime(path, (1, 1))
    assert keys.allows("Bearer new")
    assert not keys.allows("Bearer old")
    path.unlink()
    assert keys.allows("Bearer new")  # a Secret update swaps files: keep the last good keys


def test_upstream_key_is_the_first_key_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server-keys"
    path.write_text("# for the model pods\nfirst\nsecond\n")
    settings = settings_from({"upstream_key_file": str(path)}, environ={})
    assert settings.upstream_key_file == path
    key = UpstreamKey(path)
    assert key.authorization() == "Bearer first"
    path.write_text("rotated\n")
    os.utime(path, (1, 1))
    assert key.authorization() == "Bearer rotated"
    path.unlink()
    assert key.authorization() == "Bearer rotated"  # kept while a Secret update swaps files


def test_scoped_keys() -> None:
    keys = parse_keys(
        "sk-a namespaces=team-a,shared models=chat,team-a/embed rate=60/m name=team-a\n"
        "sk-bad colour=blue\n"  # a bad option: the key is left out (fail closed)
        "sk-worse rate=0/s\n"
        "sk-all\n"
    )
    assert set(keys) == {"sk-a", "sk-all"}
    team = keys["sk-a"]
    assert team.rate == Rate(60, 60.0)
    assert team.reaches("team-a", ("chat",))
    assert team.reaches("team-a", ("embed", "team-a/embed"))
    assert not team.reaches("team-a", ("other",))
    assert not team.reaches("team-b", ("chat",))
    assert keys["sk-all"].reaches("anywhere", ("anything",))


def test_rate_limit_is_a_token_bucket() -> None:
    limiter = RateLimiter()
    rate = Rate(2, 1.0)
    assert limiter.take("k", rate, 10.0) == 0
    assert limiter.take("k", rate, 10.0) == 0
    assert limiter.take("k", rate, 10.0) == pytest.approx(0.5)
    assert limiter.take("other", rate, 10.0) == 0  # per key
    assert limiter.take("k", rate, 10.5) == 0  # half a second: one token back
    assert limiter.take("k", rate, 10.5) == pytest.approx(0.5)
