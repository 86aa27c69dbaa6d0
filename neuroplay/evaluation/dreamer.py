"""Dreaming for the evaluation: `Dreamer` steps a batch of dreams, `Dreamers` one whose contexts differ in
length, `rollout` runs one for H steps, and `h1_logits` gives many samples' next-frame logits at once.

All of it goes through the world model's dream interface (`neuroplay.models.interface`), as play's engine
does for one dream, so no code here depends on the architecture. Every prediction starts from the context play
would hold (`wm.context_frames`): through a KV cache a history frame's keys were computed from its own window,
so a block-causal model's prediction reaches n_layers * (max_history - 1) frames back, not max_history - 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neuroplay.models.decoding import TokenDecoder


class Dreamer:
    """Open-loop stepping of a batch of dreams: `logits(action)` for the current state, `push(tokens)` advances.

    `logits` may be asked for several actions before a push. `history_actions` (B, T-1): the actions taken at
    the history frames but the last (default NOOP: right for a game's first frames, an approximation elsewhere;
    pass the recorded actions where known); `push(tokens, action)` takes the action the pushed frame was dreamed
    under (default: the action of the first `logits` call since the last push, the step's own; later calls are
    what-ifs such as the LEFT/RIGHT sensitivity probe). `use_cache=False` dreams on the rolled window even
    where the model has a cache (the reference the cache is tested against).
    """

    def __init__(self, wm: Any, history: torch.Tensor, use_cache: bool | None = None,
                 history_actions: torch.Tensor | None = None) -> None:
        self.wm = wm
        b, t = history.shape[:2]
        acts = (torch.zeros(b, t - 1, dtype=torch.long, device=history.device)  # (B, T-1) NOOP
                if history_actions is None else history_actions.long())
        self.state = wm.start(history, acts, cached=use_cache is not False)
        self._step_action: torch.Tensor | None = None

    @property
    def last(self) -> torch.Tensor:
        """(B, 336) the newest frame's tokens."""
        return self.state.last_tokens

    def tile(self, k: int) -> Dreamer:
        """k copies of this batch, rows [copy 0's B, copy 1's, ...], sharing the warm-up (fresh: nothing
        asked since the last push carries over)."""
        d = Dreamer.__new__(Dreamer)
        d.wm, d.state, d._step_action = self.wm, self.state.tile(k), None
        return d

    def logits(self, action: torch.Tensor) -> torch.Tensor:
        """(B, 336, V) float logits of the next frame under `action` (B,)."""
        if self._step_action is None:
            self._step_action = action
        return self.wm.next_logits(self.state, action).logits.float()

    def push(self, tokens: torch.Tensor, action: torch.Tensor | None = None) -> None:
        """Advance by the frame `tokens` (B, 336), dreamed under `action` (B,) (see the class)."""
        a = self._step_action if action is None else action
        self._step_action = None
        if a is None:
            raise ValueError("Dreamer.push: no action for the pushed frame (pass it, or ask `logits` first)")
        self.wm.advance(self.state, tokens, a)


class Dreamers:
    """`Dreamer`s of one batch whose histories differ in length (a state near its episode's start has fewer
    frames of context), stepped as one: `logits` and `push` take and give the whole batch in its order.

    groups: (indices into the batch (b,), history (b, T, 336), actions taken at its frames but the last
    (b, T-1)); the groups' indices partition range(B).
    """

    def __init__(self, wm: Any, groups: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]],
                 use_cache: bool | None = None) -> None:
        self.parts = [(torch.from_numpy(idx).to(h.device), Dreamer(wm, h, use_cache, a)) for idx, h, a in groups]
        self.batch = sum(len(idx) for idx, _, _ in groups)
        first = groups[0][1]
        self.last = torch.empty(self.batch, first.shape[-1], dtype=first.dtype, device=first.device)
        """(B, 336) the newest frame: the last history frame, then the last pushed one."""
        for idx, d in self.parts:
            self.last[idx] = d.last

    def tile(self, k: int) -> Dreamers:
        """k copies of the batch, rows [copy 0's B, copy 1's, ...]: the same states dreamed under k action
        sequences, each context warmed once (`Dreamer.tile`)."""
        d = Dreamers.__new__(Dreamers)
        b = self.batch
        d.parts = [(torch.cat([idx + j * b for j in range(k)]), dr.tile(k)) for idx, dr in self.parts]
        d.batch, d.last = k * b, self.last.repeat(k, 1)  # (kB, 336)
        return d

    def logits(self, action: torch.Tensor) -> torch.Tensor:
        """(B, 336, V) float logits of the next frame under `action` (B,)."""
        out: torch.Tensor | None = None
        for idx, d in self.parts:
            lg = d.logits(action[idx])
            if out is None:
                out = lg.new_empty(self.batch, *lg.shape[1:])
            out[idx] = lg
        assert out is not None
        return out

    def push(self, tokens: torch.Tensor, action: torch.Tensor | None = None) -> None:
        """Advance by the frame `tokens` (B, 336), dreamed under `action` (B,) (see `Dreamer.push`)."""
        for idx, d in self.parts:
            d.push(tokens[idx], None if action is None else action[idx])
        self.last = tokens


def rollout(d: Dreamers, actions: torch.Tensor, decoder: TokenDecoder | None = None) -> torch.Tensor:
    """Open-loop dream from `d` (fresh from its history) under actions (B, H) -> predicted tokens (B, H, 336).

    `decoder`: how tokens are drawn (play's decoder, `neuroplay.models.decoding`); None: argmax.
    """
    preds: list[torch.Tensor] = []
    prev = d.last
    for k in range(actions.shape[1]):
        if k:
            d.push(preds[-1], actions[:, k - 1])
        lg = d.logits(actions[:, k])
        preds.append(lg.argmax(-1) if decoder is None else decoder(lg, prev))
        prev = preds[-1]
    return torch.stack(preds, 1)


RUN_STEPS = 64
"""Longest run of samples in one sequence pass (a longer one is split; each part starts with its context)."""
RUN_FRAMES = 160
"""Frames per batch of the 1-step pass (bounds the windowed keys/values it holds, ~100 MB for lite)."""


def plan_runs(samples: np.ndarray, context: int) -> list[tuple[int, int, int, np.ndarray]]:
    """Group (episode, t) samples (n, 2) into runs for `h1_logits`: (episode, first frame, frames, indices of
    the run's samples). A run's frames are first..first+frames-1; each sample t of it has its `context` frames
    before t inside the run (or all since the episode's start). Samples closer than `context` + 1 share a run:
    the frames between them cost no more than a new run's context."""
    order = np.lexsort((samples[:, 1], samples[:, 0]))
    runs: list[tuple[int, int, int, np.ndarray]] = []

    def close(cur: list[int]) -> None:
        e, t0, t1 = samples[cur[0], 0], samples[cur[0], 1], samples[cur[-1], 1]
        first = max(0, int(t0) - context)
        runs.append((int(e), first, int(t1) + 1 - first, np.array(cur)))

    cur: list[int] = []
    for i in order:
        e, t = samples[i]
        if cur and (e != samples[cur[0], 0] or t - samples[cur[-1], 1] > context + 1
                    or t - samples[cur[0], 1] >= RUN_STEPS):
            close(cur)
            cur = []
        cur.append(int(i))
    if cur:
        close(cur)
    return runs


def h1_logits(wm: Any, samples: np.ndarray, tokens_at: Callable[[int, np.ndarray], torch.Tensor],
              actions_at: Callable[[int, np.ndarray], np.ndarray], context: int | None = None) -> torch.Tensor:
    """1-step logits (n, 336, V) of (episode, t) samples (n, 2), in their order, each with its full context
    (`context_frames`): equal to `Dreamers` from the same context to float precision (tested).

    Whole runs of nearby samples go through one `forward_sequence` (`plan_runs`), each frame read once instead of
    a context per sample: for a block-causal model on the gold tier's consecutive samples, a sample costs one
    frame pass instead of 13.
    `tokens_at(episode, frames)` -> (len, 336) tokens; `actions_at(episode, frames)` -> actions taken there;
    `context`: frames of context (default: all the model can see).
    """
    by_len: dict[int, list[tuple[int, int, int, np.ndarray]]] = {}
    for r in plan_runs(samples, wm.context_frames if context is None else context):
        by_len.setdefault(r[2], []).append(r)
    result: torch.Tensor | None = None
    for m, group in by_len.items():
        per = max(1, RUN_FRAMES // m)
        for j in range(0, len(group), per):
            g = group[j : j + per]
            frames = torch.stack([tokens_at(e, np.arange(f, f + m + 1)) for e, f, _, _ in g])  # (B, m+1, 336)
            acts = torch.from_numpy(np.stack([actions_at(e, np.arange(f, f + m)) for e, f, _, _ in g])).long()
            acts = acts.to(frames.device)  # (B, m): the action taken at each input frame
            steps = sorted({int(samples[i, 1]) - f for _, f, _, idx in g for i in idx})
            col = {st: k for k, st in enumerate(steps)}
            lg = wm.forward_sequence(frames, acts, steps=torch.tensor(steps, device=frames.device)).logits
            lg = lg.float()  # (B, len(steps), 336, V)
            if result is None:
                result = lg.new_empty(len(samples), *lg.shape[2:])
            for b, (_, f, _, idx) in enumerate(g):
                result[torch.from_numpy(idx)] = lg[b, [col[int(samples[i, 1]) - f] for i in idx]]
    assert result is not None
    return result
