"""FreeInit settings for Sample Animation (no maths here: motion_core/freeinit.py)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core.freeinit import FILTERS, FreeInitOptions
from .common import CATEGORY, FreeInitSettings


class FreeInitNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_FreeInit",
            display_name="FreeInit",
            category=f"{CATEGORY}/consistency",
            description=(
                "FreeInit (Wu et al. 2023): Sample Animation samples the clip, diffuses the result back to the "
                "first step, keeps its low spatio-temporal frequencies, takes the high ones from fresh noise and "
                "samples again - `iterations` passes in all, so it costs about `iterations` times the time. "
                "Steadier objects and motion from the same prompt and seed. Connect to Sample Animation's freeinit "
                "input."),
            inputs=[
                io.Int.Input("iterations", default=3, min=1, max=10,
                             tooltip="Sampling passes. 1 = off (exactly a plain run); the paper uses 3 to 5. Each "
                                     "pass costs a full sampling run (less with coarse_to_fine)."),
                io.Combo.Input("filter", options=list(FILTERS), default="butterworth",
                               tooltip="Low-pass filter that decides which frequencies of the previous result are "
                                       "kept. butterworth (the paper's default): smooth cut of order `order`. "
                                       "gaussian: softest. ideal: hard sphere cut. box: hard block cut."),
                io.Float.Input("spatial_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="d_s: normalised spatial stop frequency (0-1). Higher keeps more detail of "
                                       "the previous pass (less change); 0 keeps nothing. Paper: 0.25."),
                io.Float.Input("temporal_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="d_t: normalised stop frequency over frames (0-1). Higher keeps more of the "
                                       "previous pass's motion; 0 keeps nothing. Paper: 0.25."),
                io.Int.Input("order", default=4, min=1, max=16,
                             tooltip="Butterworth order n (butterworth only): higher is a sharper cut, lower is "
                                     "closer to gaussian."),
                io.Boolean.Input("coarse_to_fine", default=False,
                                 tooltip="Fewer steps in early passes (pass i of N runs steps*i/N steps; the last "
                                         "runs all), about halving the cost at 3 passes. The paper's fast sampling."),
            ],
            outputs=[FreeInitSettings.Output(display_name="FREEINIT",
                                             tooltip="Connect to Sample Animation's freeinit input.")],
        )

    @classmethod
    def execute(cls, iterations: int, filter: str, spatial_stop: float, temporal_stop: float, order: int,
                coarse_to_fine: bool) -> io.NodeOutput:
        return io.NodeOutput(FreeInitOptions(iterations=iterations, filter=filter, d_s=spatial_stop,
                                             d_t=temporal_stop, order=order, coarse_to_fine=coarse_to_fine))


NODES = [FreeInitNode]
