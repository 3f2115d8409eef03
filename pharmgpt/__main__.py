"""`python -m pharmgpt`: the `pharmgpt` command with this interpreter (subprocesses use it)."""

import sys

from pharmgpt.cli import main

if __name__ == "__main__":
    sys.exit(main())
