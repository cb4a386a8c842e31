"""Reading HTTP responses in the tests with the standard library's parser (http.client)."""

from __future__ import annotations

import io
import socket
from http.client import HTTPResponse

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"

Parsed = tuple[int, dict[str, str], bytes]


class _Kept(io.BufferedReader):
    def close(self) -> None:  # HTTPResponse closes its file after each response: keep it
        pass


class Source:
    """What http.client.HTTPResponse reads from: one buffer that successive responses share,
    so that pipelined responses are read in order with nothing lost to read-ahead."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self.file = _Kept(raw)

    @classmethod
    def of_bytes(cls, data: bytes) -> Source:
        return cls(io.BytesIO(data))  # type: ignore[arg-type]

    @classmethod
    def of_socket(cls, sock: socket.socket) -> Source:
        return cls(socket.SocketIO(sock, "rb"))

    def makefile(self, *args: object, **kwargs: object) -> io.BufferedReader:
        return self.file

    def read(self, method: str = "GET") -> Parsed:
        response = HTTPResponse(self, method=method)  # type: ignore[arg-type]
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()

    def read_all(self, methods: list[str]) -> list[Parsed]:
        return [self.read(method) for method in methods]


def responses(data: bytes, methods: list[str]) -> list[Parsed]:
    """``data`` parsed as the responses to requests of ``methods``; nothing may be left."""
    source = Source.of_bytes(data)
    parsed = source.read_all(methods)
    assert source.file.read() == b"", "bytes after the last response"
    return parsed
