"""Frame helpers: sizes, resizing, count matching, temporal smoothing, and loading videos/folders with OpenCV."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

cv2 = pytest.importorskip("cv2")

from motion_core.frames import (  # noqa: E402
    center_crop_box, gaussian_taps, load_frames, match_frame_count, resample_indices, resize_frame,
    target_size, temporal_smooth, to_rgb_float)


def test_target_size_keeps_or_follows_aspect():
    assert target_size(640, 480, 0, 0) == (640, 480)
    assert target_size(640, 480, 320, 0) == (320, 240)
    assert target_size(640, 480, 0, 120) == (160, 120)
    assert target_size(640, 480, 100, 100) == (100, 100)
    with pytest.raises(ValueError, match="width and height"):
        target_size(640, 480, -1, 0)


def test_center_crop_box_matches_comfyui_rule():
    assert center_crop_box(640, 480, 512, 512) == (80, 0, 480, 480)  # wide -> trim left/right
    assert center_crop_box(480, 640, 512, 512) == (0, 80, 480, 480)  # tall -> trim top/bottom
    assert center_crop_box(512, 512, 512, 512) == (0, 0, 512, 512)


def test_resize_frame_crops_centre_then_scales():
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 20:60] = 200  # the centre square is bright, the side margins dark
    out = resize_frame(frame, 10, 10, "crop")
    assert out.shape == (10, 10, 3) and out.min() == 200
    stretched = resize_frame(frame, 10, 10, "stretch")
    assert stretched.shape == (10, 10, 3) and stretched[:, 0].max() == 0  # margins kept when stretching
    with pytest.raises(ValueError, match="crop, stretch"):
        resize_frame(frame, 10, 10, "pad")


def test_to_rgb_float_handles_gray_bgra_and_16_bit():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert to_rgb_float(bgr)[0, 0].tolist() == [0.0, 0.0, 1.0]
    bgra = np.dstack([bgr, np.full((2, 2), 7, np.uint8)])
    assert to_rgb_float(bgra)[0, 0].tolist() == [0.0, 0.0, 1.0]
    gray16 = np.full((2, 2), 65535 // 2, np.uint16)
    out = to_rgb_float(gray16)
    assert out.shape == (2, 2, 3) and abs(float(out[0, 0, 1]) - 0.5) < 1e-4
    assert torch.from_numpy(out).is_contiguous()


def test_resample_indices_pins_ends_and_takes_nearest():
    assert resample_indices(24, 48)[:4] == [0, 0, 1, 1] and resample_indices(24, 48)[-1] == 23
    assert resample_indices(24, 12) == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert resample_indices(5, 5) == [0, 1, 2, 3, 4]
    assert resample_indices(7, 1) == [0]


def test_match_frame_count():
    imgs = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 2, 2, 3)
    assert match_frame_count(imgs, 6) is imgs
    single = imgs[:1]
    assert match_frame_count(single, 16) is single  # one map drives every frame
    with pytest.raises(ValueError, match=r"6 images but the animation has 16 frames.*resample"):
        match_frame_count(imgs, 16, "error")
    out = match_frame_count(imgs, 11, "resample")
    assert out.shape == (11, 2, 2, 3)
    assert out[:, 0, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    with pytest.raises(ValueError, match="on_mismatch"):
        match_frame_count(imgs, 11, "loop")


def test_temporal_smooth():
    imgs = torch.zeros(9, 2, 2, 3)
    imgs[4] = 1.0
    assert temporal_smooth(imgs, 0) is imgs
    out = temporal_smooth(imgs, 1.0)
    taps = gaussian_taps(1.0)
    r = len(taps) // 2
    centre = out[:, 0, 0, 0]
    assert torch.allclose(centre, centre.flip(0))  # symmetric around the impulse
    assert float(centre[4]) == pytest.approx(float(taps[r]), rel=1e-6)
    assert float(centre[4]) < 1.0 and float(centre[3]) > 0.0 and float(centre[0]) < float(centre[3])
    # a constant sequence stays constant, ends included (renormalised, not padded with zeros)
    const = torch.full((5, 1, 1, 3), 0.7)
    assert torch.allclose(temporal_smooth(const, 2.0), const)
    with pytest.raises(ValueError, match="temporal_smoothing"):
        temporal_smooth(imgs, -1)


# ---------------------------------------------------------------- loading

def write_video(path: Path, n: int, fps: float = 12.0, size=(32, 24)) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))  # frame i has grey level 20*i
    w.release()


def grey_levels(images: torch.Tensor) -> list[int]:
    return [round(float(v) * 255 / 20) for v in images.mean(dim=(1, 2, 3))]


def test_load_video_start_stride_max_and_fps(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 10)
    images, fps = load_frames(video)
    assert images.shape == (10, 24, 32, 3) and images.dtype == torch.float32 and fps == pytest.approx(12.0)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert grey_levels(images) == list(range(10))
    images, _ = load_frames(video, start_frame=1, stride=3, max_frames=2)
    assert grey_levels(images) == [1, 4]
    images, _ = load_frames(video, start_frame=2, stride=4)
    assert grey_levels(images) == [2, 6]
    images, _ = load_frames(video, width=16, height=16)
    assert images.shape == (10, 16, 16, 3)
    images, _ = load_frames(video, width=16)
    assert images.shape == (10, 12, 16, 3)


def test_load_video_errors(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 4)
    with pytest.raises(ValueError, match=r"start_frame 9 is past the end .* 4 frames"):
        load_frames(video, start_frame=9)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="Cannot open .* as a video|no frame could be decoded"):
        load_frames(junk)
    with pytest.raises(ValueError, match="does not exist"):
        load_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="stride"):
        load_frames(video, stride=0)


def test_load_folder_in_natural_order_with_mixed_formats(tmp_path):
    levels = {"frame1.png": 1, "frame2.jpg": 2, "frame10.png": 10, "frame3.png": 3}
    for name, level in levels.items():
        cv2.imwrite(str(tmp_path / name), np.full((8, 12, 3), 20 * level, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    images, fps = load_frames(tmp_path)
    assert fps is None and images.shape == (4, 8, 12, 3)
    assert grey_levels(images) == [1, 2, 3, 10]
    images, _ = load_frames(tmp_path, start_frame=1, stride=2)
    assert grey_levels(images) == [2, 10]


def test_load_folder_16_bit_gray_and_size_mismatch(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((6, 8, 3), 0, np.uint8))
    with pytest.raises(ValueError, match=r"b.png is 8x6 .* 8x8; set width and height"):
        load_frames(tmp_path)
    images, _ = load_frames(tmp_path, width=4, height=4)
    assert images.shape == (2, 4, 4, 3) and float(images[0].min()) == 1.0 and float(images[1].max()) == 0.0


def test_load_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        load_frames(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Cannot decode image file .*broken.png"):
        load_frames(tmp_path)


def test_single_image_file(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.full((5, 7, 3), 40, np.uint8))
    images, fps = load_frames(tmp_path / "one.png")
    assert images.shape == (1, 5, 7, 3) and fps is None
