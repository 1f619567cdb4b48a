"""Decisions: recommendations a person confirms, signed approvals, and the tamper-evident audit log.

The algorithm is never in control: it recommends; a named person with a key decides; the
interlocks check again at the moment of execution; every step is written to a hash-chained log.
"""
