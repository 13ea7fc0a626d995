"""The skipping H.264 reader analyses, on the real clips, exactly the frames OpenCV's reader analyses."""

from __future__ import annotations

import pytest

from runner.sources.capture import VideoSource
from tests.runner.sources.test_capture import collect, opencv_reader

pytestmark = [pytest.mark.data, pytest.mark.slow]
# B-frames in all of them; the stampede clip's rate is not a whole number (60.1 fps), which numbering
# frames by time stamp x rate would get wrong: frames are numbered by their rank in presentation order.
CLIPS = (
    "crowd_drishti_stampede_cctv.mp4",
    "ped_pc_example02_plaza_topdown.mp4",
    "weapon_rtweapons_range_pistol.mp4",
    "luggage_projetE4_airport_suitcases_attended.mp4",
    "urfall_fall-01-cam0.mp4",
)


@pytest.mark.parametrize("clip", CLIPS)
def test_the_same_frames_pixel_for_pixel_with_fewer_decoded(shared_data, clip):
    path = shared_data / "clips" / clip
    if not path.exists():
        pytest.skip(f"{clip} absent from the shared data")
    skipping = VideoSource("cam", str(path), 5.0)
    reference = opencv_reader("cam", str(path), 5.0)
    got, expected = collect(skipping), collect(reference)
    assert [(f.index, f.t_s) for f in got] == [(f.index, f.t_s) for f in expected] and len(got) > 20
    assert all((a.image == b.image).all() for a, b in zip(got, expected))
    assert skipping.frames_read == reference.frames_read
    assert skipping.frames_decoded < 0.9 * reference.frames_decoded
