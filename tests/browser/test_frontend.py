"""The pack in ComfyUI's real web frontend (Chromium driven by Playwright, against the test server):

- every shipped workflow opens with no missing node types and no uncaught page error; the frontend's own
  graph-to-prompt makes the same API prompt as our converter, and the server accepts and runs it (test-sized);
- one workflow queued from the Run button shows its animated preview on the Save Animation node;
- a node's help page (web/docs/<NODE_ID>.md) renders in the node-help panel.

Screenshots go to tests/.output/browser/ ($ADMK_TEST_OUTPUT/browser/). Without Chromium (scripts/setup_host.sh
installs Debian's `chromium`) or the playwright package every test here is skipped with a loud reason.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path

import pytest

from harness.shipped_workflows import (FRAMES, SIZE, install_standins, load_workflow, shrink, sized_prompt)
from tools.comfy_host import PACK_DIR_NAME, REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WORKFLOWS = sorted(p.stem for p in (REPO_ROOT / "example_workflows").glob("*.json"))
UI_QUEUED = "txt2anim_sd15_v2"
HELP_NODE = "ADMK_SampleAnimation"
OUT = Path(os.environ.get("ADMK_TEST_OUTPUT") or REPO_ROOT / "tests" / ".output") / "browser"
# Per workflow, inputs set on top of shrinking (as in tests/e2e/test_workflows.py).
# After the prompt comparison: sizes that keep each run short. The training workflow's own 100-odd steps on the
# stand-ins took over the 600 s limit on a float32-only 2-core CPU; two steps still train, save and animate.
TWEAKS = {"depth_guided_animation": {"ADMK_ContextOptions": {"context_length": 6, "context_overlap": 2}},
          "train_motionlora_from_clip": {"ADMK_TrainMotionLoRA": {"steps": 2, "rank": 4}}}


def _skip_loudly(reason: str):
    message = f"BROWSER TEST SKIPPED: {reason}. The frontend is NOT tested on this machine."
    warnings.warn(message)
    print(f"\n{'!' * 100}\n{message}\n{'!' * 100}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_loudly("the playwright package is not installed (pip install playwright; make setup does)")
    from browser_frontend import chromium_path, launch

    if chromium_path() is None:
        _skip_loudly("no Chromium found (apt-get install chromium; make setup does; or set ADMK_CHROMIUM)")
    started = time.monotonic()
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
    print(f"\nbrowser tests: {time.monotonic() - started:.1f} s with the browser open")


@pytest.fixture(scope="module")
def server(comfy_server):
    install_standins(comfy_server)
    OUT.mkdir(parents=True, exist_ok=True)
    return comfy_server


@pytest.fixture(scope="module")
def editor(browser, server):
    """One editor page for the module (loading the frontend takes ~10 s); each test opens its workflow in it."""
    from browser_frontend import open_app

    page, log = open_app(browser, server, PACK_DIR_NAME)
    yield page, log
    page.close()


@pytest.fixture()
def app(editor):
    """The editor; after the test, no uncaught page error and no failed request for this pack's files."""
    page, log = editor
    errors, failures = len(log.page_errors), len(log.pack_failures)
    yield page, log
    assert log.page_errors[errors:] == [], f"uncaught errors in the page: {log.page_errors[errors:]}"
    assert log.pack_failures[failures:] == [], f"requests for this pack's files failed: {log.pack_failures[failures:]}"


def _plain(prompt: dict) -> dict:
    """class_type and inputs only, links as [str(node), slot] (the frontend's _meta titles may differ)."""
    return {k: {"class_type": v["class_type"],
                "inputs": {n: [str(x[0]), int(x[1])] if isinstance(x, list) else x for n, x in v["inputs"].items()}}
            for k, v in prompt.items()}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_opens_and_the_frontend_prompt_is_accepted(app, server, name):
    from browser_frontend import graph_to_prompt, load_workflow as open_in_editor

    page, log = app
    workflow = load_workflow(name)
    missing = open_in_editor(page, workflow, name)
    assert missing == [], f"{name}: the editor reports missing node types {missing}"
    assert page.get_by_text("This workflow has missing nodes").count() == 0
    page.wait_for_timeout(300)  # one frame so the screenshot shows the drawn graph
    page.screenshot(path=str(OUT / f"{name}.png"))

    made = graph_to_prompt(page)
    ours = sized_prompt(workflow, server.client.object_info(), f"browser_{name}")
    theirs = shrink(made["output"], f"browser_{name}")
    assert _plain(theirs) == _plain(ours), f"{name}: the frontend's prompt differs from tests/harness' converter"
    for node in theirs.values():
        node["inputs"].update(TWEAKS.get(name, {}).get(node["class_type"], {}))
    entry = server.client.run(theirs, timeout=600)  # raises with the node errors when rejected or failing
    assert entry["status"]["status_str"] == "success"


def test_queued_from_the_run_button_the_save_node_shows_the_animated_preview(app):
    from browser_frontend import focus_node, load_workflow as open_in_editor, set_widgets

    page, log = app
    assert open_in_editor(page, load_workflow(UI_QUEUED), UI_QUEUED) == []
    set_widgets(page, {"ADMK_SampleAnimation": {"frames": FRAMES, "width": SIZE, "height": SIZE, "steps": 1},
                       "ADMK_SaveAnimation": {"filename_prefix": "browser_ui_run"}})
    page.click("[data-testid=queue-button]")
    # The preview is the saved GIF, in an <img> on the page (the editor's animated-image widget on the node).
    page.wait_for_function(
        """() => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'ADMK_SaveAnimation');
                   const img = n.imgs && n.imgs[0];
                   return img && img.isConnected && img.complete && img.naturalWidth > 0
                          && img.src.includes('browser_ui_run'); }""",
        timeout=600_000)
    box = focus_node(page, "ADMK_SaveAnimation")
    page.wait_for_timeout(300)
    # Animated: the node, photographed over about two GIF loops (8 frames at 8 fps), shows several pictures.
    shots = set()
    for _ in range(16):
        shots.add(hashlib.sha1(page.screenshot(clip=box)).hexdigest())
        page.wait_for_timeout(130)
    assert len(shots) >= 3, f"the preview on the Save Animation node does not play ({len(shots)} distinct views)"
    page.screenshot(path=str(OUT / f"{UI_QUEUED}_queued_from_ui.png"))


def test_node_help_page_renders(app):
    from browser_frontend import focus_node, load_workflow as open_in_editor

    page, log = app
    assert open_in_editor(page, load_workflow(UI_QUEUED), UI_QUEUED) == []
    focus_node(page, HELP_NODE)
    expected = f"/extensions/{PACK_DIR_NAME}/docs/{HELP_NODE}.md"
    with page.expect_response(lambda r: expected in r.url, timeout=30_000) as response:
        page.click("[data-testid=info-button]", timeout=30_000)  # the selection toolbox's (i) button
    assert response.value.status == 200
    help_panel = page.locator(".node-help-content")
    help_panel.get_by_role("heading", name="Common mistakes").wait_for(timeout=30_000)  # rendered Markdown
    text = help_panel.inner_text()
    assert "Typical graph" in text and "frames" in text
    page.screenshot(path=str(OUT / f"help_{HELP_NODE}.png"))


def test_every_workflow_has_a_small_thumbnail_that_the_template_browser_gets(server):
    """The template browser asks for /api/workflow_templates/<pack folder>/<name>.jpg (tools/thumbnails.py)."""
    import urllib.request

    from PIL import Image

    for name in WORKFLOWS:
        path = REPO_ROOT / "example_workflows" / f"{name}.jpg"
        assert path.is_file(), f"{name}.json has no thumbnail: run `make thumbnails`"
        assert path.stat().st_size < 60_000, f"{path.name} is {path.stat().st_size} bytes; keep thumbnails small"
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (480, 300)
        url = f"{server.url}/api/workflow_templates/{PACK_DIR_NAME}/{name}.jpg"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and response.read() == path.read_bytes()
