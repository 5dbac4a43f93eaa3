"""How what the device makes reaches the fleet, and nothing is lost on the way.

* :mod:`~device.delivery.outbox`: store and forward; every page file and message is on disk
  (fsynced) before a capture counts, and leaves only when the other side holds it.
* :mod:`~device.delivery.page_event`: the one builder of the ``page_captured`` event.
* :mod:`~device.delivery.publisher`: outbox messages to the broker, QoS 1, a window of
  unacknowledged ones, forgotten on PUBACK.
* :mod:`~device.delivery.link`: the MQTT connection (TLS with the device's certificate, Last Will).
* :mod:`~device.delivery.uploader`: page files over HTTP to the fleet, forgotten on 200/201.
* :mod:`~device.delivery.held`: the open dossier's pages held on disk until it closes.
"""
