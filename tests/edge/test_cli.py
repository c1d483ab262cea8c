"""``plantwire edge`` check, cert and discover, run through the edge's own argument parser."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509

from plantwire_edge.cli import add_parser
from plantwire_edge.config import OpcUaDevice, load_config

from .conftest import ua_server


def edge(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="plantwire")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["edge", *argv])
    code: int = args.func(args)
    return code


CONFIG = """
group_id = "ACME"
edge_node_id = "GW1"
[buffer]
path = "state/buffer.db"
[[devices]]
kind = "opcua"
device_id = "CNC-01"
endpoint = "opc.tcp://127.0.0.1:4840"
security_policy = "Basic256Sha256"
security_mode = "SignAndEncrypt"
certificate = "pki/gateway.der"
private_key = "pki/gateway.pem"
[[devices.tags]]
node = "nsu=urn:x;s=CNC-01.Speed"
metric = "Spindle/Speed"
[[devices]]
kind = "modbus"
device_id = "LEG-07"
host = "127.0.0.1"
[[devices.registers]]
metric = "Count"
table = "holding"
address = 0
"""


def test_check_names_missing_files_then_cert_creates_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    assert edge("check", str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}: devices[0].certificate: file not found: {tmp_path / 'pki/gateway.der'}" in err
    assert "plantwire edge cert CONFIG" in err
    assert f"buffer.path: directory does not exist: {tmp_path / 'state'}" in err

    assert edge("cert", str(path)) == 0
    assert "created; application URI urn:plantwire:edge:ACME:GW1" in capsys.readouterr().out
    cert = x509.load_der_x509_certificate((tmp_path / "pki/gateway.der").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:plantwire:edge:ACME:GW1" in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert edge("cert", str(path)) == 0
    assert "kept (still valid)" in capsys.readouterr().out

    (tmp_path / "state").mkdir()
    assert edge("check", str(path)) == 0
    out = capsys.readouterr().out
    assert "OK: group ACME, edge node GW1, 2 devices (1 opcua, 1 modbus), 2 tags" in out
    assert f"buffer {tmp_path / 'state/buffer.db'}" in out


def test_check_reports_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.replace('table = "holding"', 'table = "holdings"'))
    assert edge("check", str(path)) == 2
    assert f"{path}: devices[1].registers[0].table: Input should be" in capsys.readouterr().err


MQTT_CONFIG = """
group_id = "ACME"
edge_node_id = "GW1"
mqtt_url = "mqtt://127.0.0.1:1883"

[[devices]]
kind = "mqtt"
device_id = "WS-01"
topic = "plant/ws-01"
fields = [{ metric = "Production/GoodCount", path = "good" }]

[[devices]]
kind = "mqtt"
device_id = "WS-02"
topic = "plant/ws-02"
interval_s = 10
fields = [{ metric = "Production/GoodCount", path = "good" }]
"""


def test_check_warns_where_liveness_cannot_be_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(MQTT_CONFIG)
    assert edge("check", str(path)) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err  # WS-02 publishes every 10 s: silent for 30 s, it is offline
    assert err[0].startswith(f"{path}: warning: WS-01: liveness cannot be known")


def test_discover_writes_a_config_that_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variables = {
        "SpindleSpeed": (ua.VariantType.Double, 0.0),
        "PartCount": (ua.VariantType.UInt32, 0),
        "MachineOperationMode": (ua.VariantType.Int32, 1),
        "Program": (ua.VariantType.String, "O1000"),
        "Axes": (ua.VariantType.Double, [1.0, 2.0]),
    }

    async def discover() -> None:
        async with ua_server(variables, uri="urn:plantwire:test:discover") as srv:
            out = tmp_path / "found.toml"
            code = await asyncio.to_thread(edge, "discover", srv.endpoint, "-o", str(out))
            assert code == 0

    asyncio.run(discover())
    path = tmp_path / "found.toml"
    text = path.read_text()
    config = load_config(path)
    device = config.devices[0]
    assert isinstance(device, OpcUaDevice) and device.device_id == "Machine"
    assert {(t.node, t.metric, t.datatype) for t in device.tags} == {
        ("nsu=urn:plantwire:test:discover;s=SpindleSpeed", "SpindleSpeed", "Double"),
        ("nsu=urn:plantwire:test:discover;s=PartCount", "PartCount", "UInt32"),
        ("nsu=urn:plantwire:test:discover;s=MachineOperationMode", "MachineOperationMode", "Int32"),
        ("nsu=urn:plantwire:test:discover;s=Program", "Program", "String"),
    }
    assert "# map = one of: opc40501/MachineOperationMode" in text
    assert "#   Machine/Axes  nsu=urn:plantwire:test:discover;s=Axes" in text  # array listed
    assert config.buffer.path == str(tmp_path / "plantwire-edge-buffer.db")
    assert edge("check", str(path)) == 0
    assert "4 tags" in capsys.readouterr().out
