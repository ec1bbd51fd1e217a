import pytest

from tests.console.office import Browsers
from tests.console.support import Browser


@pytest.fixture
async def browser(harness):
    """A browser of the console's tests on the `harness` bot (a module over another harness
    brings its own)."""
    opened = Browser(harness)
    yield opened
    await opened.close()


@pytest.fixture
async def browsers():
    """Browsers logged in as one role each (the office pages' tests)."""
    opened = Browsers()
    yield opened
    await opened.close()
