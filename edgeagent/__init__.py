"""edgeagent: an edge daemon for substations and battery storage."""

__version__ = "0.1.0"
