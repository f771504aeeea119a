"""`pacswatch demo --serve`: after the demo has scanned its lab, make the database a dashboard
can show: an owner for the lab's network in the local contacts table, the attribution and cases
`pacswatch attribute` makes, and a demo user with a random password. Nothing leaves the machine:
the lab is on loopback, which no public registry is asked about, and no DNS resolver is
configured (attribution/attributor.py), so the local table alone decides."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.engine import Engine

from pacswatch.attribution.local import LocalOwner
from pacswatch.campaign.scope import contact_check
from pacswatch.notify.config import Config
from pacswatch.notify.service import attribute
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository
from pacswatch.web import accounts

DEMO_OWNER = "Demo Hospital (simulated)"
DEMO_CONTACT = "pacs-admin@demo-hospital.example"
DEMO_ESCALATION = "abuse@demo-isp.example"


def prepare(engine: Engine, network: str, now: datetime) -> tuple[str, str]:
    """Owner, attribution, cases and a demo analyst; returns the user's name and password."""
    store = NotifyStore(engine)
    if not any(o.match == network for o in store.owners()):
        store.add_owner(LocalOwner(network, DEMO_OWNER, (DEMO_CONTACT,), escalation=(DEMO_ESCALATION,),
                                   notes="added by pacswatch demo --serve"), now)
    # The defaults: no resolver, no mail; `may_contact` is the campaign's scope check, as always.
    attribute(engine, Config(), may_contact=contact_check(Repository(engine)))
    password = secrets.token_urlsafe(12)
    name = "demo"
    while True:
        try:
            accounts.add_user(engine, name, "analyst", password, now)
            return name, password
        except accounts.AccountError:  # a --database that already has a "demo"
            name = f"demo-{secrets.token_hex(2)}"
