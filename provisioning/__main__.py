"""``python -m provisioning``."""

from provisioning.cli import main

raise SystemExit(main())
