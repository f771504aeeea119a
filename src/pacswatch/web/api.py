"""/api/v1: findings, endpoints, cases and scans as JSON, for a bearer token."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["api"])
