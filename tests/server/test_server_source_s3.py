"""s3:// sources against a real S3 + IAM + STS server (moto) on loopback.

Credentials come only through the AWS SDK's standard chain, set up the way a pod gets
them: static keys in AWS_* variables, or IRSA's AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE
(the SDK calls STS AssumeRoleWithWebIdentity on the store's endpoint).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localworld.s3_store import Keys, S3Store, aws_variables, get_object_policy, running_store
from siesta_server.source import (
    FetchSettings,
    ModelSource,
    ModelSourceError,
    cache_path,
    fetch_model,
    s3,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
BUCKET = "clinic-models"
KEY = "llama/7b-q4/model.gguf"
URI = f"s3://{BUCKET}/{KEY}"


class Store:
    def __init__(self, store: S3Store) -> None:
        self.store = store
        store.put(BUCKET, KEY, PAYLOAD)
        store.put("other-bucket", "model.gguf", PAYLOAD)
        self.reader = store.user("model-reader", get_object_policy(BUCKET))
        self.stranger = store.user("stranger", None)
        self.role_arn = store.web_identity_role("siesta-models", get_object_policy(BUCKET))
        store.enforce_auth()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with running_store(tmp_path_factory.mktemp("moto") / "moto.log") as running:
        yield Store(running)


@pytest.fixture
def aws_env(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only the store's endpoint and region: no keys, no config files, no instance metadata."""
    for name in aws_variables():
        monkeypatch.delenv(name)
    for name, value in store.store.aws_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def use_keys(env: pytest.MonkeyPatch, keys: Keys) -> None:
    env.setenv("AWS_ACCESS_KEY_ID", keys.access_key_id)
    env.setenv("AWS_SECRET_ACCESS_KEY", keys.secret_access_key)


def test_static_keys(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_keys(aws_env, store.reader)
    received: list[int] = []
    rates: list[float] = []
    source = ModelSource(URI, DIGEST, tmp_path / "cache")
    path = fetch_model(source, on_bytes=received.append, on_rate=rates.append)
    assert path.read_bytes() == PAYLOAD
    assert path == cache_path(source)
    assert path.name.endswith("-model.gguf")
    assert sum(received) == len(PAYLOAD)
    assert rates
    assert rates[-1] > 0
    assert not list(path.parent.glob("*.part"))


def use_web_identity(store: Store, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the EKS Pod Identity webhook injects for a ServiceAccount with an IRSA role."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    env.setenv("AWS_ROLE_ARN", store.role_arn)
    env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    env.setenv("AWS_ROLE_SESSION_NAME", "siesta-test")
    store.store.enforce_auth(unsigned_first=1)  # the SDK's AssumeRoleWithWebIdentity call


def test_web_identity_irsa(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_web_identity(store, aws_env, tmp_path)
    path = fetch_model(ModelSource(URI, DIGEST, tmp_path / "cache"))
    assert path.read_bytes() == PAYLOAD


def test_web_identity_role_is_limited_to_its_bucket(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_web_identity(store, aws_env, tmp_path)
    with pytest.raises(ModelSourceError, match=r"AccessDenied"):
        fetch_model(ModelSource("s3://other-bucket/model.gguf", None, tmp_path / "cache"))


def test_endpoint_for_s3_only(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env.delenv("AWS_ENDPOINT_URL")
    aws_env.setenv("AWS_ENDPOINT_URL_S3", store.store.url)
    use_keys(aws_env, store.reader)
    assert fetch_model(ModelSource(URI, None, tmp_path / "c")).read_bytes() == PAYLOAD


def test_unknown_keys_are_a_clear_fatal_error(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_keys(aws_env, Keys("AKIANOTAREALKEY00000", "wrong"))
    with pytest.raises(ModelSourceError, match=r"InvalidAccessKeyId.*s3:GetObject"):
        fetch_model(ModelSource(URI, DIGEST, tmp_path))
    assert not list(tmp_path.glob("*.part"))


def test_keys_without_permission_are_denied(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_keys(aws_env, store.stranger)
    with pytest.raises(ModelSourceError) as denied:
        fetch_model(ModelSource(URI, DIGEST, tmp_path))
    # Real S3 answers a GetObject-only role's request for a missing key the same way (403):
    # the message names both causes, the bucket and the key.
    assert str(denied.value).startswith(
        f"cannot download {URI}: access denied, or the key does not exist (without "
        f"s3:ListBucket S3 answers 403 for a missing key); bucket '{BUCKET}', key "
    )
    assert "AccessDenied" in str(denied.value)


def test_role_limited_to_its_bucket(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_keys(aws_env, store.reader)
    with pytest.raises(ModelSourceError, match=r"AccessDenied"):
        fetch_model(ModelSource("s3://other-bucket/model.gguf", None, tmp_path))


def test_missing_object(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_keys(aws_env, store.reader)
    with pytest.raises(ModelSourceError, match=r"s3://clinic-models/nope.gguf: no such object"):
        fetch_model(ModelSource(f"s3://{BUCKET}/nope.gguf", None, tmp_path))


def test_no_credentials_anywhere(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="no usable AWS credentials"):
        fetch_model(ModelSource(URI, None, tmp_path))


def test_partial_download_resumes(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_keys(aws_env, store.reader)
    source = ModelSource(URI, DIGEST, tmp_path)
    final = cache_path(source)
    final.with_name(final.name + ".part").write_bytes(PAYLOAD[:300_000])
    received: list[int] = []
    assert fetch_model(source, on_bytes=received.append).read_bytes() == PAYLOAD
    assert sum(received) == len(PAYLOAD) - 300_000


def test_wrong_checksum_leaves_nothing_to_trust(
    store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_keys(aws_env, store.reader)
    source = ModelSource(URI, "f" * 64, tmp_path)
    with pytest.raises(ModelSourceError, match="sha256 mismatch"):
        fetch_model(source)
    assert not cache_path(source).exists()
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    "uri", ["s3://clinic-models/", "s3://clinic-models", "s3://Bad_Bucket/m.gguf", "s3:///m.gguf"]
)
def test_malformed_uris(uri: str) -> None:
    with pytest.raises(ModelSourceError, match="malformed S3 URI"):
        s3.parse(uri)


@pytest.mark.llama
def test_siesta_server_by_hand_with_the_endpoint_variable(
    store: Store, tmp_path: Path, tiny_model: Path, launch_server: Any
) -> None:
    """`AWS_ENDPOINT_URL_S3=... siesta-server --model s3://...`, as a person would run it."""
    payload = tiny_model.read_bytes()
    store.store.enforce_auth(unsigned_first=1)  # let the upload through unsigned
    store.store.client("s3").put_object(Bucket=BUCKET, Key="tiny.gguf", Body=payload)
    environment = {
        name: value
        for name, value in store.store.aws_environment(tmp_path).items()
        if name != "AWS_ENDPOINT_URL"
    }
    environment |= {
        "AWS_ENDPOINT_URL_S3": store.store.url,
        "AWS_ACCESS_KEY_ID": store.reader.access_key_id,
        "AWS_SECRET_ACCESS_KEY": store.reader.secret_access_key,
        "SIESTA_CACHE_DIR": str(tmp_path / "cache"),
    }
    server = launch_server(
        "--model",
        f"s3://{BUCKET}/tiny.gguf",
        "--sha256",
        hashlib.sha256(payload).hexdigest(),
        env=environment,
    )
    assert server.metric("siesta_server_download_bytes_total") == len(payload)
    assert server.metric("siesta_server_download_bytes_per_second") > 0
    models = httpx.get(f"{server.api_url}/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["tiny.gguf"]


@pytest.mark.llama
def test_siesta_server_exits_with_the_reason_when_the_object_is_missing(
    store: Store, tmp_path: Path, tiny_model: Path, launch_server: Any
) -> None:
    environment = store.store.aws_environment(tmp_path) | {
        "AWS_ACCESS_KEY_ID": store.reader.access_key_id,
        "AWS_SECRET_ACCESS_KEY": store.reader.secret_access_key,
    }
    server = launch_server("--model", f"s3://{BUCKET}/missing.gguf", env=environment, wait=False)
    assert server.process.wait(60) == 1
    assert "s3://clinic-models/missing.gguf: no such object" in server.log()


def test_parallel_parts_from_s3(store: Store, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ranged GETs over four connections, each thread with its own client."""
    use_keys(aws_env, store.reader)
    part = 64 * 1024
    settings = FetchSettings(connections=4, max_part_bytes=part, min_part_bytes=part)
    received: list[int] = []
    path = fetch_model(ModelSource(URI, DIGEST, tmp_path, settings), on_bytes=received.append)
    assert path.read_bytes() == PAYLOAD
    assert sum(received) == len(PAYLOAD)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".lock"]
