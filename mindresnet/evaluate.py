"""``python -m mindresnet.evaluate``: the command line of :mod:`mindresnet.tools.evaluate`."""
import sys

from mindresnet.tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
