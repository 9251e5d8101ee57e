"""A real S3 HTTP API on loopback (moto's server), for tests of fsspec s3:// paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from moto import server as moto_server
from s3fs import S3FileSystem

from tests.support.stack import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "llmops-test",
    "AWS_SECRET_ACCESS_KEY": "llmops-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Start moto's S3 server; yields its endpoint, set as AWS_ENDPOINT_URL meanwhile."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # s3fs caches its filesystems by arguments: one made for an earlier server (another
    # module's) would be handed out again, pointing at a port nobody listens on any more
    S3FileSystem.clear_instance_cache()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
