"""kt2conformance: conformance test harness for Koppeltaal 2.0 servers (KT2Task)."""

__version__ = "0.1.0"
