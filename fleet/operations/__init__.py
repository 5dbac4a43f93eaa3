"""Fleet operations: desired settings per fleet, unit and device; remote commands with
deadlines and acknowledged states; signed update bundles rolled out in phases.

``models`` holds the tables; ``service`` the MQTT side (retained ``config/desired``, ``cmd``
out; ``cmd/ack``, ``config/reported``, ``update``, ``status`` in, through a hook in the ingest
writer) and the rollout driver; ``settings``, ``commands``, ``bundles`` and ``rollouts`` what the
API does (their routes: the modules of the same names in ``fleet/api/routes/``)."""
