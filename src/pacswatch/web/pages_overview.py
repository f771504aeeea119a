"""/ : the overview (counts by severity and status, trends, top products, ports and networks)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pacswatch.web.auth import CurrentUser
from pacswatch.web.templating import render

router = APIRouter()


@router.get("/")
def overview(request: Request, user: CurrentUser):
    return render(request, "overview.html", user=user)
