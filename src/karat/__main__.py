import sys

from karat.cli import main

sys.exit(main())
