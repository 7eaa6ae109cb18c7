"""Template-browser thumbnails: every example_workflows/<name>.json gets example_workflows/<name>.jpg, a picture
of that workflow's graph as ComfyUI's own editor draws it (headless Chromium against a test server with this
pack), plus web/icon.png for the Comfy Registry. Re-run after adding or changing a workflow:

    .venv/bin/python -m tools.thumbnails                 # all workflows (starts its own server, ~1 min)
    .venv/bin/python -m tools.thumbnails --url http://127.0.0.1:8188 depth_guided_animation

The editor's template browser (comfyui-frontend-package 1.32) asks a custom node pack for
/api/workflow_templates/<pack folder>/<name>.jpg, so the name and the .jpg extension are fixed.
Needs playwright and Debian's chromium (scripts/setup_host.sh installs both).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from tools.comfy_host import PACK_DIR_NAME, REPO_ROOT

WORKFLOWS = REPO_ROOT / "example_workflows"
ICON = REPO_ROOT / "web" / "icon.png"
VIEW = (1600, 1000)        # browser viewport; the graph is fitted into it, then the picture is shrunk
THUMB = (480, 300)         # what the template browser's cards show (16:10), a few tens of KB as JPEG
# The editor's side bar, top bars (tabs, workflow name, Run button) and zoom controls float over these strips.
MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM = 64, 140, 80
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False}


def fit_graph(page) -> None:
    """Scale and move the canvas so every node fits the free area (the editor's own fit keeps a saved view)."""
    page.evaluate(
        """([w, h, left, top, bottom]) => {
            const app = window.comfyAPI.app.app, title = LiteGraph.NODE_TITLE_HEIGHT;
            let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
            for (const n of app.graph.nodes) {
                x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
                x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
            }
            const pad = 24, aw = w - left - 2 * pad, ah = h - top - bottom - 2 * pad;
            const s = Math.min(aw / (x1 - x0), ah / (y1 - y0), 1.2);
            const ds = app.canvas.ds;
            ds.scale = s;
            ds.offset[0] = (left + pad + (aw - s * (x1 - x0)) / 2) / s - x0;
            ds.offset[1] = (top + pad + (ah - s * (y1 - y0)) / 2) / s - y0;
            app.canvas.deselectAll();
            app.canvas.setDirty(true, true);
        }""", [VIEW[0], VIEW[1], MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM])


def render(page, name: str) -> bytes:
    from browser_frontend import load_workflow

    workflow = json.loads((WORKFLOWS / f"{name}.json").read_text())
    missing = load_workflow(page, workflow, name)
    if missing:
        raise SystemExit(f"{name}: the editor does not know node types {missing}; is the pack loaded?")
    fit_graph(page)
    page.wait_for_timeout(500)
    shot = page.screenshot(clip={"x": MARGIN_LEFT, "y": MARGIN_TOP, "width": VIEW[0] - MARGIN_LEFT,
                                 "height": VIEW[1] - MARGIN_TOP - MARGIN_BOTTOM})
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image.thumbnail((THUMB[0] * 2, THUMB[1] * 2), Image.LANCZOS)
    canvas = Image.new("RGB", THUMB, image.getpixel((2, 2)))
    image.thumbnail(THUMB, Image.LANCZOS)
    canvas.paste(image, ((THUMB[0] - image.width) // 2, (THUMB[1] - image.height) // 2))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=82, optimize=True, progressive=True)
    return out.getvalue()


def make_icon(path: Path = ICON, size: int = 256) -> None:
    """The registry icon: three frames of a film strip with a ball that moves across them."""
    img = Image.new("RGB", (size, size), (24, 28, 38))
    draw = ImageDraw.Draw(img)
    frame_w, gap = size // 3 - 12, 12
    for i in range(3):
        x = gap // 2 + i * (frame_w + gap)
        draw.rounded_rectangle([x, size * 0.22, x + frame_w, size * 0.78], radius=10, fill=(52, 60, 80))
        cx = x + frame_w * (0.25 + 0.25 * i)
        cy = size * (0.62 - 0.12 * i)
        r = size * 0.07
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 170, 60))
    for y in (size * 0.12, size * 0.84):
        for k in range(8):
            x = 10 + k * (size - 20) / 8
            draw.rectangle([x, y, x + size / 20, y + size / 25], fill=(90, 100, 120))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="workflow names (default: every example_workflows/*.json)")
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start a test server)")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "browser")]
    from playwright.sync_api import sync_playwright

    from browser_frontend import launch, open_app

    server = None
    if args.url:
        class _Remote:
            url = args.url.rstrip("/")
        target = _Remote()
    else:
        from harness.server import start_server

        server = target = start_server()
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            if browser is None:
                raise SystemExit("No Chromium found: apt-get install chromium (or set ADMK_CHROMIUM).")
            from browser_frontend import store_settings

            store_settings(target, SETTINGS)
            page, _log = open_app(browser, target, PACK_DIR_NAME, viewport=VIEW)
            for name in names:
                data = render(page, name)
                (WORKFLOWS / f"{name}.jpg").write_bytes(data)
                print(f"{name}.jpg  {len(data) / 1024:.1f} KB")
            browser.close()
    finally:
        if server is not None:
            server.stop()
    make_icon()
    print(f"{ICON.relative_to(REPO_ROOT)}  {ICON.stat().st_size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
