"""`python -m facediag.predict`: the command of :mod:`facediag.apply.predict`."""

import sys

from facediag.core.startup import pause_collection

if __name__ == "__main__":
    pause_collection()  # the command only: until torch is imported (facediag.core.startup)
    from facediag.apply.predict import main

    sys.exit(main())
