import sys

from simtune.cli import main

sys.exit(main())
