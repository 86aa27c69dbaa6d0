"""The UI loop's machinery: the stepper thread, frame statistics and the resident-memory slope a soak reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroplay.app.runner import RSS_WARM, rss_growth
from neuroplay.session import (
    Keys,
    Session,
)


def test_rss_growth_measures_from_the_warmed_baseline() -> None:
    start_up = [300.0, 320.0] + [340.0] * (RSS_WARM - 2)  # the first minutes: allocator and model warm-up
    flat = start_up + [340.0] * 40 + [343.4]  # a 30-minute soak that grew 1% after warm-up
    assert rss_growth(flat) == 0.01
    leak = start_up + [340.0 + 2 * i for i in range(40)]  # a steady leak after warm-up
    assert rss_growth(leak) > 0.2
    short = [300.0, 320.0, 330.0]  # too short to have a warm baseline: measured from the second sample
    assert rss_growth(short) == round(330 / 320 - 1, 4)
    assert rss_growth([300.0, 301.0]) is None


@pytest.fixture(scope="module")
def dream_env(tiny_run: Path):
    from neuroplay.envs.dream import DreamEnv

    return DreamEnv.from_checkpoint(tiny_run, device="cpu")


def test_stepper_threads_and_stats(dream_env) -> None:
    from neuroplay.app.runner import FrameStats, Stepper

    s = Session("dream", dream_env)
    st = Stepper(s, threaded=True)
    stats = FrameStats(15)
    try:
        for i in range(4):
            assert st.submit(Keys(right=True), [("toggle_pause",)] if i == 3 else None)
            st.wait()
            view, new = st.poll()
            stats.tick(new and view.stepped, False, view.model_ms)
        assert s.paused and not view.stepped and stats.frames == 3
    finally:
        st.close()
    out = stats.summary()
    assert out["frames"] == 3 and out["model_step_ms"]["p50"] > 0 and out["dropped_frames"] == 0

def test_stepper_pending_refuses_a_second_key_until_the_frame_is_ready() -> None:
    import threading
    from types import SimpleNamespace

    from neuroplay.app.runner import Stepper

    gate = threading.Event()

    class Slow:  # the session surface the Stepper uses; its step blocks until the test opens the gate
        steps = idles = 0

        def view(self, stepped: bool = False) -> SimpleNamespace:
            return SimpleNamespace(stepped=stepped, n=self.steps)

        def step(self, keys: Keys | None) -> SimpleNamespace:
            gate.wait(5)
            self.steps += 1
            return self.view(True)

        def idle(self) -> float:
            self.idles += 1
            return 0.0

    s = Slow()
    st = Stepper(s, threaded=True)  # type: ignore[arg-type]
    try:
        assert s.idles == 1 and not st.pending  # the first frame pass runs before the clock starts
        assert st.submit(Keys(left=True)) and st.pending
        assert not st.wait_frame(0.02) and not st.submit(Keys(right=True))  # one frame at a time
        gate.set()
        assert st.wait_frame(5) and not st.pending
        st.wait()
        assert s.steps == 1 and s.idles == 2 and st.poll()[0].n == 1 and st.submit(Keys())
    finally:
        gate.set()
        st.close()
