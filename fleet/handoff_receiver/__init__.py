"""The reference receiver of the hand-off contract (``docs/handoff.md``): ``python -m
fleet.handoff_receiver --dir DIR``. See :mod:`.server`."""
