"""Safety path: interlocks, export limit, arbitration. Synchronous, no I/O (see DESIGN.md)."""
