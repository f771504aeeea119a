"""Who runs an exposed server, and whom to tell: PTR (forward-confirmed), RDAP, ASN,
security.txt, cloud providers and the local contacts table, each fact with its source and time;
the owner, best contact and confidence are a pure function of the facts (owner.decide)."""

from pacswatch.attribution.facts import Fact
from pacswatch.attribution.local import LocalOwner
from pacswatch.attribution.owner import Attribution, Contact, decide

__all__ = ["Attribution", "Contact", "Fact", "LocalOwner", "decide"]
