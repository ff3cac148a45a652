"""``python -m lrpilot``: the command line, as the ``lrpilot`` console script runs it (for an
environment whose scripts folder is not on PATH, or a checkout run with PYTHONPATH)."""

from lrpilot.cli import main

if __name__ == "__main__":
    main()
