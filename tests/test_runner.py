"""The UI loop's bookkeeping: frame statistics and the resident-memory slope a soak reports."""

from neuroplay.app.runner import RSS_WARM, rss_growth


def test_rss_growth_measures_from_the_warmed_baseline() -> None:
    start_up = [300.0, 320.0] + [340.0] * (RSS_WARM - 2)  # the first minutes: allocator and model warm-up
    flat = start_up + [340.0] * 40 + [343.4]  # a 30-minute soak that grew 1% after warm-up
    assert rss_growth(flat) == 0.01
    leak = start_up + [340.0 + 2 * i for i in range(40)]  # a steady leak after warm-up
    assert rss_growth(leak) > 0.2
    short = [300.0, 320.0, 330.0]  # too short to have a warm baseline: measured from the second sample
    assert rss_growth(short) == round(330 / 320 - 1, 4)
    assert rss_growth([300.0, 301.0]) is None
