"""`python -m pacswatch.cli ...`, as the `pacswatch` command."""

import sys

from pacswatch.cli import main

sys.exit(main())
