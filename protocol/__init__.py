"""The wire contract between Sohoa devices and the fleet manager.

Both ``device`` and ``fleet`` import this package and nothing else defines topics or
message shapes. Changing a model here changes the contract: regenerate ``docs/protocol.md``
with ``python -m protocol.docs --write`` (a test fails when it is stale). An additive change (a
new optional field) keeps ``SCHEMA_VERSION`` and receivers ignore what they do not know; a breaking
one bumps it (the rules: :mod:`protocol.messages`).
"""

from protocol.errors import ProtocolError
from protocol.messages import SCHEMA_VERSION
from protocol.topics import Channel, parse_topic, topic

__version__ = "0.1.0"

__all__ = ["SCHEMA_VERSION", "Channel", "ProtocolError", "__version__", "parse_topic", "topic"]
