"""``python -m robustdml.cli``: the same as the ``robustdml`` command."""

import sys

from robustdml.cli import main

sys.exit(main())
