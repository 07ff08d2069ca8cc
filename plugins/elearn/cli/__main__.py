"""``python -m elearn.cli``: the same as the ``elearn`` command."""

import sys

from elearn.cli import main

sys.exit(main())
