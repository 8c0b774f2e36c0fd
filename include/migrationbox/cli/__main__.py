import sys

from migrationbox.cli import main

sys.exit(main())
