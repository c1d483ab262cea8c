"""Response bodies of the registry routes of ``/api/v1``; indicator reports are
:mod:`plantwire_platform.indicators.report`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Enterprise(BaseModel):
    id: int
    code: str = Field(description="short code, also the Sparkplug group id")
    uscc: str = Field(description="unified social credit code")
    name: str
    region: str
    sites: int
    equipment: int


class Health(BaseModel):
    status: str
    database: str
