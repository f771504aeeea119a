"""The public pages in a real Chromium: the verify link a real notice carried starts a real
rescan (a `pacswatch scan` process) and shows, for that case's services only, which still
answer; an opt-out request is confirmed through the link mailed to the network's known contact
(aiosmtpd on loopback) and becomes an entry of the opt-out list; no public page shows a finding.
"""

from __future__ import annotations

import re
import time

import pytest
from .browser_world import CONTACT, NET, shot

from pacswatch.store.repository import Repository

pytestmark = pytest.mark.slow
LINK = re.compile(r"http://127\.0\.0\.1:\d+/\S+")


def _links(message, path: str) -> list[str]:
    body = message.get_body(("plain",)).get_content()
    return [u for u in LINK.findall(body) if f"/{path}/" in u]


def _wait_for_mail(smtp, count: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while len(smtp.received) < count:
        assert time.monotonic() < deadline, f"{len(smtp.received)} mails, wanted {count}"
        time.sleep(0.05)
    return smtp.received[count - 1]


def test_the_verify_link_of_a_notice_rescans_the_case_and_shows_each_service(world, page_of):
    notice = _wait_for_mail(world.smtp, 1)
    assert notice.rcpt_tos == [CONTACT]
    (link,) = _links(notice.message, "verify")
    page = page_of(None)  # the owner: no login
    page.goto(link)
    page.wait_for_selector("#verify-outcome[data-done=yes]", timeout=60_000)  # htmx polls until the rescan ends
    rows = {r.locator("td").nth(0).inner_text(): r.locator(".verify-state").inner_text()
            for r in page.locator("#verify-results tbody tr").all()}
    # The lab's PACS still answers; nothing listens at the other address any more.
    assert rows[world.lab_endpoint] == "still exposed"
    assert rows[world.closed_endpoint] == "closed"
    # That case's services only: no other finding, no product, no count of studies or patients.
    text = page.locator("main").inner_text()
    assert "127.65." not in text and "Orthanc" not in text and "studies" not in text.lower()
    shot(page, "verify")
    # Opened again at once: the same look, not a second scan.
    page.goto(link)
    page.wait_for_selector("#verify-outcome[data-done=yes]")
    assert page.locator("#verify-results tbody tr").count() == len(rows)
    from sqlalchemy import func, select

    from pacswatch.store.web_public_tables import verify_checks

    with Repository.open(world.settings.database_url) as repo, repo.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(verify_checks)).scalar() == 1


def test_a_verify_link_that_was_tampered_with_is_refused(world, page_of):
    (link,) = _links(_wait_for_mail(world.smtp, 1).message, "verify")
    case, expiry, signature = link.rsplit("/", 1)[1].split(".")
    page = page_of(None)
    answer = page.goto(link.rsplit("/", 1)[0] + f"/{int(case) + 1}.{expiry}.{signature}")
    assert answer is not None and answer.status == 403
    assert "not one of ours" in page.locator("main").inner_text()


def test_an_opt_out_is_confirmed_through_the_link_mailed_to_the_known_contact(world, page_of):
    _wait_for_mail(world.smtp, 1)  # the notice
    requester = page_of(None)
    requester.goto("/optout")
    shot(requester, "optout-form")
    network = f"{NET}.128/25"
    requester.fill("input[name=network]", network)
    requester.fill("input[name=requester]", "someone@example.net")
    requester.click("#optout-form button[type=submit]")
    requester.wait_for_selector("#optout-sent")
    # A network we know no contact for gets the same answer (which networks we know is not told).
    requester.goto("/optout")
    requester.fill("input[name=network]", "127.99.0.0/24")
    requester.click("#optout-form button[type=submit]")
    requester.wait_for_selector("#optout-sent")

    mail = _wait_for_mail(world.smtp, 2)
    assert mail.rcpt_tos == [CONTACT]  # the owner's contact, not the address typed in the form
    assert len(world.smtp.received) == 2
    (link,) = _links(mail.message, "optout/confirm")

    # Before confirmation the analyst sees it pending, and the list is empty.
    analyst = page_of("ana")
    analyst.goto("/optouts")
    assert analyst.locator(f"#optout-requests tr[data-state=pending] >> text={network}").count() == 1
    assert analyst.locator("#optout-requests tr[data-state=no-contact] >> text=127.99.0.0/24").count() == 1
    assert analyst.locator("#optout-entries").count() == 0

    owner = page_of(None)
    owner.goto(link)
    shot(owner, "optout-confirm")
    owner.click("#confirm-optout")
    owner.wait_for_selector("#optout-confirmed")

    analyst.goto("/optouts")
    shot(analyst, "optouts")
    entry = analyst.locator("#optout-entries tbody tr")
    assert entry.count() == 1 and network in entry.inner_text() and CONTACT in entry.inner_text()
    assert analyst.locator(f"#optout-requests tr[data-state=confirmed] >> text={network}").count() == 1
    # The same function as `pacswatch optout add`: the list every scan and notice reads.
    with Repository.open(world.settings.database_url) as repo:
        assert [(e["cidr"], e["contact"]) for e in repo.optouts()] == [(network, CONTACT)]


def test_public_pages_show_no_finding_and_analyst_pages_need_a_login(world, page_of):
    page = page_of(None)
    for path in ("/about", "/optout"):
        page.goto(path)
        text = page.content()
        for marker in ("127.65.", NET + ".", "Orthanc", "DCMTK", "Evil", "Lab Hospital"):
            assert marker not in text, (path, marker)
        shot(page, path.strip("/"))
    page.goto("/about")
    identity = page.locator("#identity").inner_text()
    assert "PACSWATCH" in identity and "pacswatch/" in identity  # the calling AE title, the User-Agent
    assert page.locator("#addresses").inner_text() == "192.0.2.0/28, 2001:db8::/64"  # [web] scanner_addresses
    assert "Example CERT" in page.locator("#organisation").inner_text()
    for path in ("/findings", "/cases", f"/cases/{world.case_id}", "/scans", "/owners", "/optouts", "/"):
        page.goto(path)
        assert "/login" in page.url, path
