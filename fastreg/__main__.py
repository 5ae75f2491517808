"""`python -m fastreg` is the `fastreg` command."""

import sys

from fastreg.cli.main import main

sys.exit(main())
