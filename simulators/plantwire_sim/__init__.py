"""plantwire_sim: a simulated factory for plantwire — OPC UA CNCs and PLC lines, Modbus TCP
legacy machines, MQTT stations and energy boxes.

Every simulated machine follows a behaviour program stated in canonical terms (with events and
a shift calendar laid over it), exposes it in its controller's native vocabulary, fails on
demand and records the ground truth of what it did. Entry points: :func:`factory.run_factory`
(every protocol), :func:`opcua_server.run_fleet` (OPC UA only), :func:`scorecard.simulate`
(truth without servers) and the ``plantwire sim`` command.
"""
