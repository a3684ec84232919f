"""User-facing errors.

A :class:`UserError` is a mistake of the user's (bad checkpoint, bad config, bad flag, bad IR): the CLI
prints its message on one line and exits with code 2, never a traceback. It lives on the ground floor
so that every layer above (frontends, passes, backends, the CLI) can raise it.
"""

from __future__ import annotations


class UserError(Exception):
    """A user's mistake, reported as one line (``mmfc: error: <message>``) and exit code 2."""


class CheckpointError(UserError):
    """A checkpoint directory that cannot be loaded; the message names the file, tensor or key."""


class ConfigError(UserError):
    """A config value mmfc cannot honour; the message names the key path and the value."""
