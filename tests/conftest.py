"""Test-wide settings: hypothesis without per-example deadlines (CI machines are noisy), and
structlog's global configuration restored after every test.

Commands run in-process (`edgeagent doctor`, the demo) configure structlog for their own output,
e.g. at level "error" on a stream pytest closes afterwards; without the restore, later tests'
`capture_logs` would see nothing and writes would hit a closed file.
"""

from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

settings.register_profile("edgeagent", deadline=None, print_blob=True)
settings.load_profile("edgeagent")


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
