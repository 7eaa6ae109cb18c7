"""Every registered node has a help page, web/docs/<NODE_ID>.md, which the editor's node-help panel shows
(served through WEB_DIRECTORY; tests/browser/test_frontend.py checks that it renders). A page says what the node
does and covers each input, a typical graph and common mistakes."""
from __future__ import annotations

import pytest

from tools.comfy_host import REPO_ROOT

pytestmark = pytest.mark.integration

DOCS = REPO_ROOT / "web" / "docs"
SECTIONS = ("## Inputs", "## Typical graph", "## Common mistakes")


def test_every_node_has_a_help_page_covering_each_input(comfy, comfy_pack):
    assert comfy_pack.WEB_DIRECTORY == "./web"
    info = comfy.object_info()
    problems = []
    for node_id in comfy.pack_node_ids():
        page = DOCS / f"{node_id}.md"
        if not page.is_file():
            problems.append(f"{node_id}: no help page {page.relative_to(REPO_ROOT)}")
            continue
        text = page.read_text(encoding="utf-8")
        if not text.startswith(f"# {info[node_id]['display_name']}"):
            problems.append(f"{node_id}: the page should start with '# {info[node_id]['display_name']}'")
        problems += [f"{node_id}: no '{s}' section" for s in SECTIONS if s not in text]
        inputs = [n for group in ("required", "optional") for n in info[node_id]["input"].get(group, {})]
        problems += [f"{node_id}: input '{n}' is not described" for n in inputs if f"**{n}**" not in text]
    assert not problems, "Help pages (web/docs/<NODE_ID>.md, see BRIEF/README):\n" + "\n".join(problems)


def test_no_help_page_without_a_node(comfy, comfy_pack):
    """A renamed or removed node leaves no stale page behind."""
    ids = set(comfy.pack_node_ids())
    assert {p.stem for p in DOCS.glob("*.md")} <= ids
