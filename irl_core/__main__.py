import sys

from irl_core.cli import main

sys.exit(main())
