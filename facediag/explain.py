"""`python -m facediag.explain`: the command of :mod:`facediag.apply.explain`."""

import sys

if __name__ == "__main__":
    from facediag.apply.explain import main

    sys.exit(main())
