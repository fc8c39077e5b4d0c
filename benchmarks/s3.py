"""A real S3 API on loopback for the remote-storage tests and benchmark: moto's server,
started in this process, and a proxy in front of it that counts the bytes sent to it.

The environment is set as a user's would be for an S3-compatible server:
``AWS_ENDPOINT_URL`` (boto3, s3fs) and ``S3_ENDPOINT`` (TensorBoard's own S3 reader).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

__all__ = ["CountingProxy", "S3Server", "s3_environment"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 server on 127.0.0.1; :meth:`stop` and :meth:`start` keep the buckets
    and objects (moto keeps them in this process), so a test can take the store away
    and bring it back."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url).create_bucket(Bucket=name)


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``port`` and counts the bytes clients
    send through it (``sent``): what an upload costs on the wire, headers included."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        """Copy ``source`` to ``target`` until ``source`` ends; then end ``target``'s
        sending side and close ``source`` (the opposite pump closes ``target``)."""
        try:
            while data := source.recv(1 << 16):
                if upstream:
                    with self._lock:
                        self.sent += len(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            source.close()

    def close(self) -> None:
        self._listener.close()


@contextlib.contextmanager
def s3_environment(endpoint: str) -> Iterator[None]:
    """Point boto3, s3fs and TensorBoard at ``endpoint`` with test credentials, as a
    user of an S3-compatible server would; restore the environment after."""
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    _forget_s3_clients()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_s3_clients()


def _forget_s3_clients() -> None:
    """s3fs keeps one filesystem per set of arguments; a new endpoint needs a new one."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
