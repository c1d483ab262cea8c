"""Canonical machine state: every machine reports a mode and an execution state.

Whatever the protocol or controller, edge mapping tables translate native enumerations into
these two, and the platform computes indicators from them only.
"""

from enum import StrEnum


class Mode(StrEnum):
    """Who drives the machine."""

    AUTO = "AUTO"
    SEMI_AUTO = "SEMI_AUTO"
    MDI = "MDI"
    MANUAL = "MANUAL"
    SETUP = "SETUP"
    SERVICE = "SERVICE"
    UNKNOWN = "UNKNOWN"


class Execution(StrEnum):
    """What the machine is doing."""

    EXECUTING = "EXECUTING"
    PAUSED = "PAUSED"
    IDLE = "IDLE"
    FAULT = "FAULT"
    OFF = "OFF"
    NO_DATA = "NO_DATA"


class ControlType(StrEnum):
    """How a piece of equipment is controlled (registry attribute)."""

    CNC = "CNC"
    PLC = "PLC"
    DCS = "DCS"
    ROBOT = "ROBOT"
    MANUAL = "MANUAL"


# Canonical metric names every machine publishes, whatever its protocol.
MODE_METRIC = "State/Mode"
EXECUTION_METRIC = "State/Execution"
# Production counters (monotonic; a drop means the counter was reset).
PART_COUNT_METRIC = "Production/PartCount"  # every part made, good or scrap
SCRAP_COUNT_METRIC = "Production/ScrapCount"
GOOD_COUNT_METRIC = "Production/GoodCount"  # equipment that counts good parts instead
# The gateway's estimate of the device's clock offset (device clock minus gateway clock, in
# milliseconds), in the device's birth and again when it changes; the console shows the latest.
CLOCK_OFFSET_METRIC = "Clock/Offset"
