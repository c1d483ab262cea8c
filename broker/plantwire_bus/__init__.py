"""plantwire_bus: the wire contract shared by every plantwire component.

Sparkplug B 3.0 topics and payloads, the canonical machine-state enumerations and the one
module that talks MQTT (:mod:`plantwire_bus.mqtt`).
"""

__version__ = "0.1.0"
