"""``python -m mmsag_ros.cli`` is the same as the ``mmsag`` command."""

import sys

from mmsag_ros.cli import main

sys.exit(main())
