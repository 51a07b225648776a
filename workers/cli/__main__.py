"""``python -m workers.cli``: how the supervisor and the launchers start every process."""

import sys

from workers.cli.main import app

sys.exit(app())
