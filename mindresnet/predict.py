"""``python -m mindresnet.predict``: the command line of :mod:`mindresnet.tools.predict`."""
import sys

from mindresnet.tools.predict import main

if __name__ == "__main__":
    sys.exit(main())
