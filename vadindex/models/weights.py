"""Model weights: the built-in models, pretrained tags, local checkpoints and their hashes.

Weights are found without touching the network when they are cached; a download is tried only
when the host answers, so an offline machine fails in a moment instead of a minute of retries.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vadindex.config import DEFAULT_PRETRAINED, user_cache_dir
from vadindex.errors import ModelError
from vadindex.files import sha256_file, write_bytes_atomic
from vadindex.models.identity import BUILTIN, RANDOM, ModelIdentity

log = logging.getLogger("vadindex")

#: Model configs that ship inside the package (open_clip format), with optional weights beside them.
MODELS_DIR = Path(__file__).parent / "builtin"


def register_builtin_models() -> None:
    """Make the package's own model configs (``vadindex-*``) known to open_clip."""
    import open_clip

    known = set(open_clip.list_models())
    for cfg in sorted(MODELS_DIR.glob("*.json")):
        if cfg.stem not in known:
            open_clip.add_model_config(cfg)


def builtin_weights(model: str) -> Path | None:
    """The weights file shipped for a built-in model, if any."""
    path = MODELS_DIR / f"{model}.safetensors"
    return path if path.is_file() else None


def default_pretrained(model: str) -> str:
    """The weights used when ``--pretrained`` is not given."""
    if (MODELS_DIR / f"{model}.json").is_file():
        return BUILTIN if builtin_weights(model) else RANDOM
    if model in DEFAULT_PRETRAINED:
        return DEFAULT_PRETRAINED[model]
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else RANDOM


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint, hashed once per version of the file.

    Every load checks the weights against the index's recorded hash, and hashing a ViT-L-14
    checkpoint takes seconds, so the hash is remembered in ``user_cache_dir()/sha256.json`` under
    the file's path, size, modification time and inode (as git's index does); a file that
    changes in any of these is hashed again. Where the cache cannot be written the file is hashed
    every time.
    """
    st = path.stat()
    prefix = f"{path.resolve()}|"
    key = f"{prefix}{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_dev}"
    store = user_cache_dir() / "sha256.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    digest = known.get(key)
    if isinstance(digest, str) and len(digest) == 64:
        return digest
    digest = sha256_file(path)
    known = {k: v for k, v in known.items() if not k.startswith(prefix)}  # forget older versions
    known[key] = digest
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(store, json.dumps(known).encode("utf-8"), sync=False)
    except OSError as exc:
        log.debug("cannot remember checkpoint hashes in %s (%s)", store, exc)
    return digest


def _hub_reachable(url: str, timeout: float = 3.0) -> bool:
    """One quick TCP connection to the weights host, instead of a minute of download retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_pretrained(cfg: dict[str, Any]) -> str | None:
    """The local path of a tag's weights when they are already in a cache, else ``None``."""
    if cfg.get("file"):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            try:
                return hf_hub_download(repo_id=repo, filename=name, local_files_only=True)
            except Exception:  # noqa: BLE001 - any miss means "not cached"
                continue
    url = cfg.get("url", "")
    if url:
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def resolve_weights(model: str, pretrained: str) -> tuple[Path | None, ModelIdentity]:
    """Find the weights file for ``model``/``pretrained``, downloading only when the host answers.

    Returns:
        The checkpoint path (``None`` for random weights) and the identity to store in manifests.
    """
    import open_clip

    if pretrained == RANDOM:
        return None, ModelIdentity(model, RANDOM)
    if pretrained == BUILTIN:
        path = builtin_weights(model)
        if path is None:
            raise ModelError(
                f"model {model!r} ships no weights; use --pretrained random or a checkpoint path"
            )
        return path, ModelIdentity(model, BUILTIN, checkpoint_sha256(path))
    as_path = Path(pretrained).expanduser()
    if as_path.suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") or as_path.exists():
        if not as_path.is_file():
            raise ModelError(f"checkpoint {pretrained}: no such file")
        return as_path, ModelIdentity(model, f"file:{as_path.name}", checkpoint_sha256(as_path))
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ModelError(
            f"unknown pretrained tag {pretrained!r} for model {model}; known tags: "
            f"{', '.join(tags) or 'none'} (or pass 'random' or a checkpoint path)"
        )
    identity = ModelIdentity(model, pretrained)
    cached = _cached_pretrained(cfg)
    if cached:
        return Path(cached), identity
    from huggingface_hub import constants

    url = constants.ENDPOINT if cfg.get("hf_hub") else cfg.get("url", "")
    if not _hub_reachable(url):
        raise ModelError(
            f"weights for {model} ({pretrained}) are not in the local cache and {urlparse(url).hostname} "
            "cannot be reached; download them on a connected machine (they are cached under "
            "~/.cache/huggingface) or pass a local file with --pretrained /path/to/open_clip_model.safetensors"
        )
    try:
        return Path(open_clip.download_pretrained(cfg)), identity
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise ModelError(f"cannot download weights for {model} ({pretrained}): {exc}") from None
