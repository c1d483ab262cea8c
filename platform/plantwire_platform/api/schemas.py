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


class Computations(BaseModel):
    slots: int
    running: int
    waiting: int
    refused: int = Field(description="requests refused (503 busy) since start")
    timed_out: int = Field(description="computations stopped at their deadline since start")


class Health(BaseModel):
    status: str = Field(description="ok or unhealthy")
    database: str = Field(description="ok, or why the database cannot be reached")
    computations: Computations
