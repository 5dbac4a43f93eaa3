"""Configuration of the counter's buttons, status light and buzzer. The agent's config includes
:class:`ButtonsConfig` as ``buttons:``.

>>> ButtonsConfig(enabled=True, scan_pin="GPIO23").done_pin
'GPIO27'
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

PinName = Annotated[
    int | str,
    Field(description="A gpiozero pin name: BCM number (17), 'GPIO17', 'BOARD11' or 'J8:11'"),
]


class ButtonsConfig(BaseModel):
    """Three buttons wired to ground (internal pull-up), a common-cathode RGB LED, an active buzzer.
    Pins are gpiozero names; the defaults suit the Sohoa counter HAT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="The counter has buttons, a status light and a buzzer")
    scan_pin: PinName = Field(default="GPIO17", description="Scan: open a dossier if none and scan a batch")
    done_pin: PinName = Field(
        default="GPIO27", description="Done: close the dossier (short press); long press cancels it"
    )
    rescan_pin: PinName = Field(default="GPIO22", description="Rescan: scan the last page again and replace it")
    pull_up: bool = Field(default=True, description="Buttons connect the pin to ground (internal pull-up)")
    debounce_s: float = Field(
        default=0.05, ge=0, le=1, description="Edges closer than this to the last accepted press are contact bounce"
    )
    long_press_s: float = Field(default=2.0, gt=0, le=30, description="Holding Done this long cancels the dossier")
    led_red_pin: PinName = Field(default="GPIO5", description="Status light, red")
    led_green_pin: PinName = Field(default="GPIO6", description="Status light, green")
    led_blue_pin: PinName = Field(default="GPIO13", description="Status light, blue")
    led_active_high: bool = Field(default=True, description="True for a common-cathode LED, False for common-anode")
    led_pwm: bool = Field(default=False, description="Drive the LED with PWM (only full on/off colours are used)")
    buzzer_pin: PinName | None = Field(default="GPIO19", description="Active buzzer; null when the box has none")
    buzzer_active_high: bool = Field(default=True, description="The buzzer sounds when its pin is high")
    feedback_time_scale: float = Field(
        default=1.0, gt=0, le=10, description="Multiplies every light and buzzer pattern's timing (tests use 0.05)"
    )

    @model_validator(mode="after")
    def _distinct_pins(self) -> ButtonsConfig:
        pins = [self.scan_pin, self.done_pin, self.rescan_pin, self.led_red_pin, self.led_green_pin,
                self.led_blue_pin, self.buzzer_pin]
        names = [_normal(p) for p in pins if p is not None]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"pins used twice: {', '.join(duplicates)}")
        return self


def _normal(pin: int | str) -> str:
    """'GPIO17', 17 and 'BCM17' are the same pin."""
    text = str(pin).strip().upper()
    for prefix in ("GPIO", "BCM"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return str(int(text[len(prefix):]))
    return str(int(text)) if text.isdigit() else text
