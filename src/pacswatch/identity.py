"""How the scanner announces itself (docs/design.md: honest identity). All of it is configurable."""

from __future__ import annotations

from dataclasses import dataclass

from pacswatch import __version__

# A UID under 2.25 (derived from a UUID, PS3.5 B.2) that names pacswatch itself, so a server's
# log shows which tool called; it never pretends to be another product's implementation.
PACSWATCH_IMPLEMENTATION_UID = "2.25.204395695027342872693609202859394366001"
PACSWATCH_VERSION_NAME = "PACSWATCH_" + __version__.replace(".", "")[:6]
DEFAULT_CONTACT_URL = "https://github.com/pacswatch/pacswatch#for-server-owners"


@dataclass(frozen=True)
class Identity:
    calling_ae: str = "PACSWATCH"
    implementation_class_uid: str = PACSWATCH_IMPLEMENTATION_UID
    implementation_version_name: str = PACSWATCH_VERSION_NAME
    contact_url: str = DEFAULT_CONTACT_URL

    @property
    def user_agent(self) -> str:
        return f"pacswatch/{__version__} (security research scanner; +{self.contact_url})"

    def __post_init__(self) -> None:
        if not 1 <= len(self.calling_ae.strip()) <= 16:
            raise ValueError("calling AE title must be 1-16 characters and not all spaces")
        if not 1 <= len(self.implementation_version_name) <= 16:
            raise ValueError("implementation version name must be 1-16 characters")
