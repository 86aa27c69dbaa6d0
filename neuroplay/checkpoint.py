"""Checkpoints: a folder with `config.json` and `model.safetensors` (the Hugging Face layout).

`config.json` holds what is needed to rebuild the model (kind, preset, the full config dataclass) and
what is needed to trust it (sha256 of the weights, data provenance, code version, metrics). Loading never
unpickles: safetensors for weights, JSON for the rest. Every problem becomes one `CheckpointError` line
naming the file. Resume state for training lives beside it (see `training/state.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from neuroplay import __version__
from neuroplay.config import PatchConfig, VQConfig, WMConfig, config_from_dict, config_to_dict
from neuroplay.errors import NeuroplayError
from neuroplay.models.patches import PatchTokenizer
from neuroplay.models.vqvae import VQVAE
from neuroplay.models.world_model import TemporalWorldModel

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
KINDS: dict[str, tuple[type, type]] = {
    "vqvae": (VQVAE, VQConfig), "patches": (PatchTokenizer, PatchConfig), "world_model": (TemporalWorldModel, WMConfig)
}
TOKENIZER_KINDS = ("vqvae", "patches")
"""What a pair's tokenizer folder (`<pair>/vqvae`) may hold: a trained VQ-VAE or a fitted patch codebook. Both
answer `n_codes`, `encode`, `decode`, `decode_uint8`, `code_vectors` and `for_inference`."""
Tokenizer = VQVAE | PatchTokenizer


class CheckpointError(NeuroplayError, RuntimeError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write next to `path`, fsync, then rename over it: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def kind_of(model: nn.Module) -> str:
    """Checkpoint kind name of a model instance."""
    for kind, (cls, _) in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a neuroplay model: {type(model).__name__}")


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    preset: str,
    info: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save `model` to `directory` atomically; `dtype=torch.bfloat16` halves the file (storage only)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    tmp = d / f".{WEIGHTS}.tmp-{os.getpid()}"
    try:
        save_file(state, str(tmp))
        digest = sha256_file(tmp)
        os.replace(tmp, d / WEIGHTS)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{d / WEIGHTS}: cannot write checkpoint ({e.strerror or e})") from e
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind_of(model),
        "preset": preset,
        "config": config_to_dict(model.cfg),
        "weights_sha256": digest,
        "storage_dtype": str(dtype or "float32").replace("torch.", ""),
        "neuroplay_version": __version__,
        **(info or {}),
    }
    try:
        atomic_write_bytes(d / CONFIG, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    except OSError as e:
        raise CheckpointError(f"{d / CONFIG}: cannot write checkpoint ({e.strerror or e})") from e
    return d


def read_info(directory: str | Path) -> dict[str, Any]:
    """Parse and check `config.json` of a checkpoint folder."""
    d = Path(directory)
    cfg_path = d / CONFIG
    if not d.is_dir():
        raise CheckpointError(f"{d}: checkpoint folder not found")
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing (a checkpoint folder holds {CONFIG} and {WEIGHTS})")
    try:
        info = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(info, dict) or info.get("kind") not in KINDS or not isinstance(info.get("config"), dict):
        raise CheckpointError(f"{cfg_path}: not a neuroplay checkpoint config (needs 'kind' and 'config')")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format {info['format_version']} is newer than this neuroplay")
    return info


def load_checkpoint(
    directory: str | Path, expect_kind: str | tuple[str, ...] | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint folder and load its weights (float32, eval mode)."""
    d = Path(directory)
    info = read_info(d)
    kind = info["kind"]
    kinds = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
    if kinds and kind not in kinds:
        raise CheckpointError(f"{d / CONFIG}: is a {kind} checkpoint, expected {' or '.join(kinds)}")
    model_cls, cfg_cls = KINDS[kind]
    try:
        cfg = config_from_dict(cfg_cls, info["config"])
        model = model_cls(cfg)
    except (TypeError, ValueError, AssertionError) as e:
        raise CheckpointError(f"{d / CONFIG}: bad model config ({e})") from e
    wpath = d / WEIGHTS
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: missing weights file")
    expected_sha = info.get("weights_sha256")
    if expected_sha and sha256_file(wpath) != expected_sha:
        raise CheckpointError(f"{wpath}: contents do not match the sha256 in {CONFIG} (truncated or replaced?)")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{wpath}: not a readable safetensors file ({e})") from e
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{wpath}: weights do not fit the config ({what})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{wpath}: tensor {k} has shape {tuple(state[k].shape)}, config expects {tuple(v.shape)}"
            )
        state[k] = state[k].to(v.dtype)
    model.load_state_dict(state)
    return model.to(device).eval(), info


def tokens_identity(vq_info: dict[str, Any]) -> tuple[str, ...]:
    """The hashes a VQ-VAE's tokens answer to: its own weights', and, for a decoder fine-tuned with the codes kept
    (`train vqvae --decoder-only`), those of the VQ-VAE whose codes it kept (`tokens_of`). World models and token
    files name one of them."""
    return tuple(h for h in (vq_info.get("weights_sha256"), vq_info.get("tokens_of")) if h)


def tokens_root(vq_info: dict[str, Any]) -> str:
    """The one hash a VQ-VAE's tokens are named by in what is made from them (token files, decoder-only stages):
    the VQ-VAE it kept the codes of, else its own weights'."""
    return str(vq_info.get("tokens_of") or vq_info["weights_sha256"])


def load_tokenizer(directory: str | Path, device: str | torch.device = "cpu") -> tuple[Tokenizer, dict[str, Any]]:
    """A pair's tokenizer folder: a VQ-VAE or a patch codebook (`TOKENIZER_KINDS`)."""
    return load_checkpoint(directory, TOKENIZER_KINDS, device)  # type: ignore[return-value]


def load_pair(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Tokenizer, TemporalWorldModel, dict[str, Any]]:
    """Load `<dir>/vqvae` (the tokenizer) and `<dir>/wm` and check that the world model's vocab fits it."""
    d = Path(run_dir)
    vq, vq_info = load_tokenizer(d / "vqvae", device)
    wm, wm_info = load_checkpoint(d / "wm", "world_model", device)
    if wm.cfg.n_vocab != vq.n_codes:
        raise CheckpointError(f"{d}: world model vocab {wm.cfg.n_vocab} != tokenizer codebook {vq.n_codes}")
    want = wm_info.get("vq_sha256")
    if want and want not in tokens_identity(vq_info):
        raise CheckpointError(f"{d / 'wm'}: was trained on tokens of another VQ-VAE than {d / 'vqvae'}")
    return vq, wm, {"vqvae": vq_info, "wm": wm_info}  # type: ignore[return-value]
