"""Gateway config validation: errors name the file, the table and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwire_bus.mqtt import parse_mqtt_url
from plantwire_edge.config import ConfigError, OpcUaDevice, parse_config

GOOD = """
group_id = "ACME"
edge_node_id = "GW1"
mqtt_url = "mqtt://127.0.0.1:1883"

[[devices]]
kind = "opcua"
device_id = "CNC-01"
endpoint = "opc.tcp://127.0.0.1:4840"
[[devices.tags]]
node = "nsu=urn:x;s=CNC-01.SpindleSpeed"
metric = "Spindle/Speed"
datatype = "Double"
[[devices.tags]]
node = "nsu=urn:x;s=CNC-01.Mode"
metric = "State/Mode"
datatype = "String"
map = "opc40501/MachineOperationMode"
"""


def test_good_config() -> None:
    cfg = parse_config(GOOD, "gw.toml")
    device = cfg.devices[0]
    assert isinstance(device, OpcUaDevice)
    assert device.tags[1].map == "opc40501/MachineOperationMode"
    assert cfg.primary_host_id == "plantwire"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "opcua"', 'kind = "modbus2"'), "devices[0]: Input tag 'modbus2'"),
        (
            ('datatype = "Double"', 'datatype = "Dbl"'),
            "devices[0].tags[0].datatype: unknown Sparkplug datatype 'Dbl'",
        ),
        (
            ('map = "opc40501/MachineOperationMode"', 'map = "nope"'),
            "devices[0].tags[1].map: unknown mapping table 'nope'",
        ),
        (
            ("nsu=urn:x;s=CNC-01.SpindleSpeed", "ns=2;s=CNC-01.SpindleSpeed"),
            "devices[0].tags[0].node: address nodes by namespace URI",
        ),
        (('group_id = "ACME"', 'group_id = "AC/ME"'), "group_id: String should match pattern"),
        (
            ('endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoint = "http://x"'),
            "devices[0].endpoint: an OPC UA endpoint is opc.tcp://HOST[:PORT][/path]",
        ),
        (
            ('endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoint = "opc.tcp://127.0.0.1:99999"'),
            "devices[0].endpoint: the port of 'opc.tcp://127.0.0.1:99999' must be 1..65535",
        ),
        (
            ("mqtt_url = ", 'mqtt_url = "tcp://127.0.0.1:1883"\n# '),
            "mqtt_url: MQTT URL 'tcp://127.0.0.1:1883': scheme must be mqtt:// or mqtts:// "
            "(TLS); for tcp:// write mqtt://",
        ),
        (
            ('device_id = "CNC-01"', 'device_id = "CNC-01"\ncolour = "red"'),
            "devices[0].colour: Extra inputs are not permitted",
        ),
        (("[[devices]]", "[[devices]"), "gw.toml: invalid TOML"),
    ],
)
def test_bad_config_names_the_field(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(*change), "gw.toml")
    assert str(info.value).startswith("gw.toml: ")
    assert message in str(info.value)
    assert "at least 1 item" not in str(info.value)  # the failed item, not an empty table


def test_duplicate_devices_refused() -> None:
    dup = GOOD + GOOD[GOOD.index("[[devices]]") :]
    with pytest.raises(ConfigError, match="duplicate device_id: CNC-01"):
        parse_config(dup, "gw.toml")


def test_empty_primary_host_means_none() -> None:
    cfg = parse_config('primary_host_id = ""\n' + GOOD, "gw.toml")
    assert cfg.primary_host_id is None


# -- the shared contract: Modbus and MQTT device tables ----------------------------------------
CONTRACT = """
group_id = "ACME"
edge_node_id = "GW1"

[[devices]]
kind = "modbus"
device_id = "LEG-07"
host = "127.0.0.1"
port = 5020
unit_id = 1
poll_interval_ms = 1000
timeout_s = 3.0
[[devices.registers]]
metric = "Production/PartCount"
table = "holding"
address = 10
type = "uint32"
word_order = "big"
byte_order = "big"
scale = 1.0
offset = 0.0
datatype = "UInt32"
[[devices.registers]]
metric = "ignored"
table = "holding"
address = 12
type = "uint16"
datatype = "UInt16"
map = "plantwire/ModeCode"
[[devices.registers]]
metric = "Door/Open"
table = "holding"
address = 13
type = "uint16"
bit = 3
datatype = "Boolean"
[[devices.registers]]
metric = "Oven/Temperature"
table = "input"
address = 0
type = "int16"
scale = 0.1
offset = -40.0
datatype = "Double"

[[devices]]
kind = "mqtt"
device_id = "EM-01"
broker_url = "mqtt://127.0.0.1:1883"
topic = "plant/energy/EM-01"
timestamp_path = "ts"
timestamp_format = "epoch_ms"
[[devices.fields]]
metric = "Energy/ActivePower"
path = "power.kw"
datatype = "Double"
[[devices.fields]]
metric = "ignored"
path = "phases[0].state"
map = "mtconnect/Execution"
"""


def test_contract_example_parses() -> None:
    from plantwire_bus.payload import DataType
    from plantwire_edge.config import ModbusDevice, MqttDevice

    cfg = parse_config(CONTRACT, "gw.toml")
    modbus, mqtt = cfg.devices
    assert isinstance(modbus, ModbusDevice) and isinstance(mqtt, MqttDevice)
    assert [r.metric_name for r in modbus.registers] == [
        "Production/PartCount",
        "State/Mode",
        "Door/Open",
        "Oven/Temperature",
    ]
    assert [r.published_datatype for r in modbus.registers] == [
        DataType.UInt32,
        DataType.String,
        DataType.Boolean,
        DataType.Double,
    ]
    assert [f.metric_name for f in mqtt.fields] == ["Energy/ActivePower", "State/Execution"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('type = "uint32"', 'type = "uint64"'), "devices[0].registers[0].type: Input should be"),
        (
            ('table = "input"', 'table = "coil"'),
            "devices[0].registers[3]: coil tables hold bits",
        ),
        (("bit = 3", "bit = 16"), "devices[0].registers[2].bit: Input should be less than or"),
        (
            ('datatype = "Double"\n\n[[devices]]', 'datatype = "Int16"\n\n[[devices]]'),
            "devices[0].registers[3]: a scaled value is published as Float or Double",
        ),
        (("unit_id = 1", "unit_id = 300"), "devices[0].unit_id: Input should be less than"),
        (
            ('path = "power.kw"', 'path = "power..kw"'),
            "devices[1].fields[0].path: invalid selector 'power..kw'",
        ),
        (
            ('topic = "plant/energy/EM-01"', 'topic = "plant/#"'),
            "devices[1].topic: topic may use '+'",
        ),
        (
            ('broker_url = "mqtt://127.0.0.1:1883"', 'broker_url = "http://x"'),
            "devices[1].broker_url: MQTT URL 'http://x': scheme",
        ),
        (
            ('timestamp_format = "epoch_ms"', 'timestamp_format = "unix"'),
            "devices[1].timestamp_format: Input should be",
        ),
        (
            ('metric = "Door/Open"', 'metric = "Production/PartCount"'),
            "devices[0]: metric published twice: Production/PartCount",
        ),
    ],
)
def test_contract_errors_name_the_field(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONTRACT.replace(*change), "gw.toml")
    assert message in str(info.value)


SECURE = GOOD.replace(
    'endpoint = "opc.tcp://127.0.0.1:4840"',
    'endpoint = "opc.tcp://127.0.0.1:4840"\nsecurity_policy = "Basic256Sha256"\n'
    'security_mode = "SignAndEncrypt"\ncertificate = "pki/gw.der"\nprivate_key = "pki/gw.pem"\n'
    'username = "operator"\npassword = "${PW_CNC}"',
)


def test_secrets_from_the_environment_paths_from_the_config_dir(tmp_path: Path) -> None:
    cfg = parse_config(SECURE, "gw.toml", environ={"PW_CNC": "s3cret!"}, base_dir=tmp_path)
    device = cfg.devices[0]
    assert isinstance(device, OpcUaDevice)
    assert device.password == "s3cret!"
    assert device.certificate == str(tmp_path / "pki/gw.der")
    assert "s3cret" not in repr(device)
    from plantwire_edge.config import missing_files

    assert missing_files(cfg) == [
        f"devices[0].certificate: file not found: {tmp_path / 'pki/gw.der'} "
        "(create it with 'plantwire edge cert CONFIG')",
        f"devices[0].private_key: file not found: {tmp_path / 'pki/gw.pem'} "
        "(create it with 'plantwire edge cert CONFIG')",
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "gw.toml: devices[0].password: environment variable PW_CNC is not set"),
        ({"PW_CNC": "changeme"}, "devices[0]: password is a placeholder"),
    ],
)
def test_missing_or_placeholder_secrets_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(SECURE, "gw.toml", environ=environ)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('security_mode = "SignAndEncrypt"', 'security_mode = "None"'),
            "security_policy and security_mode must both be None or neither",
        ),
        (('certificate = "pki/gw.der"\n', ""), "a secure endpoint needs certificate"),
        (('username = "operator"\n', ""), "username and password go together"),
    ],
)
def test_security_settings_are_consistent(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(SECURE.replace(*change), "gw.toml", environ={"PW_CNC": "pw-1234"})


def test_mqtt_url_is_overridden_from_the_environment() -> None:
    cfg = parse_config(GOOD, "gw.toml", environ={"PLANTWIRE_EDGE_MQTT_URL": "mqtt://broker:1884"})
    assert cfg.mqtt_url == "mqtt://broker:1884"


def test_buffer_and_http_tables() -> None:
    text = GOOD.replace(
        'mqtt_url = "mqtt://127.0.0.1:1883"',
        'mqtt_url = "mqtt://127.0.0.1:1883"\n[buffer]\npath = "/var/lib/gw.db"\n'
        'max_values = 5000\noverflow = "drop_newest"\n[http]\nlisten = ":9200"\n',
    )
    cfg = parse_config(text, "gw.toml")
    assert (cfg.buffer.path, cfg.buffer.max_values, cfg.buffer.overflow) == (
        "/var/lib/gw.db",
        5000,
        "drop_newest",
    )
    assert cfg.http is not None and cfg.http.host_port == ("0.0.0.0", 9200)
    assert parse_config(GOOD, "gw.toml").buffer.path is None  # in memory unless configured


def test_the_broker_urls_files_are_relative_to_the_config(tmp_path: Path) -> None:
    text = (
        'group_id = "G"\nedge_node_id = "N"\n'
        'mqtt_url = "mqtts://G%2FN:pw@broker.example:8883?cafile=ca.crt&protocol=5"\n'
        '[[devices]]\nkind = "opcua"\ndevice_id = "M1"\nendpoint = "opc.tcp://10.0.0.7:4840"\n'
        '[[devices.tags]]\nmetric = "Speed"\nnode = "nsu=urn:m;s=Speed"\n'
    )
    cfg = parse_config(text, "gw.toml", environ={}, base_dir=tmp_path)
    address = parse_mqtt_url(cfg.mqtt_url)
    assert (address.ca_file, address.username, address.password, address.mqtt5) == (
        str(tmp_path / "ca.crt"), "G/N", "pw", True)  # fmt: skip
    absolute = text.replace("cafile=ca.crt", "cafile=/etc/plantwire/ca.crt")
    kept = parse_config(absolute, "gw.toml", environ={}, base_dir=tmp_path).mqtt_url
    assert kept == "mqtts://G%2FN:pw@broker.example:8883?cafile=/etc/plantwire/ca.crt&protocol=5"
