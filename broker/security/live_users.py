"""The users file as the running broker sees it: reloaded when it changes.

``tailrace users add|remove`` rewrite the file atomically while the broker
runs. :meth:`LiveUsers.current` costs one ``stat`` per authentication and
reloads the file only when it was replaced, so a new user can log in at once
and a removed one cannot start a new session (sessions already open stay
open: tailrace has no re-authentication).

A reloaded file that is broken (hand-edited, truncated) does not lock
everybody out: the broker keeps the last good snapshot and logs an error,
once per broken version of the file, until it is fixed.
"""

from __future__ import annotations

import logging
import os

from tailrace.client.errors import InvalidConfigError

from .users import Users, load, reload_if_changed

__all__ = ["LiveUsers"]

log = logging.getLogger(__name__)


class LiveUsers:
    """A users file and its last good snapshot. A file that is missing or
    broken when the broker starts raises :class:`InvalidConfigError`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.users: Users = load(path)
        self._reported: object = None

    def current(self) -> Users:
        """The snapshot to authenticate against (reloaded if the file changed)."""
        try:
            users = reload_if_changed(self.path, self.users)
        except InvalidConfigError as exc:
            try:
                st = os.stat(self.path)
                version: object = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                version = "missing"
            if version != self._reported:
                self._reported = version
                log.error(
                    "the users file changed and cannot be used, keeping the %d users "
                    "read before: %s",
                    len(self.users),
                    exc.message,
                )
            return self.users
        if users is not self.users:
            self._reported = None
            log.info("users file reloaded: %d users", len(users))
            self.users = users
        return users
