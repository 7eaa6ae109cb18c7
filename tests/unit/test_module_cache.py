"""The non-finite check of the loader, and the file cache behind Load Motion Module."""
import os

import pytest
import torch
from safetensors.torch import save_file

from motion_core import MotionFormatError, load_motion_module
from motion_core.module_cache import MotionFileCache
from tools.standins import motion_state_dict

# The reduced SD1.5 layout (34 M weights): a whole v1 set that builds in about a second.

KEY = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"


def _write(path, seed=0, dtype=torch.float16):
    save_file(motion_state_dict("mm_sd_v15", seed=seed, dtype=dtype, layout="reduced"), str(path))
    return path


@pytest.mark.parametrize("dtype,bad", [(torch.float32, float("nan")), (torch.float16, float("inf")),
                                       (torch.bfloat16, float("-inf")), (torch.float16, float("nan"))])
def test_non_finite_weights_are_refused_in_every_precision(dtype, bad):
    sd = motion_state_dict("mm_sd_v15", seed=1, dtype=dtype, layout="reduced")
    key = [k for k in sd if k.endswith("proj_out.bias")][-1]
    sd[key][5] = bad
    with pytest.raises(MotionFormatError, match="NaN/inf.*proj_out.bias"):
        load_motion_module(sd, dtype=None)


def test_large_finite_fp16_weights_are_not_mistaken_for_inf():
    # A sum in the file's dtype would overflow here; the min/max check must not.
    sd = motion_state_dict("mm_sd_v15", seed=1, dtype=torch.float16, layout="reduced")
    sd[KEY].fill_(60000.0)
    assert load_motion_module(sd, dtype=None).info.version == "v1"


def test_hit_is_a_new_object_over_the_same_weights(tmp_path):
    path = _write(tmp_path / "m.safetensors")
    cache = MotionFileCache()
    a = cache.load(path)
    b = cache.load(path)
    assert (cache.misses, cache.hits) == (1, 1)
    assert a is not b and a.info == b.info
    pa, pb = a.get_parameter(KEY), b.get_parameter(KEY)
    assert pa is not pb and pa.data_ptr() == pb.data_ptr() and pa.dtype == torch.float16
    b.down_blocks[0].motion_modules[0].temporal_transformer.proj_in.weight = torch.nn.Parameter(torch.zeros(2, 2))
    assert torch.equal(cache.load(path).get_parameter(KEY), pa)  # replacing a parameter stays local


def test_weights_written_in_place_are_never_served_again(tmp_path):
    path = _write(tmp_path / "m.safetensors")
    cache = MotionFileCache()
    first = cache.load(path)
    original = first.get_parameter(KEY).clone()
    with torch.inference_mode():  # how ComfyUI runs nodes
        first.get_parameter(KEY).mul_(0)
    again = cache.load(path)
    assert cache.misses == 2 and torch.equal(again.get_parameter(KEY), original)


def test_changed_file_and_other_precision_are_misses(tmp_path):
    path = _write(tmp_path / "m.safetensors", seed=0)
    cache = MotionFileCache()
    old = cache.load(path).get_parameter(KEY).clone()
    assert cache.load(path, dtype=torch.float32).get_parameter(KEY).dtype == torch.float32
    assert cache.misses == 2
    _write(path, seed=5)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime even on coarse clocks
    new = cache.load(path).get_parameter(KEY)
    assert cache.misses == 3 and not torch.equal(new, old)
    assert len(cache._entries) == 1  # the entries of the old contents (both precisions) were dropped


def test_cache_is_bounded_and_missing_files_keep_the_loader_message(tmp_path):
    cache = MotionFileCache(max_entries=1)
    a, b = _write(tmp_path / "a.safetensors"), _write(tmp_path / "b.safetensors", seed=2)
    cache.load(a), cache.load(b), cache.load(a)
    assert cache.misses == 3 and len(cache._entries) == 1
    with pytest.raises(MotionFormatError, match="animatediff_models"):
        cache.load(tmp_path / "missing.safetensors")
