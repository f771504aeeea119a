"""Cases in a real Chromium: an analyst acknowledges a case, notes a reply, sends a follow-up and
an escalation now (through the outbox to aiosmtpd), each an event with their name; a viewer
cannot change a case; a POST without the CSRF token is refused; the owner name a registry could
have sent with markup and a script is shown as text."""

from __future__ import annotations

import time

import pytest
from .browser_world import CONTACT, shot

pytestmark = pytest.mark.slow


def _history(page) -> str:
    return page.locator("#case-history").inner_text()


def _mails(smtp, count: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while len(smtp.received) < count:
        assert time.monotonic() < deadline, f"{len(smtp.received)} mails, wanted {count}"
        time.sleep(0.05)
    return smtp.received


def test_an_analyst_acknowledges_notes_a_reply_and_sends_now(world, page_of):
    page = page_of("ana")
    page.goto("/cases")
    shot(page, "cases")
    page.click(f"#cases a[href='/cases/{world.case_id}'] >> nth=0")
    page.wait_for_url(f"**/cases/{world.case_id}")
    assert page.locator("#case-state").inner_text() == "notified"
    # The notice the notify pass sent, as it was sent (the outbox's bytes, shown as text).
    page.locator("details.message summary").first.click()
    assert "/verify/" in page.locator("pre.mail").first.inner_text()
    assert CONTACT in page.locator("#case-contacts").inner_text()
    shot(page, "case")

    page.fill("input[name=note]", "they are on it <b>today</b>")
    page.click("#acknowledge")
    page.wait_for_selector("#case-state:text('acknowledged')")
    history = _history(page)
    assert "notified → acknowledged" in history and "owner acknowledged: they are on it <b>today</b>" in history
    assert "(by ana, dashboard)" in history

    page.fill("input[name=reply]", "firewall change scheduled for Friday")
    page.click("#note-reply")
    page.wait_for_selector("#case-history >> text=reply noted: firewall change scheduled for Friday (by ana, dashboard)")

    page.click("#send-followup")
    page.wait_for_selector("#case-history >> text=asked for the followup")
    received = _mails(world.smtp, 2)
    assert received[1].rcpt_tos == [CONTACT]
    assert "sent" in _history(page)
    page.click("#escalate")
    page.wait_for_selector("#case-history >> text=asked for the escalation")
    received = _mails(world.smtp, 3)
    assert received[2].rcpt_tos == ["abuse@isp.example.net"]  # the owner entry's escalation route
    # A second escalation is the same message: refused, not sent twice.
    answer = page.request.post(f"/cases/{world.case_id}/send", form={"kind": "escalation", "csrf_token": _csrf(page)})
    assert answer.status == 409 and "already queued or sent" in answer.text()
    assert len(world.smtp.received) == 3


def _csrf(page) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value") or ""


def test_a_viewer_cannot_change_a_case(world, page_of):
    page = page_of("vic")
    page.goto(f"/cases/{world.case_id}")
    assert page.locator("#read-only").count() == 1
    assert page.locator("#acknowledge, #close, #send-followup, #escalate, #note-reply").count() == 0
    shot(page, "case-viewer")
    # Even with a valid CSRF token (the one htmx sends), the server refuses: 403.
    status = page.evaluate("""async (url) => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
        const r = await fetch(url, {method: 'POST', headers: {'X-CSRF-Token': token,
            'Content-Type': 'application/x-www-form-urlencoded'}, body: 'note=sneaky'});
        return r.status; }""", f"/cases/{world.case_id}/acknowledge")
    assert status == 403
    page.reload()
    assert page.locator("#case-state").inner_text() == "notified"


def test_a_post_without_the_csrf_token_is_refused(world, page_of):
    page = page_of("ana")
    page.goto(f"/cases/{world.case_id}")
    for path, form in ((f"/cases/{world.case_id}/close", {"why": "forged"}),
                       (f"/cases/{world.case_id}/acknowledge", {"note": "forged"}),
                       ("/optouts", {"network": "127.66.250.0/24", "contact": "x"}),
                       ("/optout", {"network": "127.66.250.0/24"})):
        answer = page.request.post(path, form=form)
        assert answer.status == 403, path
        wrong = page.request.post(path, form={**form, "csrf_token": "0" * 64})
        assert wrong.status == 403, path
    page.reload()
    assert page.locator("#case-state").inner_text() == "notified"
    assert "forged" not in _history(page)


def test_markup_from_a_registry_is_shown_as_text(world, page_of):
    page = page_of("ana")
    for path in ("/cases", f"/cases/{world.case_id}", "/owners"):
        page.goto(path)
        main = page.locator("main")
        assert "<script>window.__pwned = 'owner'</script>" in main.inner_text(), path
        assert main.locator("script").count() == 0 and main.locator("b").count() == 0, path
        assert page.evaluate("window.__pwned") is None, path
    shot(page, "owners")
