"""`python -m fastreg` is the `fastreg` command."""

import sys

from fastreg.cli import main

sys.exit(main())
