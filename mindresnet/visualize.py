"""``python -m mindresnet.visualize``: the command line of :mod:`mindresnet.tools.visualize`."""
import sys

from mindresnet.tools.visualize import main

if __name__ == "__main__":
    sys.exit(main())
