import sys

from coreline_verify.cli import main

sys.exit(main())
