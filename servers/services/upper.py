"""``upper``: ASCII letters come back upper-cased, line by line; bytes are never decoded."""

from servers.services.lines import LineService

SERVICE = LineService(
    "upper", "ASCII letters come back upper-cased; any bytes accepted, never decoded", bytes.upper)
