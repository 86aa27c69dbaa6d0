"""Model configurations and the presets (`spec`, `lite`, `lite2`, `tiny`, ...), all in one place.

Every number that sizes a model lives in `VQConfig` or `WMConfig`; the modules read nothing else.
`spec` is the reference design verbatim, `lite` is the CPU real-time variant (block-causal attention with a
KV cache, see `neuroplay/models/world_model.py`), `lite2` is lite with fused queries (one pass per frame,
`neuroplay/models/fused.py`), `tiny` and `tiny-fused` are the same code at toy size for tests.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, get_args

from neuroplay.errors import UsageError

TOKEN_H = 21
"""Token grid height (84 / 4)."""
TOKEN_W = 16
"""Token grid width (64 / 4)."""
FRAME_H = 84
"""Preprocessed frame height in pixels."""
FRAME_W = 64
"""Preprocessed frame width in pixels."""
N_ACTIONS = 4
"""Breakout's minimal action set."""
HISTORY = 4
"""Frames a sample's history holds (the reference design's 4): the window a prediction starts from."""


class Action(IntEnum):
    """Breakout's minimal action set, in ALE's order: the one home of the action ids."""

    NOOP = 0
    FIRE = 1
    RIGHT = 2
    LEFT = 3


ACTION_NAMES = tuple(a.name for a in Action)
"""Index -> name, in ALE's order for Breakout."""


def _assets() -> Path:
    repo = Path(__file__).resolve().parent.parent / "assets"  # a clone / editable install
    installed = Path(sys.prefix) / "share" / "neuroplay" / "assets"  # a wheel's data files (pyproject.toml)
    return repo if repo.is_dir() or not installed.is_dir() else installed


ASSETS = _assets()
"""Bundled models and frames: the repository's top-level `assets/`, else the installed copy."""
SHIPPED_CHECKPOINT = ASSETS / "checkpoints" / "lite"
"""The shipped pair (`vqvae/` + `wm/`): what `neuroplay play` dreams with unless told otherwise."""
TOKENS_FILE = "atari_tokens_hires.npz"
"""A run folder's token file, written by `train tokenize` and read by `train wm`."""
START_FRAMES = ASSETS / "start_frames.npz"
"""The reset screen and 3 NOOP frames (a one-episode dataset file): the dream's first history when no
emulator can run (`neuroplay/session.py`); `tests/test_session.py` checks it against ALE."""


@dataclass(frozen=True)
class VQConfig:
    """VQ-VAE v2.3 (the reference design, "Model 1": docs/design.md)."""

    in_channels: int = 3
    """RGB input."""
    hidden_channels: int = 64
    """Width of the first conv; the two stride-2 stages use 2x and 4x this unless overridden."""
    mid_channels: int = 128
    """Width after the first downsampling (42x32)."""
    latent_channels: int = 256
    """Width at the 21x16 bottleneck and codebook embedding dimension."""
    n_embeddings: int = 32
    """Codebook size (reference v2.3: reduced for Atari)."""
    n_residual: int = 2
    """Residual blocks at the bottleneck, in encoder and decoder each."""
    groups: int = 8
    """GroupNorm groups."""
    ema_decay: float = 0.99
    """EMA decay of the codebook statistics."""
    ema_update_every: int = 10
    """Apply the accumulated EMA statistics every this many training batches."""
    dead_code_every: int = 500
    """Check for dead codes every this many training batches."""
    dead_code_threshold: float = 0.01
    """A code is dead when its share of assignments is under this fraction of the mean share (1/K)."""
    commitment_beta: float = 0.25
    """Weight of the commitment loss ||z_e - sg(z_q)||^2."""


@dataclass(frozen=True)
class WMConfig:
    """Temporal World Model v2.1 (the reference design, "Model 2": docs/design.md) and its cached `lite` variant."""

    n_vocab: int = 32
    """VQ-VAE codebook size."""
    n_actions: int = N_ACTIONS
    """Breakout: NOOP, FIRE, RIGHT, LEFT."""
    d_model: int = 256
    """Transformer hidden dimension."""
    n_heads: int = 8
    """Attention heads."""
    n_layers: int = 10
    """Transformer layers."""
    d_ff: int = 1024
    """Feed-forward width (4x d_model)."""
    dropout: float = 0.1
    """Dropout on the residual and feed-forward paths."""
    attn_dropout: float = 0.0
    """Dropout on attention probabilities; >0 forces the slow attention kernel on CPU (5-7x)."""
    token_h: int = TOKEN_H
    """Token grid height."""
    token_w: int = TOKEN_W
    """Token grid width."""
    max_history: int = HISTORY
    """Number of past frames the model sees."""
    film_scale: float = 0.2
    """FiLM strength: query * (1 + film_scale * tanh(action))."""
    attention: Literal["full", "block_causal"] = "full"
    """`full`: the reference design (every token sees all 1681); `block_causal`: lite, exact KV caching."""
    rope_base: float = 100.0
    """Rotary base over frame time (block_causal only): frequencies base^(-i/half), i < half."""
    query_from_last_frame: bool = False
    """Query tokens start from the last frame's token embeddings (a copy prior) instead of a learned one."""
    code_features: int = 0
    """Width of a fixed feature vector per code (the patch tokenizer's 48 pixels; 0: none). Inputs embed a code
    as its row plus a projection of its features, and logits add a projection of the state dotted with them."""
    fused_query: bool = False
    """The frame's own tokens are the queries for the next frame: one pass per step (lite v2)."""
    action_layer: int = 0
    """Layer at which the action enters the frame stream (fused_query only); the layers below it are
    action-independent and run before the key is read."""

    def __post_init__(self) -> None:
        if self.fused_query and self.attention != "block_causal":
            raise ValueError("fused_query needs attention='block_causal'")
        if self.fused_query and not 0 <= self.action_layer < self.n_layers:
            raise ValueError(f"action_layer must be in 0..{self.n_layers - 1}, got {self.action_layer}")

    @property
    def n_tokens(self) -> int:
        """Tokens per frame (336)."""
        return self.token_h * self.token_w

    @property
    def clip_training(self) -> bool:
        """Whether one pass over a clip trains a target for every frame (block-causal attention); otherwise
        training draws one-step samples of `max_history` frames."""
        return self.attention == "block_causal"

    @property
    def seq_len(self) -> int:
        """Length of one full forward: history frames + action + query block (1681 for spec)."""
        return self.max_history * self.n_tokens + 1 + self.n_tokens


@dataclass(frozen=True)
class PatchConfig:
    """The local patch tokenizer (`models/patches.py`): a codebook of real 4x4 patches, fitted, not trained."""

    n_codes: int = 512
    """Codebook entries (the world model's vocabulary)."""


@dataclass(frozen=True)
class Preset:
    """A named pair of model configs plus the training defaults that suit them."""

    name: str
    """Preset name."""
    vq: VQConfig
    """VQ-VAE config."""
    wm: WMConfig
    """World-model config."""
    notes: str = ""
    """Why this preset exists."""
    train: dict[str, Any] = field(default_factory=dict)
    """Training-flag defaults that differ from the reference design for this preset (docs/design.md)."""
    patches: PatchConfig | None = None
    """Set: the tokenizer is a fitted patch codebook (`train vqvae` fits it) and `vq` is unused."""


_LITE_VQ = VQConfig(hidden_channels=32, mid_channels=64, latent_channels=64)
_LITE_WM = WMConfig(d_model=128, n_heads=4, n_layers=4, d_ff=512, dropout=0.0, attention="block_causal",
                    query_from_last_frame=True)
_LITE_TRAIN: dict[str, Any] = {"batch_size": 4, "seq_frames": 12, "lr": 1e-3, "warmup": 100, "rollout_ratio": 0.25}
"""lite's CPU budget: more, smaller steps; a quarter of the steps are K-step rollouts (reference: half), because a
rollout step yields 5 targets a clip against 11 for a teacher-forced sequence."""

_TINY_VQ = VQConfig(hidden_channels=8, mid_channels=16, latent_channels=16, n_residual=1, groups=4)
_TINY_WM = WMConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, attention="block_causal",
                    query_from_last_frame=True)

PRESETS: dict[str, Preset] = {
    "spec": Preset(
        name="spec",
        vq=VQConfig(),
        wm=WMConfig(),
        notes="The reference design exactly: full attention over 1681 tokens; GPU for training and real time.",
    ),
    "lite": Preset(
        name="lite",
        vq=_LITE_VQ,
        wm=_LITE_WM,
        notes=(
            "CPU real time: block-causal attention + RoPE over time (exact KV cache), narrow VQ-VAE. "
            "Dropout 0: a model trained for a CPU budget of ~1 epoch does not overfit, and dropout "
            "costs 12% of a CPU step."
        ),
        train=_LITE_TRAIN,
    ),
    "lite2": Preset(
        name="lite2",
        vq=_LITE_VQ,
        wm=dataclasses.replace(_LITE_WM, fused_query=True, action_layer=2),
        notes=(
            "lite v2: lite with fused queries, one 336-token pass per dreamed frame; the action "
            "enters at layer 2 of 4, so the lower half runs before the key is read. Same parameter shapes "
            "as lite: lite weights load into it as they are."
        ),
        train=_LITE_TRAIN,
    ),
    "local": Preset(
        name="local",
        vq=_LITE_VQ,
        wm=dataclasses.replace(_LITE_WM, fused_query=True, action_layer=2, n_vocab=512, code_features=48),
        notes=(
            "lite2's world model on the local patch tokenizer: a token is the nearest of 512 real 4x4 patches, "
            "so the grid changes only where the pixels do (about 8 tokens a step, against 32 for a VQ-VAE's); "
            "a code is embedded and predicted through its pixels too, so the many rare ball codes share one look."
        ),
        train={**_LITE_TRAIN, "code_distance": "binary"},
        patches=PatchConfig(n_codes=512),
    ),
    "local-plain": Preset(
        name="local-plain",
        vq=_LITE_VQ,
        wm=dataclasses.replace(_LITE_WM, fused_query=True, action_layer=2, n_vocab=512),
        notes="local without code features: each of the 512 codes learns its embedding and logit alone.",
        train={**_LITE_TRAIN, "code_distance": "binary"},
        patches=PatchConfig(n_codes=512),
    ),
    "tiny": Preset(
        name="tiny",
        vq=_TINY_VQ,
        wm=_TINY_WM,
        notes="Toy size for tests: trains in seconds.",
        train={"batch_size": 8, "seq_frames": 8},
    ),
    "tiny-fused": Preset(
        name="tiny-fused",
        vq=_TINY_VQ,
        wm=dataclasses.replace(_TINY_WM, fused_query=True, action_layer=1),
        notes="lite2's fused design at toy size, for tests (the action enters at layer 1 of 2).",
        train={"batch_size": 8, "seq_frames": 8},
    ),
    "tiny-local": Preset(
        name="tiny-local",
        vq=_TINY_VQ,
        wm=dataclasses.replace(_TINY_WM, fused_query=True, action_layer=1, n_vocab=320, code_features=48),
        notes="local at toy size, for tests: 320 patch codes (past 256, so token files are uint16).",
        train={"batch_size": 8, "seq_frames": 8},
        patches=PatchConfig(n_codes=320),
    ),
    "tiny-full": Preset(
        name="tiny-full",
        vq=_TINY_VQ,
        wm=WMConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0),
        notes="The spec architecture (full attention) at toy size, for tests.",
    ),
}


SHIPPED_PRESET = "lite2"
"""The preset of the shipped world model (`assets/checkpoints/lite`): the default of every training command,
the bench, the menu's Train screen and the hints."""


def get_preset(name: str) -> Preset:
    """Look up a preset by name with a clear error."""
    if name not in PRESETS:
        raise UsageError(f"--preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A frozen dataclass as a JSON-able dict."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build `cls` from a dict, rejecting unknown keys (a config from another version of the code)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return cls(**data)


# ------------------------------------------------------------------------------- token decoding
DecodeMode = Literal["argmax", "change", "sample", "coupled"]


@dataclass(frozen=True)
class DecodeConfig:
    """How dreamed tokens are drawn from the logits (`neuroplay play --decode`, `neuroplay eval --decode`)."""

    mode: DecodeMode = "argmax"
    """argmax: the most likely code; change: the token changes when the model's odds of any other code than the
    previous frame's add up to more than even, to the most likely of them; sample: each token drawn on its own;
    coupled: sure tokens by argmax, the
    rest drawn together by one shared uniform (`neuroplay/models/decoding.py`). argmax is the default because
    it measured better with today's models (docs/evaluation.md, "Decoding the dream"); coupled is for a model
    sure enough of the static game that only its true events are left uncertain."""
    temperature: float = 1.0
    """Softmax temperature of sample and coupled (below 1 sharpens)."""
    confident: float = 0.9
    """coupled: a token whose top probability is at least this takes its argmax."""

    def __post_init__(self) -> None:
        if self.mode not in get_args(DecodeMode):
            raise UsageError(f"--decode must be one of {', '.join(get_args(DecodeMode))}, got {self.mode!r}")
        if self.temperature <= 0:
            raise UsageError(f"--temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.confident <= 1.0:
            raise UsageError(f"--confident must be in (0, 1], got {self.confident}")

    def label(self) -> str:
        """Short name for menus and reports."""
        if self.mode == "argmax":
            return "argmax"
        t = "" if self.temperature == 1.0 else f" T={self.temperature:g}"
        return f"sample{t}" if self.mode == "sample" else f"coupled p>={self.confident:g}{t}"


ARGMAX = DecodeConfig("argmax")
