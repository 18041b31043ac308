"""A real S3-compatible store on loopback: moto's server (S3, IAM and STS) in a subprocess.

Objects, users and roles are created while the store still lets anyone in; then
`enforce_auth()` turns on moto's IAM checks, so from there on only a signed request with a
known key (a user's, or an assumed role's) whose policy allows the action succeeds, exactly
the distinction the model server must report. The environment `aws_environment()` returns
reaches only this store: no shared config files, no instance metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localworld.procs import free_port

REGION = "eu-central-1"
ACCOUNT = "123456789012"
STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass
class S3Store:
    url: str
    process: subprocess.Popen[bytes]

    def client(self, service: str, keys: Keys | None = None) -> Any:
        import boto3

        keys = keys or Keys("setup", "setup")
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
        )

    def put(self, bucket: str, key: str, body: bytes) -> None:
        s3 = self.client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def user(self, name: str, policy: dict[str, Any] | None) -> Keys:
        """An IAM user with access keys and (optionally) an inline policy."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(
                UserName=name, PolicyName="models", PolicyDocument=json.dumps(policy)
            )
        created = iam.create_access_key(UserName=name)["AccessKey"]
        return Keys(created["AccessKeyId"], created["SecretAccessKey"])

    def web_identity_role(self, name: str, policy: dict[str, Any]) -> str:
        """A role that a web identity (an EKS ServiceAccount token) may assume: its ARN."""
        iam = self.client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {
                        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.example"
                    },
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=name, PolicyName="models", PolicyDocument=json.dumps(policy))
        return str(role["Role"]["Arn"])

    def enforce_auth(self, unsigned_first: int = 0) -> None:
        """From now on every request must be signed by a known key and allowed by policy.

        `unsigned_first`: let that many requests through unsigned first. STS's
        AssumeRoleWithWebIdentity is unsigned by design (the web identity token is the
        credential), but moto asks every request for a signature once checks are on.
        """
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=str(unsigned_first).encode(),
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def aws_environment(self, home: Path) -> dict[str, str]:
        """AWS_* settings that point the SDK at this store and nowhere else."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def get_object_policy(bucket: str) -> dict[str, Any]:
    """What the IRSA role needs (docs/eks.md shows the same document)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }


def aws_variables() -> list[str]:
    """AWS_* variables of this process, which must not leak into a test's credential chain."""
    return [name for name in os.environ if name.startswith("AWS_")]


@contextmanager
def running_store(log_path: Path) -> Iterator[S3Store]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    store = S3Store(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{store.url}/moto-api/data.json", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield store
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
