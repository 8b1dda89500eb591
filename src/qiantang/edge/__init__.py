"""The edge gateway: reads machines over OPC UA and Modbus and forwards to a Qiantang platform
as an Alink gateway with sub-devices, through a durable store-and-forward outbox.

Run it with ``qiantang gateway run CONFIG.yaml``; see ``docs/edge.md``. The optional
libraries (asyncua, pymodbus, aiomqtt) are imported by the modules that need them, never
here.
"""

__all__: list[str] = []
