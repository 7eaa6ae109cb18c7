"""Camera-motion augmentation and the synthetic set: the geometry must do what the names promise."""
import numpy as np
import pytest

from training import augment, synthetic


def _still(size=96, centre=(48, 48), radius=10, colour="red"):
    return synthetic.render_shape(size, "circle", synthetic.COLOURS[colour], centre, radius)


def _track(clip, colour="red"):
    return synthetic.track_object(clip, colour)


def test_zoom_in_grows_and_zoom_out_shrinks():
    img = _still()
    zin = augment.camera_motion_clip(img, "zoom_in", 8, 64, strength=0.5)
    zout = augment.camera_motion_clip(img, "zoom_out", 8, 64, strength=0.5)
    a_in, a_out = _track(zin)["area"], _track(zout)["area"]
    assert zin.shape == (8, 64, 64, 3) and zin.dtype == np.uint8
    assert np.all(np.diff(a_in) > 0) and np.all(np.diff(a_out) < 0)
    # linear size grows by 1 + s = 1.5, so the area by ~2.25
    assert a_in[-1] / a_in[0] == pytest.approx(2.25, rel=0.1)
    # the centred object stays centred
    assert abs(_track(zin)["cx"][-1] - 31.5) < 1.0


@pytest.mark.parametrize("motion,axis,sign", [("pan_left", "cx", +1), ("pan_right", "cx", -1),
                                              ("pan_up", "cy", +1), ("pan_down", "cy", -1)])
def test_pans_move_content_opposite_to_camera(motion, axis, sign):
    clip = augment.camera_motion_clip(_still(), motion, 6, 64, strength=0.5)
    pos = _track(clip)[axis]
    steps = np.diff(pos)
    assert np.all(np.sign(steps) == sign)
    other = _track(clip)["cy" if axis == "cx" else "cx"]
    assert np.ptp(other) < 0.5


@pytest.mark.parametrize("motion,expected_turn", [("roll_cw", +1), ("roll_ccw", -1)])
def test_roll_turns_content_against_camera(motion, expected_turn):
    # camera clockwise -> content anticlockwise on screen (maths-positive angle; y points down, hence -dy)
    img = _still(centre=(70, 48), radius=6)
    clip = augment.camera_motion_clip(img, motion, 5, 64, strength=0.5)
    t = _track(clip)
    angles = np.unwrap(np.arctan2(-(t["cy"] - 31.5), t["cx"] - 31.5))
    total = angles[-1] - angles[0]
    assert np.sign(total) == expected_turn
    assert abs(total) == pytest.approx(np.pi / 4, rel=0.15)  # s * 90 degrees


def test_camera_motion_on_a_video_keeps_its_own_motion():
    spec = synthetic.random_spec(np.random.default_rng(0), 96, 6, "blue", "square", "right")
    clip = synthetic.render_clip(spec, 96)
    out = augment.camera_motion_clip(clip, "zoom_in", 6, 64, strength=0.2)
    t = _track(out, "blue")
    assert np.all(np.diff(t["cx"]) > 0)  # still moving right
    with pytest.raises(ValueError, match="needs 6 source frames"):
        augment.camera_motion_clip(clip[:3], "zoom_in", 6, 64)


def test_unknown_motion_names_the_choices():
    with pytest.raises(ValueError, match="zoom_in.*roll_ccw"):
        augment.camera_motion_clip(_still(), "dolly", 4, 32)
    assert augment.get_camera_motion("Zoom-In") is augment.CAMERA_MOTIONS["zoom_in"]


def test_resize_center_crop_and_flip():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :20] = 255  # left quarter white: cropped away by the centre crop
    img[:, 40:] = 100
    out = augment.resize_center_crop(img, 20)
    assert out.shape == (20, 20, 3)
    assert out[:, 0].max() < 255 and out[:, -1, 0].mean() == pytest.approx(100, abs=2)
    clip = np.stack([out, out])
    flipped = augment.hflip(clip)
    assert np.array_equal(flipped[:, :, 0], clip[:, :, -1])
    x = augment.to_tensor_range(clip)
    assert tuple(x.shape) == (2, 3, 20, 20) and float(x.min()) >= -1 and float(x.max()) <= 1


@pytest.mark.parametrize("direction", list(synthetic.DIRECTIONS))
def test_synthetic_clip_moves_in_its_direction(direction):
    spec = synthetic.random_spec(np.random.default_rng(3), 64, 9, "green", "circle", direction)
    t = synthetic.track_object(synthetic.render_clip(spec, 64), "green")
    dx, dy = synthetic.DIRECTIONS[direction]
    moved = (t["cx"][-1] - t["cx"][0], t["cy"][-1] - t["cy"][0])
    assert moved[0] * dx + moved[1] * dy > 0.4 * 64
    assert abs(moved[0] * dy) + abs(moved[1] * dx) < 1.0  # no drift across the motion axis
    assert t["area"].min() > 0


def test_colour_mask_separates_palette_colours():
    img = synthetic.render_shape(64, "square", synthetic.COLOURS["red"], (20, 20), 8)
    img2 = synthetic.render_shape(64, "square", synthetic.COLOURS["blue"], (44, 44), 8)
    both = np.maximum(img, img2)[None]
    red, blue = synthetic.track_object(both, "red"), synthetic.track_object(both, "blue")
    assert red["cx"][0] < 25 < 39 < blue["cx"][0]
    assert synthetic.track_object(both, "green")["area"][0] == 0


def test_make_synthetic_set_writes_videos_captions_and_metadata(tmp_path):
    specs = synthetic.make_synthetic_set(str(tmp_path), videos_per_prompt=1, size=32, n_frames=5,
                                         colours=["red"], shapes=["circle"], directions=["left", "up"],
                                         stills_per_prompt=1, seed=1)
    assert [s.caption for s in specs] == ["a red circle moving left", "a red circle moving up", "a red circle"]
    lines = (tmp_path / "captions.csv").read_text().strip().splitlines()
    assert lines[0] == "file,caption" and len(lines) == 4
    assert (tmp_path / "metadata.json").exists() and (tmp_path / specs[2].file).suffix == ".png"
    from training.data import count_frames, read_frames
    frames = read_frames(str(tmp_path / specs[0].file), range(5))
    t = synthetic.track_object(frames, "red")
    assert count_frames(str(tmp_path / specs[0].file)) == 5 and t["cx"][-1] < t["cx"][0] - 5


@pytest.mark.parametrize("direction", list(synthetic.DIRECTIONS))
def test_motion_trail_lies_behind_the_shape_and_leaves_the_tracked_object_alone(direction):
    spec = synthetic.random_spec(np.random.default_rng(5), 64, 5, "blue", "square", direction)
    plain, trailed = synthetic.render_clip(spec, 64), synthetic.render_clip(spec, 64, trail=3.5, trail_opacity=0.6)
    tp, tt = synthetic.track_object(plain, "blue"), synthetic.track_object(trailed, "blue")
    # the tracker sees the same object (within an edge pixel): the trail stays below its colour tolerance
    assert np.allclose(tp["cx"], tt["cx"], atol=0.6) and np.allclose(tp["cy"], tt["cy"], atol=0.6)
    assert np.allclose(tp["area"], tt["area"], rtol=0.1)  # at most one antialiased edge row more
    # the faint pixels the trail adds to the background sit behind the shape (opposite to its motion)
    background = np.all(plain == np.asarray(synthetic.BACKGROUND, np.uint8), axis=-1)
    added = (np.abs(trailed.astype(int) - plain.astype(int)).sum(-1) > 10) & background
    assert added.sum() > 0
    ys, xs = np.nonzero(added[2])
    dx, dy = synthetic.DIRECTIONS[direction]
    rel = (xs - tp["cx"][2]) * dx + (ys - tp["cy"][2]) * dy  # > 0 = ahead of the centre
    assert rel.max() < 0
    # a still (no direction) gets no trail
    still = synthetic.random_spec(np.random.default_rng(5), 64, 1, "blue", "square", None)
    assert np.array_equal(synthetic.render_clip(still, 64), synthetic.render_clip(still, 64, trail=1.5))
