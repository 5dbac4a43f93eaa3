"""The ``auth:`` section of the fleet's config file.

>>> AuthConfig().session_ttl_s
28800.0
>>> AuthConfig.model_validate({"login_max_failures": 3}).login_window_s
900.0
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AuthConfig(BaseModel):
    """Sessions, login rate limit, and where the first admin's password is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_ttl_s: float = Field(
        default=8 * 3600.0, gt=0, le=30 * 24 * 3600, description="A session expires this long after login"
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=1000,
        description="Failed logins for one name from one address within the window before logins are refused (429)",
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, le=100_000,
        description="Failed logins from one address, whatever the names tried, within the window before that "
                    "address is refused (429)",
    )
    login_max_failures_per_name: int = Field(
        default=20, ge=1, le=100_000,
        description="Failed logins for one name, from whatever addresses, within the window before that name is "
                    "refused (429; the right password too, until the window moves on)",
    )
    login_window_s: float = Field(
        default=15 * 60.0, gt=0, le=24 * 3600, description="The window over which failed logins are counted"
    )
    min_password_length: int = Field(default=10, ge=8, le=128, description="Shortest password a user may set")
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set it when the fleet is served over HTTPS)"
    )
    initial_admin_file: Path = Field(
        default=Path("var/fleet/initial-admin-password"),
        description="`serve` with no user at all creates `admin` with a random password written here (mode 0600)",
    )
