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

import torch
import torch.nn.functional as F
from torch import nn

from neuroplay.config import WMConfig
from neuroplay.models import framepass, fused
from neuroplay.models.blocks import Block
from neuroplay.models.cache import DreamState, KVCache, rope, tile_mask, windows
from neuroplay.models.interface import DreamModel, WorldModelOutput

__all__ = ["DreamState", "KVCache", "TemporalWorldModel", "WorldModelOutput"]


class TemporalWorldModel(DreamModel):
    """The world model; `cfg.attention` picks the spec's full attention or lite's block-causal one."""

    def __init__(self, cfg: WMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n = cfg.d_model, cfg.n_tokens
        self.block_causal = cfg.attention == "block_causal"
        self.fused = cfg.fused_query
        self.window = cfg.max_history
        self.takes_history_actions = True
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
        f = cfg.code_features
        self.code_in = nn.Linear(f, d, bias=False) if f else None
        """Code features -> embedding: a code's input embedding is its own row plus this projection of its
        features, so a rare code (the ball at one offset over one background) starts from what it looks like."""
        self.code_out = nn.Linear(d, f, bias=False) if f else None
        """State -> feature space: a logit is the head's plus this projection dotted with the code's features,
        so codes that look alike share what the model learns about predicting them."""
        if f:
            self.register_buffer("code_feats", torch.zeros(cfg.n_vocab, f))
            """(V, F) fixed features of each code, set from the tokenizer (`set_code_features`), saved with the
            weights."""
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

    def set_code_features(self, vectors: torch.Tensor) -> None:
        """Fix the code features from the tokenizer's code vectors (V, F) (`code_vectors()`: a patch code's
        pixels), scaled to unit RMS."""
        v = vectors.float()
        self.code_feats.copy_(v / v.pow(2).mean().sqrt().clamp(min=1e-8))

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (...) -> (..., d): the code's row, plus its features' projection when the model has them."""
        if self.code_in is None:
            return self.tok_emb(tokens)
        return F.embedding(tokens, self.tok_emb.weight + self.code_in(self.code_feats))  # (V, d) table

    def embed_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 336) tokens -> (B, T, 336, d); the temporal part is added by the caller."""
        return self.token_embedding(tokens) + self.spatial()

    def embed_query(self, action: torch.Tensor, last_tokens: torch.Tensor, time_row: int) -> torch.Tensor:
        """Action token + query block for one step: (B, 1 + 336, d)."""
        a = self.action_vector(action)  # (B, d)
        if self.cfg.query_from_last_frame:
            content = self.token_embedding(last_tokens)  # (B, 336, d)
        else:
            content = self.query_emb.expand(action.shape[0], self.n_tokens, -1)
        bias = self.action_spatial_bias[action].flatten(1, 2)  # (B, 336, d)
        q = content + self.temporal_emb.weight[time_row] + self.spatial() + bias
        q = q * (1 + self.cfg.film_scale * torch.tanh(a))[:, None]
        return torch.cat([a[:, None], q], 1)  # (B, 337, d)

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Query-block states (..., 336, d) -> logits (..., 336, V)."""
        h = self.head_norm(x)
        if self.code_out is None:
            return self.head(h)
        return self.head(h) + self.code_out(h) @ self.code_feats.T  # (..., 336, F) @ (F, V)

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
        self, history: torch.Tensor, action: torch.Tensor, history_actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next frame's most likely tokens (B, 336); other ways of drawing them are `models.decoding`'s."""
        return self(history, action, history_actions=history_actions).logits.argmax(-1)

    # ----------------------------------------------------------------- lite: sequences
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
        if not self.block_causal:
            return super().forward_sequence(frames, actions, last_only, steps)
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
            qf, kf = rope(qf, pos_f, self.cfg.rope_base), rope(kf, pos_f, self.cfg.rope_base)
            kw, vw = windows(kf, w), windows(vf, w)  # (B, n, h, w*336, e)
            y = blk.attn.attend(qf.flatten(0, 1), kw.flatten(0, 1), vw.flatten(0, 1), tile_mask(fmask, b))
            qq, kq, vq = blk.attn.project(blk.ln1(x_q))  # (B, m, h, 337, e)
            qq, kq = rope(qq, ends + 1, self.cfg.rope_base), rope(kq, ends + 1, self.cfg.rope_base)
            k_all = torch.cat([kw[:, ends], kq], 3)  # (B, m, h, w*336 + 337, e)
            v_all = torch.cat([vw[:, ends], vq], 3)
            yq = blk.attn.attend(qq.flatten(0, 1), k_all.flatten(0, 1), v_all.flatten(0, 1), tile_mask(qmask, b))
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
            q, k = rope(q, pos, self.cfg.rope_base)[:, 0], rope(k, pos, self.cfg.rope_base)[:, 0]  # (B, h, 336, e)
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
            q, k = rope(q, pos, self.cfg.rope_base)[:, 0], rope(k, pos, self.cfg.rope_base)[:, 0]
            ks = torch.cat(cache.keys[li] + [k], 2)  # (B, h, nf*336 + 337, e)
            vs = torch.cat(cache.values[li] + [v[:, 0]], 2)
            x = blk.feed_forward(x + blk.drop(blk.attn.attend(q, ks, vs)[:, None]))
        return WorldModelOutput(self.head_logits(self.norm_f(x[:, 0, 1:])))


    # ----------------------------------------------------------------- the dream interface
    @property
    def context_frames(self) -> int:
        """Frames before the newest that a prediction can depend on: the window's 3 for full attention; 3 a
        layer for a block-causal stack (12 for 4 layers), which play's cache carries."""
        w = self.cfg.max_history - 1
        return len(self.blocks) * w if self.block_causal else w

    @property
    def clip_training(self) -> bool:
        """Block-causal models train on whole clips, a target for every frame, in one pass."""
        return self.cfg.clip_training

    def start(self, frames: torch.Tensor, actions: torch.Tensor | None = None, one_by_one: bool = False,
              cached: bool = True) -> DreamState:
        """Dreams from history frames (B, T, 336), `actions` (B, T-1) taken at all frames but the last (fused
        models need them). Block-causal models warm their cache in one pruned pass, or with `one_by_one` frame by
        frame as a dream that had played those frames holds it (the same float rounding: play's engine);
        `cached=False` dreams on the rolled window instead (the reference the cache is tested against)."""
        if not (self.block_causal and cached):
            return super().start(frames, actions)
        b, t, _ = frames.shape
        if not one_by_one:
            return DreamState(cache=self.warm_cache(frames, actions), last_tokens=frames[:, -1])
        cache = self.new_cache()
        for i in range(t - 1):
            self.observe(cache, frames[:, i], actions[:, i] if actions is not None else frames.new_zeros(b))
        last = frames[:, -1].clone(memory_format=torch.contiguous_format)  # (B, 336) laid out as later frames (guards)
        self.push_frame(cache, last)
        return DreamState(cache=cache, last_tokens=last)

    def prepare(self, state: DreamState) -> None:
        """Push the frame `advance` stored into the cache (fused: committing the frame before it under the action
        that led here); without a cache, roll the window."""
        if state.cache is None or state.pending is None:
            super().prepare(state)
            return
        self.push_frame(state.cache, state.pending, state.pending_action if self.fused else None)
        state.pending = state.pending_action = None

    def next_logits(self, state: DreamState, action: torch.Tensor) -> WorldModelOutput:
        """Logits (B, 336, V) of the next frame under `action` (B,), from the cache or the window."""
        if state.cache is None:
            return super().next_logits(state, action)
        self.prepare(state)
        return self.query(state.cache, action)
