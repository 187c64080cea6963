"""``python -m mindresnet.export``: the command line of :mod:`mindresnet.tools.export`."""
import sys

from mindresnet.tools.export import main

if __name__ == "__main__":
    sys.exit(main())
