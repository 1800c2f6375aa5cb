"""The public API is typed: py.typed ships, and the documented usage type-checks
(``make test`` runs mypy --strict over tests/typing_check.py)."""

from __future__ import annotations

from importlib import resources

import redpool
from tests import typing_check


def test_the_package_is_marked_typed():
    assert (resources.files("redpool") / "py.typed").is_file()


def test_the_public_api_is_exactly_what_all_lists():
    public = {name for name in dir(redpool) if not name.startswith("_")} | {"__version__"}
    assert set(redpool.__all__) <= public
    assert isinstance(redpool.__version__, str)
    assert all(callable(getattr(typing_check, n)) for n in ("documented_usage", "Handler"))
    assert isinstance(typing_check.Handler(), redpool.JobHandler)
    assert isinstance(typing_check.Handler(), redpool.NotificationHandler)
