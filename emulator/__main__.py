"""`python -m emulator` is `krun-emulator`."""

import sys

from emulator.cli import main

sys.exit(main())
