"""``echo``: the bytes come back unchanged (RFC 862), line by line."""

from servers.services.lines import LineService


def _identity(data: bytes) -> bytes:
    return data


SERVICE = LineService("echo", "the bytes come back unchanged (RFC 862)", _identity)
