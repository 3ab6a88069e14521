import sys

from mmcourse.cli import main

sys.exit(main())
