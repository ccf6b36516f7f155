"""The ``tailrace`` command line: one entry point, one module per command.

Exit codes: 0 success, 1 an error from the broker or the data, 2 usage.
Errors are one line on stderr, without a traceback unless ``--debug``.
"""

from .main import main

__all__ = ["main"]
