"""edgeagent's hardware-in-the-loop plant: a simulated PV + battery site served over Modbus TCP.

The plant is an independent test oracle.  It has its own physics (:mod:`hil.physics`), encodes
its SunSpec registers with pysunspec2 (:mod:`hil.sunspec_image`) and never imports
``edgeagent``: a simulator that shared the daemon's code would hide the daemon's bugs.

Entry points: ``python -m hil serve`` (see :mod:`hil.__main__`) and, for tests and demos,
``async with hil.server.serve_plant(...) as plant``.
"""

__version__ = "0.1.0"
