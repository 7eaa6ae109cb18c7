"""Driving ComfyUI's real web frontend (the comfyui-frontend-package the test server serves) with Playwright and
the system's Chromium (Debian's `chromium`; nothing downloads a browser build).

    browser = launch(playwright)                  # None when no Chromium is installed
    page = open_app(browser, server)              # the editor, ready: every node type registered
    missing = load_workflow(page, workflow, name) # node types the editor did not know
    prompt = graph_to_prompt(page)                # the frontend's own app.graphToPrompt()
"""
from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request

CHROMIUM_NAMES = ("chromium", "chromium-browser")
APP = "window.comfyAPI.app.app"
# A first visit opens the template browser over the canvas; a user who has seen it once never gets it again.
SETTINGS = {"Comfy.TutorialCompleted": True}
LOCALE_HELP = re.compile(r"/docs/ADMK_[A-Za-z0-9_]+/[a-zA-Z-]+\.md$")


def chromium_path() -> str | None:
    """$ADMK_CHROMIUM, else the first Chromium on PATH."""
    explicit = os.environ.get("ADMK_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def launch(playwright):
    path = chromium_path()
    if path is None:
        return None
    # --no-sandbox: the suite runs as root in containers, where Chromium's sandbox cannot start.
    return playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def store_settings(server, settings: dict = SETTINGS) -> None:
    for key, value in settings.items():
        req = urllib.request.Request(f"{server.url}/api/settings/{key}", data=json.dumps(value).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()


class PageLog:
    """What went wrong in the page: uncaught exceptions, console errors, failed requests to this pack's URLs."""

    def __init__(self, page, pack_dir_name: str):
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.pack_failures: list[str] = []
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

        def response(r):
            # The help panel asks for docs/<NODE_ID>/<locale>.md first and falls back to docs/<NODE_ID>.md (what
            # we ship): that first 404 is the frontend's design, not a missing file.
            if r.status == 404 and LOCALE_HELP.search(r.url):
                return
            if r.status >= 400 and pack_dir_name in r.url:
                self.pack_failures.append(f"{r.status} {r.url}")

        page.on("response", response)


def open_app(browser, server, pack_dir_name: str, viewport=(1400, 900)):
    """A new page with the editor loaded and every node type of the server registered; returns (page, log)."""
    store_settings(server)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    log = PageLog(page, pack_dir_name)
    page.goto(server.url)
    page.wait_for_function(
        f"window.LiteGraph && LiteGraph.registered_node_types['ADMK_SampleAnimation'] "
        f"&& LiteGraph.registered_node_types['CheckpointLoaderSimple'] && {APP} && {APP}.graph", timeout=180_000)
    return page, log


def load_workflow(page, workflow: dict, name: str) -> list:
    """Open a UI workflow as the template browser does (app.loadGraphData); returns the node types the editor
    reported missing (it would show them in its "missing nodes" dialog)."""
    return page.evaluate(
        f"""async ([wf, name]) => {{
            const app = {APP};
            const missing = [];
            const original = app.showMissingNodesError;
            app.showMissingNodesError = (types) => {{ missing.push(...types); }};
            try {{ await app.loadGraphData(wf, true, true, name); }} finally {{ app.showMissingNodesError = original; }}
            return missing.map(t => typeof t === 'string' ? t : t.type);
        }}""", [workflow, name])


def graph_to_prompt(page) -> dict:
    """The API prompt and the UI workflow, as the editor itself makes them when it queues: {"output", "workflow"}."""
    return page.evaluate(f"async () => {{ const p = await {APP}.graphToPrompt(); "
                         f"return {{output: p.output, workflow: p.workflow}}; }}")


def set_widgets(page, values: dict[str, dict]) -> None:
    """{node type: {widget name: value}}: set widget values on the canvas as a user would by typing them."""
    page.evaluate(
        f"""(values) => {{
            const app = {APP};
            for (const node of app.graph.nodes)
                for (const w of node.widgets || [])
                    if (values[node.type] && w.name in values[node.type]) w.value = values[node.type][w.name];
            app.graph.setDirtyCanvas(true, true);
        }}""", values)


def focus_node(page, node_type: str) -> dict:
    """Select the first node of a type and move the canvas (scale 1) so that it sits left, below the top bars
    with room for the selection toolbox above it; returns its box in page pixels {x, y, width, height} (title
    bar included), for a clipped screenshot."""
    return page.evaluate(
        f"""(type) => {{
            const app = {APP};
            const node = app.graph.nodes.find(n => n.type === type);
            app.canvas.deselectAll();
            app.canvas.selectNode(node);
            const ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT;
            ds.scale = 1;
            ds.offset[0] = 160 - node.pos[0];
            ds.offset[1] = 220 + title - node.pos[1];
            app.canvas.setDirty(true, true);
            const r = app.canvas.canvas.getBoundingClientRect();
            return {{x: r.left + 160, y: r.top + 220, width: node.size[0], height: node.size[1] + title}};
        }}""", node_type)
