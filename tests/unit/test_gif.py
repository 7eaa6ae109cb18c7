"""The one GIF writer (motion_core.gif.write_gif): frames, timing, looping and the embedded comment."""
import numpy as np
import pytest
from PIL import Image, ImageSequence

from motion_core.gif import write_gif


def _frames(n=5, h=6, w=7):
    # few, saturated colours: they survive GIF's 256-colour palette exactly
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    return np.stack([np.broadcast_to(colours[i % len(colours)], (h, w, 3)) for i in range(n)])


def test_frames_timing_loop_and_comment_round_trip(tmp_path):
    frames = _frames()
    path = str(tmp_path / "a.gif")
    write_gif(path, list(frames), fps=8, loop=3, comment=b'{"prompt": 1}')  # 125 ms: GIF keeps 12 cs
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (7, 6)
        assert gif.info["loop"] == 3 and gif.info["duration"] == 120 and gif.info["comment"] == b'{"prompt": 1}'
        decoded = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])
    assert np.array_equal(decoded, frames)


def test_an_array_and_default_looping_forever(tmp_path):
    path = str(tmp_path / "b.gif")
    write_gif(path, _frames(3), fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.info["loop"] == 0 and gif.info["duration"] == 100
        assert "comment" not in gif.info


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="No frames"):
        write_gif(str(tmp_path / "c.gif"), [])
