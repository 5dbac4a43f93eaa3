"""The MQTT topic tree: ``sohoa/v1/<device_id>/<channel>``.

Topics carry only the device id and the channel, never personal data (a dossier code or a
citizen's id belongs in the payload, which is authenticated and can be encrypted).

>>> topic("kiosk-0001", Channel.EVENT)
'sohoa/v1/kiosk-0001/event'
>>> parse_topic("sohoa/v1/kiosk-0001/cmd/ack")
('kiosk-0001', <Channel.CMD_ACK: 'cmd/ack'>)
"""

import re
from enum import StrEnum

from protocol.errors import ProtocolError

ROOT = "sohoa/v1"
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class Channel(StrEnum):
    """What a topic carries, and who publishes it."""

    STATUS = "status"  # device -> fleet, retained, Last Will "offline"
    TELEMETRY = "telemetry"  # device -> fleet, periodic health
    EVENT = "event"  # device -> fleet, things that happened (pages, faults), QoS 1
    CMD = "cmd"  # fleet -> device, commands with ids and deadlines
    CMD_ACK = "cmd/ack"  # device -> fleet, command state changes
    CONFIG_DESIRED = "config/desired"  # fleet -> device, retained, versioned settings
    CONFIG_REPORTED = "config/reported"  # device -> fleet, settings the device runs
    UPDATE = "update"  # device -> fleet, update progress
    STORED = "stored"  # fleet -> device, ids of messages committed to the fleet's database
    OPERATORS = "operators"  # fleet -> device, retained, the unit's counter operators (hashed secrets)


DEVICE_TO_FLEET = frozenset(
    {Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_ACK, Channel.CONFIG_REPORTED, Channel.UPDATE}
)
FLEET_TO_DEVICE = frozenset({Channel.CMD, Channel.CONFIG_DESIRED, Channel.STORED, Channel.OPERATORS})
CONFIRMED = frozenset({Channel.EVENT, Channel.CMD_ACK, Channel.CONFIG_REPORTED, Channel.UPDATE})
"""What a device sends from its outbox, and the fleet confirms on ``stored`` once committed."""


def is_valid_device_id(device_id: str) -> bool:
    """Lower-case letters, digits and dashes, 3 to 64 characters: safe in topics, paths and URLs."""
    return bool(_DEVICE_ID.match(device_id))


def topic(device_id: str, channel: Channel) -> str:
    """The topic a device's message on ``channel`` goes to."""
    if not is_valid_device_id(device_id):
        raise ValueError(f"not a valid device id: {device_id!r}")
    return f"{ROOT}/{device_id}/{channel.value}"


def device_filter(device_id: str = "+") -> str:
    """Subscription filter for every channel of one device (or all devices with ``+``)."""
    return f"{ROOT}/{device_id}/#"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"


def parse_topic(name: str) -> tuple[str, Channel]:
    """Split a topic into device id and channel; :class:`ProtocolError` for anything else."""
    prefix = ROOT + "/"
    if not name.startswith(prefix):
        raise ProtocolError("unknown_topic", "outside the sohoa/v1 tree")
    device_id, _, rest = name[len(prefix) :].partition("/")
    if not is_valid_device_id(device_id):
        raise ProtocolError("unknown_topic", "bad device id in topic")
    try:
        return device_id, Channel(rest)
    except ValueError:
        raise ProtocolError("unknown_topic", f"unknown channel {rest[:40]!r}") from None
