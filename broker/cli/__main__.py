"""``python -m tailrace.broker.cli``: the same as the ``tailrace`` command."""

import sys

from .main import main

sys.exit(main())
