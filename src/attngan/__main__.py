"""``python -m attngan`` (and ``torchrun -m attngan``): the ``attngan`` command."""

import sys

from attngan.cli import main

sys.exit(main())
