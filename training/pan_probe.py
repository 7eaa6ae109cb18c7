"""Pan MotionLoRA probe (issue 17): train pan MotionLoRAs on the demo's cached models with other settings than the
demo's, then print the tracked object's horizontal speed under each, per seed.

    python -m training.pan_probe --tag s1 --signed           # after `make demo` filled demo_output/cache
    python -m training.pan_probe --tag admk_demo --signed --pair-loss   # the demo's own pan LoRA, + loss per noise
    python -m training.pan_probe --tag e2 --lr 2e-3          # two separate LoRAs (pan-left, pan-right)
    python -m training.pan_probe --tag e3 --lr 2e-3 --video-stills
    python -m training.pan_probe --tag g1 --signed --model-stills
    python -m training.pan_probe --tag admk_demo --signed --stages 4:0:6,4:1:0   # LoRA strength by sampling step
    python -m training.pan_probe --tag admk_demo --signed --contrast 2,5:0.5     # Motion Contrast Guidance
    python -m training.pan_probe --tag admk_demo --signed --freeinit 3 --contrast 2   # every clip with FreeInit

It runs what the demo runs (training.demo.lora_training_prompt through ComfyUI's executor, then
motionlora_zoomin_panleft.json with the pan node holding the new LoRA). --signed trains ONE LoRA with the camera
pair pan_left/pan_right (augment.SIGNED_PAIRS) and samples it at +strength (pan left) and -strength (pan right), as
the demo does; without it, two LoRAs. The LoRAs are saved as <tag>_pan.safetensors or <tag>_pan_left/right.safetensors
in the cache's animatediff_motion_lora folder (delete them to retrain).
--model-stills moves the camera over the frames the demo's image model drew (its cached image-only clips).
--video-stills adds frame 30 of every synthetic video (objects with motion trails pointing every way) to the
stills the camera moves over, so a LoRA cannot rely on the trail to pick its direction.
--stages K:EARLY:LATE samples with the signed LoRA at +/-EARLY for the first K of the 8 steps and at +/-LATE for the
rest (two core KSamplerAdvanced, the second continuing the first's latent; K 0 is one sampler at LATE, which gives
the same clips as Apply MotionLoRA at that strength), to see in which steps the LoRA moves the content.
--contrast SCALE[:END] samples the signed LoRA at +/-strength through Motion Contrast Guidance against the same LoRA
at the opposite sign (demo.pan_prompt's contrast), guided until END of the sampling.
--freeinit N samples every clip (the baseline's too) with a FreeInit node of N passes (its other defaults).
Content should move right (+) under pan-left and left (-) under pan-right.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import List, Optional


def video_stills(cache: str, out_dir: str) -> str:
    import cv2

    from .data import read_frames, scan_entries

    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    stills = os.path.join(cache, "data", "stills")
    for name in sorted(os.listdir(stills)):
        if name.endswith(".png"):
            shutil.copy(os.path.join(stills, name), os.path.join(out_dir, "a_" + name))
    for i, e in enumerate(scan_entries(os.path.join(cache, "data", "videos"), "captions.csv")):
        frame = read_frames(e.path, [30])[0]
        cv2.imwrite(os.path.join(out_dir, f"v_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return out_dir


def model_stills(cache: str, out_dir: str) -> str:
    """The frames the demo's image model drew (its "image model only" clips in the clip cache, newest of each) as
    stills: the camera then moves over the kind of picture sampling makes, noisy blobs and all, instead of clean
    rendered shapes."""
    import glob

    import cv2
    import numpy as np

    from .demo import clip_name_of

    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    newest = {}
    for path in glob.glob(os.path.join(cache, "clips", "*_image_*.npy")):
        name = clip_name_of(os.path.basename(path))
        if name is None:
            continue
        if name not in newest or os.path.getmtime(path) > os.path.getmtime(newest[name]):
            newest[name] = path
    if not newest:
        raise SystemExit("no image-model clips in the cache: run `python -m training.demo` first")
    for name, path in sorted(newest.items()):
        for i, frame in enumerate(np.load(path)):
            cv2.imwrite(os.path.join(out_dir, f"{name}_{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return out_dir


PAIR_BANDS = ((0, 250), (250, 500), (500, 750), (750, 1000))


def pair_losses(cache: str, lora_path: str, strength: float, pairs: int = 12) -> None:
    """Print, per timestep band, a signed pan LoRA's denoising loss on pan pairs of the stills (each still panned
    left and right, same noise, at the band's middle timestep): "matched" = the pan-left clip at +1 and the
    pan-right clip at -1 (what training asks for), "swapped" = the other way round, and without the LoRA. A
    LoRA that tells the two moves apart has matched < swapped; where in the schedule it does, says whether it
    can steer the layout sampling decides at high noise."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from .config import load_config
    from .data import build_dataset, collate, subset
    from .demo import BASE_NAME, MM_NAME
    from .train import Trainer

    cfg = load_config(os.path.join(os.path.dirname(__file__), "configs", "demo_motionlora.yaml"), [
        f"model.checkpoint={os.path.join(cache, 'models', 'checkpoints', BASE_NAME)}",
        f"model.text_embeddings={os.path.join(cache, 'text_embeddings.safetensors')}",
        f"model.motion_module={os.path.join(cache, 'models', 'animatediff_models', MM_NAME)}",
        f"data.root={os.path.join(cache, 'data', 'stills')}", "data.camera_motion=pan_left/pan_right",
        f"data.camera_strength={strength}", "data.empty_prompt_prob=0", "run.resume=", "optim.mixed_precision=no",
        f"run.output_dir={os.path.join(cache, 'runs', 'pair_loss')}"])
    trainer = Trainer(cfg)
    lora = trainer.stage.trainables
    weights = load_file(lora_path)
    for key, stem in lora.stems.items():
        lora.deltas[key].down.data.copy_(weights[f"{stem}.down.weight"])
        lora.deltas[key].up.data.copy_(weights[f"{stem}.up.weight"])
    dataset = build_dataset(cfg.data, 123, frames=cfg.data.frames)  # draws the training run (seed 11) did not use
    rows = {band: [] for band in PAIR_BANDS}
    trainer._patch()
    try:
        with torch.no_grad():
            for j in range(pairs):
                batch = collate([dataset[2 * j], dataset[2 * j + 1]])
                left, right = subset(batch, batch["lora_sign"] > 0), subset(batch, batch["lora_sign"] < 0)
                for band in PAIR_BANDS:
                    t = (band[0] + band[1]) // 2
                    loss = {}
                    for name, clip in (("left", left), ("right", right)):
                        for scale in (1.0, -1.0, 0.0):
                            lora.set_scale(scale)
                            loss[name, scale] = float(trainer._loss(clip, timestep=t))
                    rows[band].append((loss["left", 1.0] + loss["right", -1.0], loss["left", -1.0] + loss["right", 1.0],
                                       loss["left", 0.0] + loss["right", 0.0]))
    finally:
        lora.set_scale(1.0)
        trainer._unpatch()
    print(f"{os.path.basename(lora_path)}: denoising loss on {pairs} pan pairs (mean of the pair's two clips)")
    for band in PAIR_BANDS:
        a = np.array(rows[band]) / 2
        matched, swapped, plain = a.mean(axis=0)
        print(f"  t {band[0]}-{band[1]}: matched {matched:.5f}, swapped {swapped:.5f} "
              f"({100 * (swapped - matched) / matched:+.1f} %; matched lower in {int((a[:, 0] < a[:, 1]).sum())}/"
              f"{pairs} pairs), no LoRA {plain:.5f}", flush=True)


def staged_pan_prompt(runner, lora_name: str, text: str, seed: int, sampling: dict, prefix: str,
                      switch_step: int, early: float, late: float) -> dict:
    """training.demo.pan_prompt, sampled by two core KSamplerAdvanced nodes instead of Sample Animation: the pan LoRA
    at `early` for steps [0, switch_step), then at `late` (a second Apply MotionLoRA and Inflate Model) for the rest,
    the second sampler continuing the first's latent without new noise. switch_step 0: one sampler, at `late`."""
    import copy

    from tools.workflow_convert import add_node, find_node

    from . import demo

    prompt = demo.pan_prompt(runner, lora_name, text, seed, sampling, prefix, early)
    sample = find_node(prompt, "ADMK_SampleAnimation")
    lora, inflate = find_node(prompt, "ADMK_ApplyMotionLoRA"), find_node(prompt, "ADMK_InflateModel")
    s = prompt.pop(sample)["inputs"]
    steps = s["steps"]
    if not 0 <= switch_step < steps:
        raise ValueError(f"switch step {switch_step} must be in [0, {steps})")
    late_lora = add_node(prompt, copy.deepcopy(prompt[lora]))
    prompt[late_lora]["inputs"]["strength"] = late
    late_model = add_node(prompt, copy.deepcopy(prompt[inflate]))
    prompt[late_model]["inputs"]["motion_module"] = [late_lora, 0]
    latent = add_node(prompt, {"class_type": "EmptyLatentImage",
                               "inputs": {"width": s["width"], "height": s["height"], "batch_size": s["frames"]}})
    common = {"positive": s["positive"], "negative": s["negative"], "noise_seed": s["seed"], "cfg": s["cfg"],
              "sampler_name": s["sampler_name"], "scheduler": s["scheduler"], "steps": steps}
    if switch_step:
        latent = add_node(prompt, {"class_type": "KSamplerAdvanced", "inputs": dict(
            common, model=[inflate, 0], add_noise="enable", latent_image=[latent, 0], start_at_step=0,
            end_at_step=switch_step, return_with_leftover_noise="enable")})
    # K 0: the only sampler, adding the noise
    second = add_node(prompt, {"class_type": "KSamplerAdvanced", "inputs": dict(
        common, model=[late_model, 0], add_noise="disable" if switch_step else "enable",
        latent_image=[latent, 0], start_at_step=switch_step, end_at_step=steps,
        return_with_leftover_noise="disable")})
    demo.relink(prompt, sample, second)  # the decoder (and anything else on the sampler's output) reads the last stage
    return prompt


def with_freeinit(prompt: dict, iterations: int) -> dict:
    """The prompt with a FreeInit node (its defaults, `iterations` passes) on its Sample Animation; unchanged at 1."""
    from tools.workflow_convert import add_node, find_node

    if iterations > 1:
        node = add_node(prompt, {"class_type": "ADMK_FreeInit", "inputs": {
            "iterations": iterations, "filter": "butterworth", "spatial_stop": 0.25, "temporal_stop": 0.25,
            "order": 4, "coarse_to_fine": False}})
        prompt[find_node(prompt, "ADMK_SampleAnimation")]["inputs"]["freeinit"] = [node, 0]
    return prompt


def main(argv: Optional[List[str]] = None) -> int:
    from . import demo

    ap = argparse.ArgumentParser(prog="python -m training.pan_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_output", help="the demo's output folder (its cache is used)")
    ap.add_argument("--tag", default="probe", help="prefix of the LoRA files")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--strength", type=float, default=0.3, help="camera strength")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated sampling seeds (a prompt per seed)")
    ap.add_argument("--batch", type=int, default=2, help="clips per step")
    ap.add_argument("--signed", action="store_true", help="one signed LoRA (camera pan_left/pan_right) sampled at "
                                                          "+/- --lora-strength instead of two LoRAs")
    ap.add_argument("--pair-loss", action="store_true", help="with --signed: also print the LoRA's denoising loss on "
                                                             "pan pairs per timestep band (pair_losses)")
    ap.add_argument("--video-stills", action="store_true")
    ap.add_argument("--model-stills", action="store_true", help="move the camera over the frames the demo's image "
                                                                "model drew instead of the rendered stills")
    ap.add_argument("--baseline", action="store_true", help="also print the speeds without a pan LoRA")
    ap.add_argument("--lora-strength", type=float, default=1.0, help="Apply MotionLoRA strength when sampling")
    ap.add_argument("--stages", default="", help="with --signed: comma-separated K:EARLY:LATE, the LoRA at +/-EARLY "
                                                 "for the first K sampling steps and +/-LATE after (e.g. 4:0:6)")
    ap.add_argument("--freeinit", type=int, default=1, help="FreeInit passes for every sampled clip (1 = off; the "
                                                            "FreeInit node's defaults otherwise)")
    ap.add_argument("--contrast", default="", help="with --signed: comma-separated SCALE[:END] items, each sampled "
                                                   "with Motion Contrast Guidance at SCALE against the LoRA at the "
                                                   "opposite sign, until END (0-1) of the sampling (e.g. 2,5:0.5)")
    args = ap.parse_args(argv)
    sampling = {"steps": 8, "sampler_name": "euler"}
    contrasts = [tuple(float(x) for x in (part.split(":") + ["1"])[:2]) for part in args.contrast.split(",")
                 if part.strip()]
    if contrasts and (not args.signed or any(g <= 0 or not 0 < end <= 1 for g, end in contrasts)):
        ap.error("--contrast takes SCALE[:END] items (SCALE > 0, END in (0, 1]) and needs --signed")
    stages = [tuple(float(x) for x in part.split(":")) for part in args.stages.split(",") if part.strip()]
    if stages and (not args.signed or any(len(st) != 3 or not 0 <= st[0] < sampling["steps"] for st in stages)):
        ap.error(f"--stages takes K:EARLY:LATE items (K a step in 0-{sampling['steps'] - 1} of the "
                 f"{sampling['steps']}) and needs --signed")

    out = os.path.abspath(args.out)
    cache = os.path.join(out, "cache")
    from tools.comfy_host import import_comfy

    import_comfy("", cpu=None)
    demo.set_size(demo.cached_size(cache))  # sample at the size the demo trained at (--size)
    runner = demo.make_runner(cache, out)
    stills = (model_stills(cache, os.path.join(out, "pan_probe_model_stills")) if args.model_stills else
              video_stills(cache, os.path.join(out, "pan_probe_stills")) if args.video_stills
              else os.path.join(cache, "data", "stills"))
    seeds = [int(s) for s in args.seeds.split(",")]

    def speeds(make_prompt, way: str = "right") -> List[tuple]:
        """(horizontal speed px/frame, moves `way` by the demo's rule) per seed, each seed sampling its own
        PAN_PROMPTS prompt."""
        from .demo_metrics import measure

        out = []
        for seed in seeds:
            text, colour = demo.PAN_PROMPTS[seed % len(demo.PAN_PROMPTS)]
            prompt = with_freeinit(make_prompt(text, seed), args.freeinit)
            frames = demo._frames_of(runner.run_prompt(prompt), prompt)
            out.append((demo._horizontal_velocity({"frames": frames, "colour": colour}),
                        bool(measure(frames, colour, way).get("direction_ok", 0))))
        return out

    if args.baseline:
        plain = speeds(lambda text, seed: demo._prepare(runner, "txt2anim_sd15_v2.json", text, seed, sampling,
                                                        "pan_probe/clip"))
        print(f"no LoRA: px/frame per seed {', '.join(f'{v:+.2f}' for v, _ in plain)}", flush=True)

    def train(camera: str, name: str) -> None:
        if not os.path.exists(os.path.join(cache, "models", "animatediff_motion_lora", name)):
            prompt = demo.lora_training_prompt(runner, {"stills": stills}, demo.Plan(), camera, sampling)
            demo._set(prompt, "ADMK_TrainMotionLoRA", camera_strength=args.strength, steps=args.steps,
                      learning_rate=args.lr, rank=args.rank, lora_name=name, batch_size=args.batch)
            runner.run_prompt(prompt)

    def counts(per: dict) -> tuple:
        """From {motion: speeds()}: clips moving the way their pan implies, and the paired differences (pan-left's
        speed minus pan-right's on the same seed, as the demo's pan_paired)."""
        right = sum(demo.moves_way(v, demo.PAN_CONTENT_DIRECTION[m]) for m in per for v, _ in per[m])
        return right, demo.speed_differences(*(dict(zip(seeds, (v for v, _ in per[m])))
                                               for m in ("pan_left", "pan_right")))

    per_motion = {}
    for motion in ("pan_left", "pan_right"):
        if args.signed:  # one LoRA: +strength = pan left, -strength = pan right
            name, strength = f"{args.tag}_pan.safetensors", args.lora_strength * demo.PAN_STRENGTH[motion]
            train("pan_left/pan_right", name)
        else:
            name, strength = f"{args.tag}_{motion}.safetensors", args.lora_strength
            train(motion, name)
        per_motion[motion] = speeds(lambda text, seed, name=name, strength=strength: demo.pan_prompt(
            runner, name, text, seed, sampling, "pan_probe/clip", strength), demo.PAN_CONTENT_DIRECTION[motion])
        print(f"{args.tag} {motion}: px/frame per seed {', '.join(f'{v:+.2f}' for v, _ in per_motion[motion])}",
              flush=True)

    def signed_run(label: str, make_prompt) -> None:
        """Sample the signed LoRA's two moves with make_prompt(text, seed, sign) (sign +1 pan left, -1 pan right)
        and print the counts and per-seed speeds under `label`."""
        per = {motion: speeds(lambda text, seed, sign=sign: make_prompt(text, seed, sign),
                              demo.PAN_CONTENT_DIRECTION[motion]) for motion, sign in demo.PAN_STRENGTH.items()}
        way_count, diffs = counts(per)
        print(f"{args.tag} {label}: {way_count}/{2 * len(seeds)} the right way, pan-left further right on "
              f"{sum(d > 0 for d in diffs)}/{len(diffs)} seeds; px/frame pan-left "
              f"{' '.join(f'{v:+.2f}' for v, _ in per['pan_left'])} | pan-right "
              f"{' '.join(f'{v:+.2f}' for v, _ in per['pan_right'])}", flush=True)

    name = f"{args.tag}_pan.safetensors"  # the signed LoRA (--stages and --contrast need --signed)
    for k, early, late in stages:
        signed_run(f"stages {int(k)}:{early:g}:{late:g}", lambda text, seed, sign: staged_pan_prompt(
            runner, name, text, seed, sampling, "pan_probe/clip", int(k), sign * early, sign * late))
    for scale, end in contrasts:
        signed_run(f"contrast {scale:g} until {end:g}", lambda text, seed, sign: demo.pan_prompt(
            runner, name, text, seed, sampling, "pan_probe/clip", sign * args.lora_strength, scale, end))
    if args.signed and args.pair_loss:
        pair_losses(cache, os.path.join(cache, "models", "animatediff_motion_lora", f"{args.tag}_pan.safetensors"),
                    args.strength)
    right, diffs = counts(per_motion)
    strict = sum(ok for moved in per_motion.values() for _, ok in moved)
    print(f"{args.tag}: {right}/{2 * len(seeds)} clips move the way the pan implies ({strict} by the demo's rule: "
          f">= 4 px that way, R^2 >= 0.5)", flush=True)
    if diffs:
        print(f"{args.tag}: pan-left's content further right than pan-right's on {sum(d > 0 for d in diffs)}/"
              f"{len(diffs)} seeds with the object found in both (differences {', '.join(f'{d:+.2f}' for d in diffs)})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
