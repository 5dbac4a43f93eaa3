"""Who is asking: the user behind a session, as the routes see them."""

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["province_admin", "unit_admin", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
ADMIN_ROLES: frozenset[str] = frozenset({"province_admin", "unit_admin"})


@dataclass(frozen=True)
class Principal:
    """A logged-in user.

    >>> Principal(user_id=1, name="lan", role="viewer", unit_code="01").is_admin
    False
    """

    user_id: int
    name: str
    role: Role
    unit_code: str | None

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    @property
    def is_province_admin(self) -> bool:
        return self.role == "province_admin"
