"""``python -m mindresnet.lr_find``: the command line of :mod:`mindresnet.tools.lr_find`."""
import sys

from mindresnet.tools.lr_find import main

if __name__ == "__main__":
    sys.exit(main())
