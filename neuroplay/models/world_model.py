"""Temporal World Model v2.1 (the reference design, "Model 2": docs/design.md) and its exactly-cacheable `lite` variant.

Both read 4 frames of 21x16 tokens plus an action and give logits over the 32 codes for each of the
next frame's 336 tokens. Shared parts, as the reference design lists them: token embedding, action embedding with a
learnable scale, 2-D spatial position (row and column embeddings of d/2 each, concatenated), a per-action
spatial bias (4, 21, 16, d) added to the query block, FiLM `query * (1 + 0.2 * tanh(action))`, pre-LN
blocks, final LayerNorm, the last 336 positions, LayerNorm, Linear(d, 32).

Spec lines and how they are read here:
- "query tokens (336)": the spec gives no content for them; `spec` uses one learned vector (position,
  time, action bias and FiLM make each one distinct). `lite` (`query_from_last_frame`) starts each query
  token from the embedding of the last frame's token at that position: a copy prior that makes "nothing
  moved" the easy answer, which matters when training on a CPU.
- "FiLM ... tanh(action)": tanh of the scaled action embedding vector, no extra projection.

`attention="full"` (spec): one 1681-token sequence, everything sees everything, absolute temporal
embedding Embedding(5, d). `attention="block_causal"` (lite), two documented changes that make a KV cache
exact: (1) a frame's tokens attend only to their own frame and the 3 frames before it; the action token and
query block attend to that 4-frame window and to themselves; nothing attends to a query block. (2) time
enters as a rotary embedding over frame time (RoPE on q and k, the query block at time t+1) instead of an
absolute embedding, so a frame's keys/values, computed once when it enters the window, stay valid as the
window slides. (A learned per-distance bias was tried first: its gradient through the attention mask
forces PyTorch's slow math kernel, 5x slower training on CPU.) The
temporal embedding shrinks to two rows (frame / query). Because frames never see queries, a sequence of n
frames is trained in one pass with a target for every frame (`forward_sequence`).

`fused_query=True` (lite2, `neuroplay/models/fused.py`): no query block and no action token. Frame t's own
tokens, under the same block-causal window and RoPE, are the queries for frame t+1: the last block's
output at position p of frame t gives the logits of token p of frame t+1. The action taken at frame t
enters the frame stream at the input of block `action_layer` (spatial bias + FiLM, as lite applies them
to its query block), so the layers below it stay action-independent (run before the key is read) and one
336-token pass per frame replaces lite's 336 + 337. Because the upper layers' cached keys/values now
depend on the action, the newest frame stays *pending* in the cache until its action is committed
(`push_frame(action=)`, `observe`); every history frame needs the action taken at it (`forward` takes
`history_actions`). Same parameter shapes as lite (`query_emb`, the query temporal row: unused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from neuroplay.config import WMConfig
from neuroplay.models import framepass, fused
from neuroplay.models.blocks import Block


@dataclass
class WorldModelOutput:
    """Logits for the next frame's tokens."""

    logits: torch.Tensor
    """(B, 336, V) for one step, (B, T, 336, V) for a sequence."""


@dataclass
class KVCache:
    """Per-layer keys/values of the frames in the window (lite only), oldest first."""

    keys: list[list[torch.Tensor]] = field(default_factory=list)
    """keys[layer][slot]: (B, heads, 336, e); fused models keep here only committed frames (<= 3)."""
    values: list[list[torch.Tensor]] = field(default_factory=list)
    """values[layer][slot]: (B, heads, 336, e)."""
    last_tokens: torch.Tensor | None = None
    """The newest frame's tokens (B, 336), the query block's copy prior."""
    t: int = 0
    """Frames pushed so far: the next frame's time for the rotary embedding."""
    pending: fused.PendingFrame | None = None
    """Fused models: the newest frame, whose action (hence upper-layer keys/values) is not committed yet."""

    @property
    def n_frames(self) -> int:
        """Frames in the window, a pending one included."""
        return (len(self.keys[0]) if self.keys else 0) + (self.pending is not None)

    def tile(self, k: int) -> KVCache:
        """k copies of the batch in one cache, rows [copy 0's B rows, copy 1's, ...]: one warmed history
        dreamed under k action sequences (the probes' LEFT/RIGHT, FIRE/NOOP) without warming it k times."""
        rep = lambda t: t.repeat(k, *([1] * (t.dim() - 1)))  # noqa: E731
        p = self.pending
        if p is not None:
            p = fused.PendingFrame(rep(p.x), p.pos, [rep(t) for t in p.keys], [rep(t) for t in p.values],
                                   None if p.action is None else rep(p.action), [rep(t) for t in p.upper_keys],
                                   [rep(t) for t in p.upper_values])
        return KVCache([[rep(t) for t in ks] for ks in self.keys], [[rep(t) for t in vs] for vs in self.values],
                       None if self.last_tokens is None else rep(self.last_tokens), self.t, p)


class TemporalWorldModel(nn.Module):
    """The world model; `cfg.attention` picks the spec's full attention or lite's block-causal one."""

    def __init__(self, cfg: WMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n = cfg.d_model, cfg.n_tokens
        self.block_causal = cfg.attention == "block_causal"
        self.fused = cfg.fused_query
        self.tok_emb = nn.Embedding(cfg.n_vocab, d)
        self.action_emb = nn.Embedding(cfg.n_actions, d)
        self.action_scale = nn.Parameter(torch.ones(()))
        self.row_emb = nn.Embedding(cfg.token_h, d // 2)
        self.col_emb = nn.Embedding(cfg.token_w, d - d // 2)
        self.temporal_emb = nn.Embedding(2 if self.block_causal else cfg.max_history + 1, d)
        self.action_spatial_bias = nn.Parameter(torch.zeros(cfg.n_actions, cfg.token_h, cfg.token_w, d))
        self.query_emb = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attn_dropout) for _ in range(cfg.n_layers)
        )
        self.norm_f = nn.LayerNorm(d)
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_vocab)
        self.apply(self._init)
        nn.init.normal_(self.action_spatial_bias, std=0.02)
        nn.init.normal_(self.query_emb, std=0.02)
        self.n_tokens = n

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------- embeddings
    def spatial(self) -> torch.Tensor:
        """2-D position embedding, (336, d)."""
        c = self.cfg
        rows = self.row_emb.weight[:, None].expand(c.token_h, c.token_w, -1)
        cols = self.col_emb.weight[None].expand(c.token_h, c.token_w, -1)
        return torch.cat([rows, cols], -1).reshape(c.n_tokens, -1)  # (336, d)

    def action_vector(self, action: torch.Tensor) -> torch.Tensor:
        """Scaled action embedding, (B, d)."""
        return self.action_emb(action) * self.action_scale

    def embed_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 336) tokens -> (B, T, 336, d); the temporal part is added by the caller."""
        return self.tok_emb(tokens) + self.spatial()

    def embed_query(self, action: torch.Tensor, last_tokens: torch.Tensor, time_row: int) -> torch.Tensor:
        """Action token + query block for one step: (B, 1 + 336, d)."""
        a = self.action_vector(action)  # (B, d)
        if self.cfg.query_from_last_frame:
            content = self.tok_emb(last_tokens)  # (B, 336, d)
        else:
            content = self.query_emb.expand(action.shape[0], self.n_tokens, -1)
        bias = self.action_spatial_bias[action].flatten(1, 2)  # (B, 336, d)
        q = content + self.temporal_emb.weight[time_row] + self.spatial() + bias
        q = q * (1 + self.cfg.film_scale * torch.tanh(a))[:, None]
        return torch.cat([a[:, None], q], 1)  # (B, 337, d)

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Query-block states (..., 336, d) -> logits (..., 336, V)."""
        return self.head(self.head_norm(x))

    # ----------------------------------------------------------------- API
    def forward(
        self, history: torch.Tensor, action: torch.Tensor, sequence: bool = False,
        history_actions: torch.Tensor | None = None,
    ) -> WorldModelOutput:
        """history (B, 4, 336) long, action (B,) long -> logits (B, 336, V).

        With `sequence=True` (block-causal only) this is `forward_sequence(history, action)`: frames
        (B, n, 336) and actions (B, n-1); routed through `forward` so that DDP sees it.
        Fused models condition every history frame on the action taken at it: `history_actions` (B, T-1)
        for frames 0..T-2 (required: a silent NOOP would be a different input); others ignore it.
        """
        if sequence:
            return self.forward_sequence(history, action)
        if self.fused:
            if history_actions is None:
                raise ValueError("fused_query model: forward(history, action) needs history_actions (B, T-1), "
                                 "the actions taken at the history frames (or use forward_sequence)")
            acts = torch.cat([history_actions, action[:, None]], 1)  # (B, T)
            return WorldModelOutput(fused.forward_frames(self, history, acts, last_only=True)[:, 0])
        if self.block_causal:
            out = self.forward_sequence(history, action[:, None], last_only=True)
            return WorldModelOutput(out.logits[:, 0])
        b, t, n = history.shape
        x_hist = self.embed_frames(history) + self.temporal_emb.weight[:t, None]  # (B, 4, 336, d)
        x_q = self.embed_query(action, history[:, -1], time_row=self.cfg.max_history)  # (B, 337, d)
        x = torch.cat([x_hist.reshape(b, t * n, -1), x_q], 1)  # (B, 4*336 + 337, d)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm_f(x)
        return WorldModelOutput(self.head_logits(x[:, -n:]))

    @torch.no_grad()
    def predict_next(
        self, history: torch.Tensor, action: torch.Tensor, temperature: float = 0.0,
        history_actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next frame's tokens (B, 336): argmax, or a sample at `temperature` > 0."""
        return sample_tokens(self(history, action, history_actions=history_actions).logits, temperature)

    # ----------------------------------------------------------------- lite: sequences
    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate (..., P, h, L, e) q or k by frame time `pos` (P,): scores then depend on time differences.

        Angles are computed in float64 so that a long game's frame counter does not lose precision.
        """
        half = x.shape[-1] // 2
        freqs = self.cfg.rope_base ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
        ang = pos.to(torch.float64)[:, None] * freqs  # (P, half)
        cos = ang.cos().to(x.dtype)[:, None, None]  # (P, 1, 1, half)
        sin = ang.sin().to(x.dtype)[:, None, None]
        x1, x2 = x[..., :half], x[..., half : 2 * half]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., 2 * half :]], -1)

    def forward_sequence(
        self, frames: torch.Tensor, actions: torch.Tensor, last_only: bool = False,
        steps: torch.Tensor | None = None,
    ) -> WorldModelOutput:
        """Block-causal pass over n frames: logits (B, n-1, 336, V), step t predicting frame t+1.

        `frames` (B, n, 336), `actions` (B, n-1); with `last_only`, `actions` is (B, 1) and only the
        step from the last frame is computed (the spec-style `forward`). With `steps` (k,) sorted step
        indices, only those steps are computed: logits (B, k, 336, V) (the evaluation's 1-step pass over
        runs of consecutive samples). Equal, up to float error, to pushing the frames one by one through
        the KV cache and querying (tested).

        Fused models run frames 0..n-2 only (frame n-1 is only a target), each under the action taken at
        it; their `last_only` step is `forward(history, action, history_actions=...)`.
        """
        assert self.block_causal, "forward_sequence needs attention='block_causal'"
        if self.fused:
            if last_only:
                raise ValueError("fused_query model: the last step needs every frame's action; use "
                                 "forward(history, action, history_actions=...)")
            return WorldModelOutput(fused.forward_frames(self, frames[:, :-1], actions, steps=steps))
        b, n, L = frames.shape
        w, dev = self.cfg.max_history, frames.device
        ends = torch.arange(n - 1, n, device=dev) if last_only else torch.arange(n - 1, device=dev)
        if steps is not None and not last_only:
            ends, actions = steps, actions[:, steps]  # (k,), (B, k)
        m = ends.numel()
        x_f = self.embed_frames(frames) + self.temporal_emb.weight[0]  # (B, n, 336, d)
        last = frames[:, ends]  # (B, m, 336)
        x_q = self.embed_query(actions.reshape(-1), last.reshape(b * m, L), time_row=1)
        x_q = x_q.view(b, m, L + 1, -1)  # (B, m, 337, d)
        pos_f = torch.arange(n, device=dev)
        # Slot i of frame t's window holds frame t-(w-1)+i; slots before frame 0 are padding.
        valid = (pos_f[:, None] - (w - 1) + torch.arange(w, device=dev)) >= 0  # (n, w)
        fmask = valid.repeat_interleave(L, -1)[:, None, None]  # (n, 1, 1, w*L): early frames have padding
        ones = torch.ones(m, L + 1, dtype=torch.bool, device=dev)
        qmask = torch.cat([valid[ends].repeat_interleave(L, -1), ones], -1)
        qmask = qmask[:, None, None]  # (m, 1, 1, w*L + L + 1)
        for blk in self.blocks:
            qf, kf, vf = blk.attn.project(blk.ln1(x_f))  # (B, n, h, 336, e)
            qf, kf = self._rope(qf, pos_f), self._rope(kf, pos_f)
            kw, vw = _windows(kf, w), _windows(vf, w)  # (B, n, h, w*336, e)
            y = blk.attn.attend(qf.flatten(0, 1), kw.flatten(0, 1), vw.flatten(0, 1), _tile(fmask, b))
            qq, kq, vq = blk.attn.project(blk.ln1(x_q))  # (B, m, h, 337, e)
            qq, kq = self._rope(qq, ends + 1), self._rope(kq, ends + 1)
            k_all = torch.cat([kw[:, ends], kq], 3)  # (B, m, h, w*336 + 337, e)
            v_all = torch.cat([vw[:, ends], vq], 3)
            yq = blk.attn.attend(qq.flatten(0, 1), k_all.flatten(0, 1), v_all.flatten(0, 1), _tile(qmask, b))
            x_f = blk.feed_forward(x_f + blk.drop(y.view(b, n, L, -1)))  # (B, n, 336, d)
            x_q = blk.feed_forward(x_q + blk.drop(yq.view(b, m, L + 1, -1)))  # (B, m, 337, d)
        x_q = self.norm_f(x_q[:, :, 1:])  # drop the action token: (B, m, 336, d)
        return WorldModelOutput(self.head_logits(x_q))

    # ----------------------------------------------------------------- lite: KV cache
    def new_cache(self) -> KVCache:
        """An empty window; push frames into it, then query."""
        return KVCache([[] for _ in self.blocks], [[] for _ in self.blocks])

    def warm_cache(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> KVCache:
        """The cache after pushing history frames (B, T, 336) one by one (fused: `observe` all but the last,
        under `actions` (B, T-1), then `push_frame` it), computed in one pass that skips what the cache never
        reads (`framepass.warm_cache`): for a 13-frame context of a 4-layer model, 34 frame-layers of projections
        and 21 of attention instead of 52 and 52."""
        assert self.block_causal, "the KV cache needs attention='block_causal'"
        if self.fused and frames.shape[1] > 1 and actions is None:
            raise ValueError("fused model: warm_cache needs the actions taken at the history frames but the last")
        return framepass.warm_cache(self, frames, actions)

    def push_frame(self, cache: KVCache, tokens: torch.Tensor, action: torch.Tensor | None = None) -> None:
        """Add a frame (B, 336) to the window: one pass of its 336 tokens; independent of the action.

        Fused models: first commit the pending frame under `action` (B,), the action taken at it (default:
        the action of its last `query`), then run the new frame's layers below `action_layer`; the new
        frame stays pending. Others ignore `action`.
        """
        assert self.block_causal, "the KV cache needs attention='block_causal'"
        if self.fused:
            fused.push(self, cache, tokens, action)
            return
        w = self.cfg.max_history
        pos = torch.tensor([cache.t], device=tokens.device)
        x = self.embed_frames(tokens[:, None]) + self.temporal_emb.weight[0]  # (B, 1, 336, d)
        for li, blk in enumerate(self.blocks):
            q, k, v = blk.attn.project(blk.ln1(x))  # (B, 1, h, 336, e)
            q, k = self._rope(q, pos)[:, 0], self._rope(k, pos)[:, 0]  # (B, h, 336, e)
            ks = cache.keys[li][-(w - 1) :] + [k]
            vs = cache.values[li][-(w - 1) :] + [v[:, 0]]
            y = blk.attn.attend(q, torch.cat(ks, 2), torch.cat(vs, 2))  # (B, 336, d)
            x = blk.feed_forward(x + blk.drop(y[:, None]))
            cache.keys[li] = ks
            cache.values[li] = vs
        cache.last_tokens = tokens
        cache.t += 1

    def observe(self, cache: KVCache, tokens: torch.Tensor, action: torch.Tensor) -> None:
        """Add a history frame (B, 336) taken under a known action (B,): fused models commit it at once
        (nothing stays pending: push the last history frame with `push_frame`); others `push_frame`."""
        if self.fused:
            fused.observe(self, cache, tokens, action)
        else:
            self.push_frame(cache, tokens)

    def query(self, cache: KVCache, action: torch.Tensor) -> WorldModelOutput:
        """Logits (B, 336, V) for the next frame from the cached window and an action (B,).

        Fused models run the pending frame's layers from `action_layer` up under `action` and remember them
        for the commit; any number of actions may be asked before the next push.
        """
        if self.fused:
            return WorldModelOutput(fused.query(self, cache, action))
        assert cache.last_tokens is not None, "push at least one frame before querying"
        pos = torch.tensor([cache.t], device=action.device)  # the target frame's time
        x = self.embed_query(action, cache.last_tokens, time_row=1)[:, None]  # (B, 1, 337, d)
        for li, blk in enumerate(self.blocks):
            q, k, v = blk.attn.project(blk.ln1(x))  # (B, 1, h, 337, e)
            q, k = self._rope(q, pos)[:, 0], self._rope(k, pos)[:, 0]
            ks = torch.cat(cache.keys[li] + [k], 2)  # (B, h, nf*336 + 337, e)
            vs = torch.cat(cache.values[li] + [v[:, 0]], 2)
            x = blk.feed_forward(x + blk.drop(blk.attn.attend(q, ks, vs)[:, None]))
        return WorldModelOutput(self.head_logits(self.norm_f(x[:, 0, 1:])))


def _tile(mask: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """Repeat a per-window mask (P, 1, 1, S) over the batch to match (B*P, h, L, S) flattening."""
    return None if mask is None else mask.repeat(b, 1, 1, 1)


def _windows(t: torch.Tensor, w: int) -> torch.Tensor:
    """(B, n, h, L, e) per-frame tensors -> (B, n, h, w*L, e): frame t's window t-w+1..t, zero-padded."""
    pad = torch.zeros_like(t[:, :1]).expand(-1, w - 1, -1, -1, -1)
    tp = torch.cat([pad, t], 1)  # (B, n + w - 1, h, L, e)
    n = t.shape[1]
    win = torch.stack([tp[:, i : i + n] for i in range(w)], 3)  # (B, n, h, w, L, e)
    return rearrange(win, "b n h w l e -> b n h (w l) e")


def sample_tokens(logits: torch.Tensor, temperature: float = 0.0) -> torch.Tensor:
    """Argmax over the last dim, or a softmax sample at `temperature` > 0."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = F.softmax(logits.float() / temperature, -1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])
