"""``python -m mmcourse ...`` is the ``mmcourse`` command (:mod:`mmcourse.tools.cli`)."""
import sys

from mmcourse.tools.cli import main

sys.exit(main())
