"""Prompt Travel: a keyframed prompt schedule -> one conditioning row per frame (parsing/blending in motion_core)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core.prompt_travel import INTERPOLATIONS, travel_conditioning
from . import frame_count
from .common import CATEGORY

EXAMPLE = '0: "a calm sea, sunny sky"\n16: "a stormy sea, dark clouds"\n32: "a calm sea at sunset"'


class PromptTravel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_PromptTravel",
            display_name="Prompt Travel",
            category=f"{CATEGORY}/conditioning",
            description=(
                "Changes the prompt over the animation: each keyframe line sets the prompt at a frame, frames in "
                "between blend the two neighbouring text embeddings. Outputs a CONDITIONING with one row per "
                "frame; use it as Sample Animation's positive (works with context windows)."),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder (CLIP output of the checkpoint loader)."),
                io.String.Input("schedule", multiline=True, default=EXAMPLE,
                                tooltip='One keyframe per line: frame: "prompt" (e.g. 0: "a calm sea"). '
                                        '"0": "..." and a pasted JSON object work too; # starts a comment. Frames '
                                        "before the first keyframe use its prompt, frames after the last hold it."),
                io.Int.Input("frames", default=16, min=1, max=4096,
                             tooltip="Number of frames of the animation (must equal Sample Animation's frames). "
                                     "Keyframes past the end still steer the last frames towards them."),
                io.String.Input("pre_text", default="", multiline=False,
                                tooltip="Text put before every prompt (e.g. quality or style words)."),
                io.String.Input("post_text", default="", multiline=False,
                                tooltip="Text put after every prompt."),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="linear",
                               tooltip="linear: blend embeddings between keyframes (smooth change). hold: switch "
                                       "at each keyframe (hard cut)."),
            ],
            outputs=[io.Conditioning.Output(display_name="CONDITIONING",
                                            tooltip="One conditioning row per frame (batch = frames).")],
        )

    @classmethod
    def execute(cls, clip, schedule: str, frames: int, pre_text: str, post_text: str,
                interpolation: str) -> io.NodeOutput:
        if clip is None:
            raise RuntimeError("Prompt Travel got no CLIP: the checkpoint has no text encoder. Load one with a "
                               "CLIP loader, or use a checkpoint that includes it.")

        def encode(text: str):
            out = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True, return_dict=True)
            return out["cond"], out.get("pooled_output")

        cond, pooled = travel_conditioning(schedule, frames, encode, pre_text, post_text, interpolation)
        extras = {} if pooled is None else {"pooled_output": pooled}
        return io.NodeOutput([[cond, frame_count.tag(extras, "Prompt Travel", frames)]])


NODES = [PromptTravel]
