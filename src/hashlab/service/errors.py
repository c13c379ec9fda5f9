"""The one error type of the HTTP layer: a status code and a sentence for the client."""

from __future__ import annotations

import errno

try:  # the shared root of user errors (hashlab.errors), when present
    from hashlab.errors import HashlabError as _Base
except ImportError:  # pragma: no cover - older trees
    _Base = Exception  # type: ignore[misc,assignment]

__all__ = ["ServiceError", "describe_os_error"]


class ServiceError(_Base):  # type: ignore[misc,valid-type]
    """A request that cannot be served; ``status`` is the HTTP status to answer with.

    ``close`` asks the server to close the connection after answering: used when the
    request body was not read to its end (413, 408), so the rest of it is never parsed as
    the next request. ``headers`` go with the answer (``Retry-After`` when busy).
    """

    def __init__(
        self,
        status: int,
        message: str,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        #: extra response headers (``Retry-After`` on a 503)
        self.headers = dict(headers or {})


def describe_os_error(error: OSError, doing: str) -> ServiceError:
    """A disk error as an answer: a full disk is 507 (the client may retry later), else 500."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return ServiceError(
            507, f"the server's disk is full ({reason}) while {doing}; nothing was changed"
        )
    return ServiceError(500, f"a disk error ({reason}) while {doing}; nothing was changed")
