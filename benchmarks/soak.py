"""Soak: one ComfyUI server, N prompts alternating plain image, animation and cancelled animation.

Checks that a long session neither leaks nor leaves anything behind: the server's resident memory (VmRSS of the
server process) after the first round (image + animation + cancelled animation, everything loaded once) against
the end, and the plain image at the end against the first one, pixel for pixel. The cancelled animation is
interrupted over HTTP while it samples (a 10 000-step run, interrupted 1.5 s after it starts running), so every
third prompt exercises the cleanup of an interrupted run. The animations change seed every round so they really
sample (ComfyUI would otherwise answer from its output cache); the image prompt's sampler is checked not to be
served from the cache either.

    .venv/bin/python benchmarks/soak.py                 # 50 prompts, prints the numbers
    .venv/bin/python benchmarks/soak.py --prompts 10

tests/e2e/test_soak.py runs the short version (10 prompts) on the test server.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "tests"), str(REPO)):
    if p not in sys.path:
        sys.path.append(p)

MAX_GROWTH = 0.05  # resident memory may grow by less than 5 % after the first round


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _image_pixels(server, entry: dict, node: str):
    import numpy as np
    from PIL import Image

    item = entry["outputs"][node]["images"][0]
    with Image.open(server.output_dir / item["subfolder"] / item["filename"]) as im:
        return np.asarray(im.convert("RGB"))


def _cached_nodes(entry: dict) -> set:
    return {n for event, data in entry["status"].get("messages", []) if event == "execution_cached"
            for n in data.get("nodes", [])}


def _cancel(server, prompt: dict, start_timeout: float = 300, run_for: float = 1.5) -> str:
    """Queue `prompt`, interrupt it once it has been running for `run_for` s; returns how it ended."""
    from harness.server import ServerPromptError

    client = server.client
    prompt_id = client.queue(prompt)
    deadline = time.monotonic() + start_timeout
    while not any(item[1] == prompt_id for item in client.queue_state()["queue_running"]):
        if time.monotonic() > deadline:
            raise TimeoutError("the animation to cancel never started")
        time.sleep(0.05)
    time.sleep(run_for)
    client.interrupt()
    try:
        client.wait(prompt_id, timeout=start_timeout)
    except ServerPromptError as err:
        if "interrupted" in str(err):
            return "interrupted"
        raise
    return "finished"  # it ended before the interrupt arrived: the caller treats this as a failed soak


def build_prompts(server):
    """(animation prompt, plain image prompt, the animation's save node, the image's sampler and save nodes)."""
    from harness.core_workflows import core_image_prompt
    from harness.shipped_workflows import install_standins, load_workflow, save_node, sized_prompt

    install_standins(server)
    animation = sized_prompt(load_workflow("txt2anim_sd15_v2"), server.client.object_info(), "soak_anim")
    image = core_image_prompt("v1-5-pruned-emaonly-fp16.safetensors", prefix="soak_image")
    return animation, image, save_node(animation), node_of(image, "KSampler"), node_of(image, "SaveImage")


def node_of(prompt: dict, class_type: str) -> str:
    return next(k for k, n in prompt.items() if n["class_type"] == class_type)


def run_soak(server, prompts: int = 50, log=print) -> dict:
    animation, image, anim_save, image_sampler, image_save = build_prompts(server)
    sample_node = next(k for k, n in animation.items() if n["class_type"] == "ADMK_SampleAnimation")
    pid = server.proc.pid
    images, rss, outcomes = [], [], []
    started = time.monotonic()
    for i in range(prompts):
        # The image comes first: a patch the first animation leaked onto the shared model would change every
        # later image, so the first one must be made before any animation ran.
        kind = ("image", "animation", "cancelled")[i % 3]
        if kind == "image":
            entry = server.client.run(image, timeout=600)
            if image_sampler in _cached_nodes(entry):
                raise AssertionError("the plain image came from ComfyUI's cache, so it proves nothing")
            images.append(_image_pixels(server, entry, image_save))
        else:
            p = copy.deepcopy(animation)
            p[sample_node]["inputs"]["seed"] = i  # a new sampling every time (no cache hit)
            if kind == "animation":
                server.client.run(p, timeout=600)
            else:
                p[sample_node]["inputs"]["steps"] = 10_000
                p[anim_save]["inputs"]["filename_prefix"] = "soak_cancelled"
                outcome = _cancel(server, p)
                if outcome != "interrupted":
                    raise AssertionError("the cancelled animation finished before the interrupt")
        outcomes.append(kind)
        rss.append(rss_bytes(pid))
        log(f"prompt {i + 1:3d}/{prompts} {kind:10s} rss {rss[-1] / 2**20:8.1f} MiB")
    first_round = rss[min(2, len(rss) - 1)]
    growth = rss[-1] / first_round - 1.0
    identical = len(images) >= 2 and images[0].shape == images[-1].shape and bool((images[0] == images[-1]).all())
    return {"prompts": prompts, "seconds": round(time.monotonic() - started, 1),
            "rss_after_first_round_mib": round(first_round / 2**20, 1), "rss_end_mib": round(rss[-1] / 2**20, 1),
            "rss_max_mib": round(max(rss) / 2**20, 1), "rss_growth_after_first_round": round(growth, 4),
            "plain_images": len(images), "plain_image_bit_identical": identical,
            "cancelled": outcomes.count("cancelled")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=50)
    args = parser.parse_args()
    from harness.server import start_server

    server = start_server()
    try:
        result = run_soak(server, args.prompts)
    finally:
        server.stop()
    print(json.dumps(result))
    print(f"resident memory: {result['rss_after_first_round_mib']} MiB after the first round -> "
          f"{result['rss_end_mib']} MiB after {result['prompts']} prompts "
          f"(growth {100 * result['rss_growth_after_first_round']:.2f} %, limit {100 * MAX_GROWTH:.0f} %); "
          f"plain image bit-identical first vs last: {result['plain_image_bit_identical']}")
    ok = result["rss_growth_after_first_round"] < MAX_GROWTH and result["plain_image_bit_identical"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
