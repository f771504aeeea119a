"""docs/design.md, first rule, on the workflow and public pages: the lab archive the world scanned
holds synthetic patients (lab/data.py), and no case page (with the notice it shows), owners,
opt-outs, scans, about, opt-out or verify answer holds any of their values, while the case page
does show the counts the scan made (so the search can fail)."""

from __future__ import annotations

import re

import pytest

from pacswatch.lab.data import planted_strings

pytestmark = pytest.mark.slow


def test_no_workflow_or_public_page_holds_patient_data(world, page_of):
    notice = world.smtp.received[0].message.get_body(("plain",)).get_content()
    (verify,) = re.findall(r"http://127\.0\.0\.1:\d+(/verify/\S+)", notice)
    analyst = page_of("ana")
    answers = {}
    for path in ("/cases", f"/cases/{world.case_id}", "/owners", "/optouts", "/scans", "/scans/table"):
        answer = analyst.request.get(path)
        assert answer.status == 200, path
        answers[path] = answer.text()
    public = page_of(None)
    for path in ("/about", "/optout", verify):
        public.goto(path)
        answers[path] = public.content()
    public.wait_for_selector("#verify-outcome[data-done=yes]", timeout=60_000)
    answers["verify, done"] = public.content()
    answers["notice"] = notice
    planted = [p for p in planted_strings() if len(p) >= 6]
    leaks = {path: [p for p in planted if p.lower() in text.lower()] for path, text in answers.items()}
    assert not any(leaks.values()), leaks
    # The counts are there: the notice on the case page says what the case's services would show
    # (the lab's archive, 12 studies of 5 patients, and 3 of 2 at each of the two other services).
    assert "would show 18 studies of 9 patients" in " ".join(answers[f"/cases/{world.case_id}"].split())
