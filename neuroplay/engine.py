"""The play-time step for any preset: tokens -> world model -> token decoder -> tokenizer decode -> uint8 frame.

What makes it fast enough for 15 FPS on a laptop CPU (figures in docs/performance.md, `neuroplay bench`):
- bf16 weights where the CPU has AVX-512 bf16 / AMX, or on CUDA (2x measured on the 2-core CPU here);
- channels_last VQ-VAE decode (a patch tokenizer's is a table lookup); everything under `torch.inference_mode`;
- block-causal models (`lite`) keep a KV cache: the newest frame's pass does not depend on the action,
  so `prepare()` runs it while the game waits for the next key, and only the 337-token query pass and
  the decode sit between the key press and the screen. Fused models (`lite2`) have one pass per frame:
  `prepare()` commits the previous frame under the action that was played and runs the new frame's
  layers below `action_layer`; the key then costs only the layers from `action_layer` up and the decode.
  Full-attention models (`spec`) recompute the 1681-token forward each step (fine on a GPU, ~3 FPS on a
  2-core CPU);
- optional `torch.compile` of the keyed step (`--compile`, off by default: 12-25 s start-up for 0-30% on a CPU).

The engine speaks only the world model's dream interface (`start`, `prepare`, `next_logits`, `advance`), so it
plays any preset alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neuroplay.checkpoint import Tokenizer, load_pair
from neuroplay.data.episodes import token_dtype
from neuroplay.device import bf16_fast, resolve_device
from neuroplay.models.cache import copy_state
from neuroplay.models.decoding import DecodeConfig, TokenDecoder
from neuroplay.models.world_model import DreamState, TemporalWorldModel

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
    """(336,) token ids of the frame (uint8, or uint16 past 256 codes)."""
    changed_tokens: int
    """Tokens that differ from the previous frame: a drift signal for the HUD."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    """prepare (frame pass), model (query), decode, total."""


class DreamEngine:
    """Owns a tokenizer + world model pair and the dream's state (history or KV cache)."""

    def __init__(
        self,
        vq: Tokenizer,
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
        self.vq.for_inference(self.dtype)
        self.token_dtype = token_dtype(vq.n_codes)
        """numpy dtype of the token ids handed out (`DreamStep.tokens`)."""
        self.seed = seed
        self.decoder = TokenDecoder(decode, seed, self.device)
        """How the dream's tokens are drawn from the logits; reseeded by every `reset`, so a dream is a function
        of its start, its actions and the seed."""
        self.window = wm.cfg.max_history
        self.state: DreamState | None = None
        """The dream's batch-1 state (KV cache or history), from the world model's `start`."""
        self._next = torch.compile(wm.next_logits) if compile else wm.next_logits
        self._warm = False
        self._start: tuple[tuple[bytes, bytes], DreamState] | None = None
        """The last start (its tokens and actions, and the state): a game over's new game reuses it, saving the
        history's frame passes (about 35 ms on a CPU, half a frame at 15 FPS)."""

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: str = "auto", **kw: object) -> DreamEngine:
        """Load `<run_dir>/vqvae` + `<run_dir>/wm` (a training run or `assets/checkpoints/<preset>`)."""
        vq, wm, _ = load_pair(run_dir, "cpu")
        return cls(vq, wm, device, **kw)  # type: ignore[arg-type]

    @property
    def last_tokens(self) -> torch.Tensor | None:
        """The newest frame's tokens (336,), or None before `reset`."""
        return None if self.state is None or self.state.last_tokens is None else self.state.last_tokens[0]

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
            toks = torch.as_tensor(np.asarray(tokens, np.int64), device=self.device).reshape(-1, self.wm.n_tokens)
        acts = torch.zeros(len(toks) - 1, dtype=torch.long, device=self.device)  # NOOP unless told
        if actions is not None and len(toks) > 1:
            given = torch.as_tensor(np.asarray(actions), device=self.device).long().reshape(-1)
            acts[max(0, len(acts) - len(given)) :] = given[-len(acts) :]
        self.seed = self.seed if seed is None else seed
        self.decoder.generator.manual_seed(self.seed)
        key = (toks.cpu().numpy().tobytes(), acts.cpu().numpy().tobytes())
        if self._start is None or self._start[0] != key:  # a new game starts from the same frames every time
            self._start = (key, self.wm.start(toks[None], acts[None], one_by_one=True))
        self.state = copy_state(self._start[1])  # a copy: the dream must not move the remembered start
        if not self._warm:
            self._warm_up()
        return self.decode(toks[-1:])[0]

    @torch.inference_mode()
    def _warm_up(self) -> None:
        """One untimed step on a throwaway state before the first real one: the first call of each kernel
        is several times slower (allocations, oneDNN primitives) and would be the game's first frame.

        Compiled, the step is also run at a second frame time: dynamo specialises on the cache's integer
        time at first and recompiles (10-25 s on a CPU) when it changes, so that happens here, not in play.
        """
        toks = torch.zeros(1, self.window, self.wm.n_tokens, dtype=torch.long, device=self.device)
        a = torch.zeros(1, dtype=torch.long, device=self.device)
        state = self.wm.start(toks, toks.new_zeros(1, self.window - 1), one_by_one=True)
        logits = self._next(state, a).logits
        if self._next is not self.wm.next_logits:  # the keyed step always runs prepared, as in `logits`
            self.wm.advance(state, toks[:, 0].clone(memory_format=torch.contiguous_format), a)
            self.wm.prepare(state)
            logits = self._next(state, a).logits
        self.decode(self.decoder(logits.float(), toks[:, -1]))
        self.decoder.generator.manual_seed(self.seed)
        self._warm = True

    @torch.inference_mode()
    def prepare(self) -> float:
        """Run the frame pass that needs no key now (call while waiting for input); returns ms.

        Block-causal models push the newest frame (fused ones commit the frame before it under the action played
        there, which was the step's own query, and run the new frame's layers below `action_layer`)."""
        if self.state is None or self.state.pending is None:
            return 0.0
        t0 = time.perf_counter()
        self.wm.prepare(self.state)
        return (time.perf_counter() - t0) * 1e3

    @torch.inference_mode()
    def logits(self, action: int) -> torch.Tensor:
        """Next-frame logits (336, V) for `action` without advancing the dream."""
        assert self.state is not None, "reset the engine before stepping it"
        self.prepare()
        return self._next(self.state, torch.tensor([action], device=self.device)).logits[0].float()

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
        assert self.state is not None
        self.wm.advance(self.state, toks[None], torch.tensor([action], device=self.device))
        timings = {"prepare": prep, "model": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return DreamStep(frame, toks.cpu().numpy().astype(self.token_dtype), changed, timings)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Tokens (B, 336) -> uint8 frames (B, 84, 64, 3)."""
        return self.vq.decode_uint8(tokens)

