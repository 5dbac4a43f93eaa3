"""Alerts: conditions a province's IT admins must act on (a device offline, a scanner jammed,
a disk nearly full, an outbox backlog growing, too many rejected pages, a unit behind its target
pace), kept as open -> acknowledged -> resolved records, evaluated periodically and sent to a
webhook."""
