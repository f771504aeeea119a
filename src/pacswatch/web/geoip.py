"""Countries of addresses from a MaxMind-format database (`serve --geoip FILE.mmdb`, e.g.
GeoLite2-Country or DB-IP's country lite database), for the overview's table of countries.

Read locally with the `maxminddb` reader: no address is sent anywhere to be located.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class GeoIpError(ValueError):
    """A GeoIP database that cannot be read, said in a sentence."""


class CountryReader:
    def __init__(self, path: Path) -> None:
        import maxminddb
        from maxminddb.errors import InvalidDatabaseError

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, InvalidDatabaseError, ValueError) as exc:
            raise GeoIpError(f"cannot read the GeoIP database {path}: {exc}") from None
        self.path = path
        self.kind = str(self._reader.metadata().database_type)

    def country_of(self, ip: str) -> str | None:
        """The ISO 3166 code of the country of `ip` (where it is, else where it is registered),
        or None when the database does not know it."""
        try:
            record: Any = self._reader.get(ip)
        except ValueError:  # not an address, or IPv6 in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            place = record.get(key)
            if isinstance(place, dict) and isinstance(place.get("iso_code"), str):
                return place["iso_code"][:8]
        return None

    def close(self) -> None:
        self._reader.close()
