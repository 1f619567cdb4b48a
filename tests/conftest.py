"""Test-wide settings: hypothesis without per-example deadlines (CI machines are noisy)."""

from hypothesis import settings

settings.register_profile("edgeagent", deadline=None, print_blob=True)
settings.load_profile("edgeagent")
