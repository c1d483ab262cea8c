"""Legacy machine behind Modbus TCP: a fixed register map with period-typical encodings.

Addresses are 0-based; 32-bit values take two registers whose order follows the machine's
``word_order`` (``big``: high word first) and whose bytes are swapped within each register
when ``byte_order`` is ``little``. Native values are what is on the wire (raw integers, float32
values exactly as stored), so a reader applying the documented scale gets the same numbers.

=============== ======== ===== ======= ==================================================
tag             table    addr  type    meaning
=============== ======== ===== ======= ==================================================
ModeWord        holding  0     uint16  plantwire/ModeCode (255: unknown)
ExecutionWord   holding  1     uint16  plantwire/ExecutionCode
StatusWord      holding  2     uint16  bit 0 running, bit 1 alarm, bit 2 automatic
PartCounter     holding  10    uint32  parts made
ScrapCounter    holding  12    uint32  parts scrapped
MotorSpeed      holding  20    uint16  rpm
Temperature     holding  21    int16   0.1 degC (32767: sensor break)
PowerActive     holding  22    float32 kW
AlarmCode       holding  30    uint16  0: no alarm
MotorCurrent    input    0     uint16  0.01 A
OilPressure     input    2     float32 bar
RunBit          discrete 0     bool    cycle running
AlarmBit        discrete 1     bool    alarm pending
RemoteEnable    coil     0     bool    remote operation enabled (always on)
=============== ======== ===== ======= ==================================================
"""

from __future__ import annotations

import math
import random
import struct

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, Execution, Mode

from .native import EXECUTION_CODE, MODE_CODE, Alarm, Snapshot, TagSpec, TagValue
from .params import LegacyParams

TABLE_SIZES = {"holding": 32, "input": 4, "coil": 16, "discrete": 16}
"""Registers (holding/input) or bits (coil/discrete) each table holds."""
_UINT32 = 2**32

ALARMS: tuple[Alarm, ...] = (
    Alarm(11, 600, "Motor overtemperature"),
    Alarm(12, 800, "Lubrication pressure low"),
    Alarm(21, 400, "Guard door open"),
    Alarm(31, 900, "Emergency stop"),
)

TAGS: tuple[TagSpec, ...] = (
    TagSpec(
        "ModeWord",
        int,
        MODE_METRIC,
        "String",
        map="plantwire/ModeCode",
        core=True,
        table="holding",
        address=0,
        type="uint16",
    ),
    TagSpec(
        "ExecutionWord",
        int,
        EXECUTION_METRIC,
        "String",
        map="plantwire/ExecutionCode",
        core=True,
        table="holding",
        address=1,
        type="uint16",
    ),
    TagSpec("StatusWord", int, "Status/Word", "UInt16", table="holding", address=2, type="uint16"),
    TagSpec(
        "PartCounter",
        int,
        "Production/PartCount",
        "UInt32",
        core=True,
        table="holding",
        address=10,
        type="uint32",
    ),
    TagSpec(
        "ScrapCounter",
        int,
        "Production/ScrapCount",
        "UInt32",
        core=True,
        table="holding",
        address=12,
        type="uint32",
    ),
    TagSpec(
        "MotorSpeed",
        int,
        "Motor/Speed",
        "UInt16",
        analog=True,
        table="holding",
        address=20,
        type="uint16",
        absurd=65535,
    ),
    TagSpec(
        "Temperature",
        int,
        "Machine/Temperature",
        "Double",
        analog=True,
        table="holding",
        address=21,
        type="int16",
        scale=0.1,
        absurd=32767,
    ),
    TagSpec(
        "PowerActive",
        float,
        "Energy/ActivePower",
        "Float",
        core=True,
        analog=True,
        table="holding",
        address=22,
        type="float32",
        absurd=3.0e38,
    ),
    TagSpec("AlarmCode", int, "Alarm/Code", "UInt16", table="holding", address=30, type="uint16"),
    TagSpec(
        "MotorCurrent",
        int,
        "Motor/Current",
        "Double",
        analog=True,
        table="input",
        address=0,
        type="uint16",
        scale=0.01,
        absurd=65535,
    ),
    TagSpec(
        "OilPressure",
        float,
        "Hydraulic/Pressure",
        "Float",
        analog=True,
        table="input",
        address=2,
        type="float32",
        absurd=-3.0e38,
    ),
    TagSpec(
        "RunBit",
        bool,
        "Status/Running",
        "Boolean",
        core=True,
        table="discrete",
        address=0,
        type="bool",
    ),
    TagSpec("AlarmBit", bool, "Alarm/Active", "Boolean", table="discrete", address=1, type="bool"),
    TagSpec(
        "RemoteEnable",
        bool,
        "Control/RemoteEnable",
        "Boolean",
        table="coil",
        address=0,
        type="bool",
    ),
)


def float32(value: float) -> float:
    """``value`` rounded to the nearest IEEE 754 single, as a register pair stores it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def encode(spec: TagSpec, value: TagValue, word_order: str, byte_order: str) -> list[int]:
    """The 16-bit registers holding ``value`` (not for bit tables)."""
    if spec.type == "float32":
        raw = struct.pack(">f", float(value))
    elif spec.type in ("uint32", "int32"):
        raw = (int(value) % _UINT32).to_bytes(4, "big")
    else:
        raw = (int(value) % 65536).to_bytes(2, "big")
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


class RegisterImage:
    """The four Modbus tables of one machine as 16-bit words (bits packed LSB first)."""

    def __init__(self, word_order: str, byte_order: str) -> None:
        self.word_order = word_order
        self.byte_order = byte_order
        self.tables: dict[str, list[int]] = {
            name: [0] * (size if name in ("holding", "input") else (size + 15) // 16)
            for name, size in TABLE_SIZES.items()
        }

    def set(self, spec: TagSpec, value: TagValue) -> None:
        words = self.tables[spec.table]
        if spec.type == "bool":
            word, bit = divmod(spec.address, 16)
            words[word] = words[word] | (1 << bit) if value else words[word] & ~(1 << bit)
            return
        regs = encode(spec, value, self.word_order, self.byte_order)
        words[spec.address : spec.address + len(regs)] = regs


class LegacyProfile:
    name = "legacy"
    alarms = ALARMS
    tags = TAGS

    def __init__(self, params: LegacyParams) -> None:
        self.params = params

    def samples(self, execution: Execution) -> bool:
        return execution is Execution.EXECUTING

    def renderer(self, noise: random.Random) -> LegacyRenderer:
        return LegacyRenderer(self.params, noise)


class LegacyRenderer:
    def __init__(self, params: LegacyParams, noise: random.Random) -> None:
        self.params = params
        self.noise = noise
        self.analog: dict[str, TagValue] = {
            "MotorSpeed": 0,
            "Temperature": 240,
            "PowerActive": 0.0,
            "MotorCurrent": 0,
            "OilPressure": 0.0,
        }

    def render(self, snap: Snapshot) -> dict[str, TagValue]:
        p = self.params
        executing = snap.execution is Execution.EXECUTING
        status = executing | (snap.alarm is not None) << 1 | (snap.mode is Mode.AUTO) << 2
        values: dict[str, TagValue] = {
            "ModeWord": MODE_CODE[snap.mode],
            "ExecutionWord": EXECUTION_CODE[snap.execution],
            "StatusWord": status,
            "PartCounter": snap.parts % _UINT32,
            "ScrapCounter": snap.scrap % _UINT32,
            "AlarmCode": snap.alarm.code if snap.alarm else 0,
            "RunBit": executing,
            "AlarmBit": snap.alarm is not None,
            "RemoteEnable": True,
        }
        a = self.analog
        if executing:
            rng = self.noise
            power = p.power_kw * rng.uniform(0.85, 1.05)
            a["MotorSpeed"] = min(65535, round(p.motor_rpm * rng.uniform(0.97, 1.01)))
            a["Temperature"] = round(p.temperature_c * rng.uniform(0.97, 1.03) * 10)
            a["PowerActive"] = float32(power)
            current = power * 1000 / (400 * math.sqrt(3) * 0.85)
            a["MotorCurrent"] = min(65535, round(current * 100))
            a["OilPressure"] = float32(rng.uniform(55.0, 65.0))
        else:
            a["MotorSpeed"] = 0
            a["MotorCurrent"] = 0
            off = snap.execution is Execution.OFF
            a["PowerActive"] = 0.0 if off else float32(p.power_kw * 0.1)
            a["OilPressure"] = 0.0 if off else a["OilPressure"]
        values.update(a)
        return values
