"""Counter buttons, status light and buzzer (gpiozero). Importing this package touches no pin:
gpiozero is imported when a :class:`StatusPanel` or :class:`CounterButtons` is made."""

from device.buttons.config import ButtonsConfig
from device.buttons.controller import CounterButtons
from device.buttons.feedback import StatusPanel

__all__ = ["ButtonsConfig", "CounterButtons", "StatusPanel"]
