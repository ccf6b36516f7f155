"""The test broker's start-up errors, worded as what to do about them."""

from __future__ import annotations

import errno

__all__ = ["BrokerStartError", "explain"]


class BrokerStartError(RuntimeError):
    """The test broker could not start; the message says why and what to do."""


def only_cause(exc: BaseException) -> BaseException:
    """The one error inside nested single-error groups (trio's nurseries wrap)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def explain(exc: BaseException, *, data_dir: object, addresses: str) -> BrokerStartError | None:
    """A :class:`BrokerStartError` for the start-up failures a user can fix,
    or None for anything else (which then propagates as it is)."""
    cause = only_cause(exc)
    code = cause.errno if isinstance(cause, OSError) else None
    config_error = type(cause).__name__ == "ConfigError"  # not imported: the broker may not be
    return explain_text(
        code, str(cause), data_dir=data_dir, addresses=addresses, config_error=config_error
    )


def explain_text(
    code: int | None,
    text: str,
    *,
    data_dir: object,
    addresses: str,
    config_error: bool = False,
) -> BrokerStartError | None:
    """The same from an errno (None when unknown) and the error's text (a
    broker process reports only its text)."""
    low = text.lower()
    if code == errno.EADDRINUSE or "address already in use" in low:
        return BrokerStartError(
            f"cannot listen on {addresses}: the port is in use by another process. At the "
            "first start the ports are free ones the system picks; at a restart the broker "
            "takes the same ports again so that clients reconnect, and something took one in "
            "between: stop what listens there, or start a new broker instead of restarting"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "permission denied" in low:
        return BrokerStartError(
            f"cannot write in data_dir {data_dir}: {text}; pass a directory you can write to, "
            "or leave data_dir unset to use a temporary one"
        )
    if code == errno.ENOSPC or "no space left" in low:
        return BrokerStartError(
            f"no space left for data_dir {data_dir}: free some space, or pass a data_dir "
            "(or set TMPDIR) on a file system that has some"
        )
    if "in use by another process" in low:
        return BrokerStartError(
            f"data_dir {data_dir} is in use by another broker: each broker needs a data "
            "directory of its own; pass another one, or leave data_dir unset"
        )
    if config_error:
        return BrokerStartError(f"bad broker setting: {text}")
    return None
