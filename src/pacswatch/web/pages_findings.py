"""/findings, /findings/{id}, /endpoints/{ip}:{port}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pacswatch.web.auth import CurrentUser
from pacswatch.web.templating import render

router = APIRouter()


@router.get("/findings")
def findings_page(request: Request, user: CurrentUser):
    return render(request, "findings.html", user=user)
