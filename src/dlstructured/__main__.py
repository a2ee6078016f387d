"""``python -m dlstructured``: the same as the ``dlstructured`` command."""

import sys

from dlstructured.cli import main

if __name__ == "__main__":
    sys.exit(main())
