"""``python -m dmt_core`` is the ``dmt`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
