"""`python -m scnode_lab`."""

import sys

from scnode_lab.cli import main

sys.exit(main())
