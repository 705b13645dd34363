"""A real S3-protocol server on loopback for tests: moto's ThreadedMotoServer on 127.0.0.1 and a free
port, started once per session and stopped at the end (the way s3fs's own tests do it).

Fixtures (import them into a conftest.py or a test module):

* ``s3_endpoint`` (session): the endpoint URL; also sets dummy AWS credentials for the session.
* ``s3_url`` (function): ``s3://<fresh bucket>/store`` with ``$FABRIC_S3_ENDPOINT_URL`` pointing at the
  server. Records are signed with the session's key in ``$FABRIC_HOME`` (tests/conftest.py), the one
  the Ray cluster's workers use too, so no test writes to the user's home.

Nothing leaves the machine: the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["s3_server", "s3_endpoint", "s3_url", "make_bucket"]

_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Run a moto S3 server on 127.0.0.1 for the duration of the block; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket on the server and return its name."""
    import boto3

    name = name or f"fabric-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in _CREDS.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        with s3_server() as url:
            yield url


@pytest.fixture
def s3_url(s3_endpoint: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FABRIC_S3_ENDPOINT_URL", s3_endpoint)
    return f"s3://{make_bucket(s3_endpoint)}/store"
