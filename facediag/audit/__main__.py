"""`python -m facediag.audit data=folder data.root=<folder>`: see :mod:`facediag.audit.report`."""

from facediag.audit.report import main

if __name__ == "__main__":
    main()
