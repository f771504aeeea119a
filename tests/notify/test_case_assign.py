"""Services put into cases in one transaction (NotifyStore.assign_many, used by sync_cases after
every scan): new members, moves between cases and unchanged ones, as assign() decides one."""

from __future__ import annotations

from datetime import datetime, timezone

from pacswatch.notify import cases as C
from pacswatch.notify.store import NotifyStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_assign_many_adds_moves_and_skips_what_is_already_there(engine):
    store = NotifyStore(engine)
    first = store.create_case(*C.open_case("local:1", "Example Hospital", T0))
    second = store.create_case(*C.open_case("local:2", "Example Clinic", T0))
    assert store.assign_many([("192.0.2.1", 104, first.id), ("192.0.2.2", 104, first.id)], T0) == 2
    # One unchanged, one moved to the other case, one new: two changes.
    changed = store.assign_many([("192.0.2.1", 104, first.id), ("192.0.2.2", 104, second.id),
                                 ("192.0.2.3", 11112, second.id)], T0)
    assert changed == 2
    assert store.services_of(first.id) == [("192.0.2.1", 104)]
    assert store.services_of(second.id) == [("192.0.2.2", 104), ("192.0.2.3", 11112)]
    assert store.assign("192.0.2.3", 11112, second.id, T0) is False  # the one-service form agrees
    assert store.assign_many([], T0) == 0


def test_assign_many_applies_its_services_in_order_as_assign_one_by_one_would(engine):
    """A service named twice in one call (added, then moved): it ends where the last names it,
    and both count, as two assign() calls would; services_by_case agrees with services_of."""
    store = NotifyStore(engine)
    first, second = store.create_cases([C.open_case("local:1", "Example Hospital", T0),
                                        C.open_case("local:2", "Example Clinic", T0)])
    assert (first.owner_key, second.owner_key) == ("local:1", "local:2") and first.id < second.id
    assert store.assign_many([("192.0.2.9", 104, first.id), ("192.0.2.9", 104, second.id),
                              ("192.0.2.8", 104, first.id)], T0) == 3
    assert store.assign_many([("192.0.2.8", 104, second.id), ("192.0.2.8", 104, first.id)], T0) == 2
    assert store.services_by_case() == {first.id: [("192.0.2.8", 104)], second.id: [("192.0.2.9", 104)]}
    assert store.services_of(second.id) == [("192.0.2.9", 104)]
