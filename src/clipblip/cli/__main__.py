"""`python -m clipblip.cli ...`, the same as the `clipblip` command."""

import sys

from . import main

sys.exit(main())
