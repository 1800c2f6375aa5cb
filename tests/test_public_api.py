"""Public means public: Node and Worker expose the API the README documents and nothing else,
so no internal callback (a report that frees a key, a fencing hook) is a method a user can
call."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import Recorder

README = Path(__file__).resolve().parents[1] / "README.md"
NODE_EXTRAS = {"log"}  # the node's bound logger: documented under the `logger` option


def _documented(prefix: str) -> set[str]:
    api = README.read_text().split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(rf"\b{prefix}\.(\w+)", api))


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


async def test_a_node_has_no_public_name_the_readme_api_does_not_list(make_node):
    node = await make_node()
    assert _public(node) - _documented("node") - NODE_EXTRAS == set()
    assert {"close", "shutdown", "dispatch_job", "add_worker"} <= _public(node)


async def test_a_worker_has_no_public_name_the_readme_api_does_not_list(make_node):
    worker = await (await make_node()).add_worker(Recorder())
    assert _public(worker) == _documented("worker")
