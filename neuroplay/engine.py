"""The play-time step for any preset: tokens -> world model -> token decoder -> VQ decode -> uint8 frame.

What makes it fast enough for 15 FPS on a laptop CPU (figures in docs/performance.md, `neuroplay bench`):
- bf16 weights where the CPU has AVX-512 bf16 / AMX, or on CUDA (2x measured on the 2-core CPU here);
- channels_last VQ decode; everything under `torch.inference_mode`;
- block-causal models (`lite`) keep a KV cache: the newest frame's pass does not depend on the action,
  so `prepare()` runs it while the game waits for the next key, and only the 337-token query pass and
  the decode sit between the key press and the screen. Fused models (`lite2`) have one pass per frame:
  `prepare()` commits the previous frame under the action that was played and runs the new frame's
  layers below `action_layer`; the key then costs only the layers from `action_layer` up and the decode.
  Full-attention models (`spec`) recompute the 1681-token forward each step (fine on a GPU, ~3 FPS on a
  2-core CPU);
- optional `torch.compile` (`--compile`, off by default: 12-25 s start-up for 0-30% on a CPU; on CUDA
  mode "reduce-overhead", i.e. CUDA graphs: not measured here, no GPU was lent). Not for fused models on
  CUDA: their query keeps its keys/values in the cache, and CUDA graphs reuse output buffers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neuroplay.checkpoint import load_pair
from neuroplay.device import bf16_fast, resolve_device
from neuroplay.models.decoding import DecodeConfig, TokenDecoder
from neuroplay.models.vqvae import VQVAE, to_uint8_image
from neuroplay.models.world_model import KVCache, TemporalWorldModel

Revised = tuple[torch.Tensor, np.ndarray] | None
"""Other tokens (336,) and their frame, or None to keep the step's own."""
Revise = Callable[[torch.Tensor, torch.Tensor, np.ndarray], Revised]
"""(logits (336, V), tokens (336,), frame (84, 64, 3)) -> `Revised`."""


@dataclass
class DreamStep:
    """One dreamed frame and what it cost."""

    frame: np.ndarray
    """(84, 64, 3) uint8."""
    tokens: np.ndarray
    """(336,) uint8 token ids of the frame."""
    changed_tokens: int
    """Tokens that differ from the previous frame: a drift signal for the HUD."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    """prepare (frame pass), model (query), decode, total."""


class DreamEngine:
    """Owns a VQ-VAE + world model pair and the dream's state (history or KV cache)."""

    def __init__(
        self,
        vq: VQVAE,
        wm: TemporalWorldModel,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        decode: DecodeConfig = DecodeConfig(),
        compile: bool = False,
        seed: int = 0,
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        use_bf16 = dtype == "bf16" or (dtype == "auto" and bf16_fast(self.device))
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.vq = vq.to(self.device).eval()
        self.wm = wm.to(self.device, self.dtype).eval()
        self.vq.decoder.to(self.dtype, memory_format=torch.channels_last)
        self.seed = seed
        self.decoder = TokenDecoder(decode, seed, self.device)
        """How the dream's tokens are drawn from the logits; reseeded by every `reset`, so a dream is a function
        of its start, its actions and the seed."""
        self.window = wm.cfg.max_history
        self.cache: KVCache | None = None
        self.history: deque[torch.Tensor] = deque(maxlen=self.window)
        self.pending: torch.Tensor | None = None  # newest tokens not yet pushed into the cache
        self.pending_action: torch.Tensor | None = None  # fused: the action that produced `pending`, to commit
        self.last_tokens: torch.Tensor | None = None
        # On CUDA, "reduce-overhead" replays the step as CUDA graphs (batch-1 steps are launch-bound there).
        mode = "reduce-overhead" if self.device.type == "cuda" and not wm.fused else "default"
        self._query = torch.compile(wm.query, mode=mode) if compile and wm.block_causal else wm.query
        self._forward = torch.compile(wm.forward, mode=mode) if compile and not wm.block_causal else wm.forward
        self._warm = False

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: str = "auto", **kw: object) -> DreamEngine:
        """Load `<run_dir>/vqvae` + `<run_dir>/wm` (a training run or `assets/checkpoints/<preset>`)."""
        vq, wm, _ = load_pair(run_dir, "cpu")
        return cls(vq, wm, device, **kw)  # type: ignore[arg-type]

    @property
    def cached(self) -> bool:
        return self.wm.block_causal

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (T, 84, 64, 3) -> tokens (T, 336) on the engine's device."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return self.vq.encode(x).flatten(1)

    @torch.inference_mode()
    def reset(
        self, frames: np.ndarray | None = None, tokens: torch.Tensor | np.ndarray | None = None,
        actions: np.ndarray | list[int] | None = None, seed: int | None = None,
    ) -> np.ndarray:
        """Start the dream from real frames (T, 84, 64, 3) or tokens (T, 336); returns the last frame decoded.

        The token decoder restarts from `seed` (default: the engine's), so the same start and actions give
        the same dream.

        `actions` (T-1,): the action taken at each history frame but the last, which fused models (lite2)
        condition those frames on. Without them NOOP is assumed: exact for a game's first frames (the
        reset screen and the warm-up NOOPs of `Session.restart` / `real_history`), an approximation for a
        re-anchor mid-game, whose real actions the caller did not pass. Other models ignore them.
        """
        if tokens is None:
            if frames is None:
                raise ValueError("reset needs frames or tokens")
            toks = self.encode(frames)
        else:
            toks = torch.as_tensor(np.asarray(tokens), device=self.device).long().reshape(-1, self.wm.n_tokens)
        acts = torch.zeros(len(toks) - 1, dtype=torch.long, device=self.device)  # NOOP unless told
        if actions is not None and len(toks) > 1:
            given = torch.as_tensor(np.asarray(actions), device=self.device).long().reshape(-1)
            acts[max(0, len(acts) - len(given)) :] = given[-len(acts) :]
        toks = toks[-self.window :] if not self.cached else toks
        self.seed = self.seed if seed is None else seed
        self.decoder.generator.manual_seed(self.seed)
        self.history.clear()
        self.cache = self.wm.new_cache() if self.cached else None
        for t, a in zip(toks[:-1], acts[len(acts) - len(toks) + 1 :]):
            self._push(t, a)
        self.pending, self.last_tokens, self.pending_action = toks[-1], toks[-1], None
        if not self.cached:
            self.history.append(toks[-1])
        if not self._warm:
            self._warm_up()
        return self.decode(toks[-1:])[0]

    @torch.inference_mode()
    def _warm_up(self) -> None:
        """One untimed step on a throwaway state before the first real one: the first call of each kernel
        is several times slower (allocations, oneDNN primitives) and would be the game's first frame.

        Compiled, the query is also run at a second frame time: dynamo specialises on the cache's integer
        time at first and recompiles (10-25 s on a CPU) when it changes, so that happens here, not in play.
        """
        toks = torch.zeros(self.window, self.wm.n_tokens, dtype=torch.long, device=self.device)
        a = torch.zeros(1, dtype=torch.long, device=self.device)
        if self.cached:
            cache = self.wm.new_cache()
            for t in toks[:-1]:
                self.wm.observe(cache, t[None], a)
            self.wm.push_frame(cache, toks[-1:])
            logits = self._query(cache, a).logits
            if self._query is not self.wm.query:
                self.wm.push_frame(cache, toks[:1], a if self.wm.fused else None)
                logits = self._query(cache, a).logits
        else:
            logits = self._forward(toks[None], a).logits
        self.decode(self.decoder(logits.float(), toks[-1:]))
        self.decoder.generator.manual_seed(self.seed)
        self._warm = True

    def _push(self, t: torch.Tensor, action: torch.Tensor | None = None) -> None:
        """A history frame (336,) with the action (scalar) taken at it into the cache (or the window)."""
        if self.cached:
            assert self.cache is not None
            if action is not None and self.wm.fused:
                self.wm.observe(self.cache, t[None], action.reshape(1))
            else:
                self.wm.push_frame(self.cache, t[None])
        else:
            self.history.append(t)

    @torch.inference_mode()
    def prepare(self) -> float:
        """Run the action-independent frame pass now (call while waiting for input); returns ms.

        Fused models: commit the previous frame under the action played at it (no recompute: that action
        was the step's query), then the new frame's layers below `action_layer`.
        """
        if not self.cached or self.pending is None:
            return 0.0
        t0 = time.perf_counter()
        assert self.cache is not None
        self.wm.push_frame(self.cache, self.pending[None], self.pending_action if self.wm.fused else None)
        self.pending, self.pending_action = None, None
        return (time.perf_counter() - t0) * 1e3

    @torch.inference_mode()
    def logits(self, action: int) -> torch.Tensor:
        """Next-frame logits (336, V) for `action` without advancing the dream."""
        self.prepare()
        a = torch.tensor([action], device=self.device)
        if self.cached:
            assert self.cache is not None
            return self._query(self.cache, a).logits[0].float()
        hist = list(self.history)
        while len(hist) < self.window:  # a short start is padded by repeating the first frame
            hist.insert(0, hist[0])
        return self._forward(torch.stack(hist)[None], a).logits[0].float()

    @torch.inference_mode()
    def step(self, action: int, revise: Revise | None = None) -> DreamStep:
        """Advance the dream by one frame under `action`.

        `revise(logits (336, V), tokens (336,), frame)` may return other tokens of the model's and their frame
        (None: keep them) before the frame is committed: the game-flow rules of `DreamEnv` choose there."""
        t0 = time.perf_counter()
        prep = self.prepare()
        t1 = time.perf_counter()
        logits = self.logits(action)
        assert self.last_tokens is not None
        toks = self.decoder(logits[None], self.last_tokens[None])[0]
        t2 = time.perf_counter()
        frame = self.decode(toks[None])[0]
        if revise is not None and (chosen := revise(logits, toks, frame)) is not None:
            toks, frame = chosen
        t3 = time.perf_counter()
        changed = int((toks != self.last_tokens).sum())
        self.last_tokens = toks
        if self.cached:
            self.pending = toks
            self.pending_action = torch.tensor([action], device=self.device)
        else:
            self.history.append(toks)
        timings = {"prepare": prep, "model": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return DreamStep(frame, toks.to(torch.uint8).cpu().numpy(), changed, timings)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Tokens (B, 336) -> uint8 frames (B, 84, 64, 3)."""
        z = self.vq.quantizer.lookup(tokens.long().view(-1, 21, 16)).to(self.dtype)
        z = z.contiguous(memory_format=torch.channels_last)
        return to_uint8_image(self.vq.decoder(z)).cpu().numpy()

