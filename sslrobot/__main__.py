"""``python -m sslrobot`` runs the CLI."""

import sys

from sslrobot.cli import main

sys.exit(main())
