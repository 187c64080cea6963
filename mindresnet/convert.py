"""``python -m mindresnet.convert``: the command line of :mod:`mindresnet.tools.convert`."""
import sys

from mindresnet.tools.convert import main

if __name__ == "__main__":
    sys.exit(main())
