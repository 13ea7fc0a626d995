"""The fire and weapon rules' episode latch: one alert, then quiet until nothing was hit for clear_s."""

from runner.rules._episode import EpisodeLatch


def test_the_latch_holds_while_hits_continue_and_releases_after_clear_s():
    latch = EpisodeLatch(clear_s=2.0)
    assert not latch.holds(0.0)  # nothing alerted yet
    latch.note_hit(0.0)
    latch.start()
    for t_s in (0.2, 1.0, 1.8):
        latch.note_hit(t_s)
        assert latch.holds(t_s)
    assert latch.holds(3.8)  # exactly clear_s after the last hit: still the same episode
    assert not latch.holds(3.81)
    assert not latch.active
    assert not latch.holds(10.0)


def test_a_latch_started_without_a_hit_releases_at_once():
    latch = EpisodeLatch(clear_s=5.0)
    latch.start()
    assert not latch.holds(0.0)
