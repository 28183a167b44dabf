"""Encoder identities: a string that changes whenever the weights, config or pre-processing files change.

The feature and input caches are keyed by it. A local model directory is identified by the content
of its files, never its path (a copied or moved model keeps its caches); a hub model in the local
Hugging Face cache by its commit; a model built in memory by its config and every weight.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

# Part of every identity: bump when pooling or pre-processing changes meaning, so caches rebuild.
POOLING_VERSION = 1
AUDIO_POOLING = f"mean-valid-frames/v{POOLING_VERSION}"
TEXT_POOLING = f"first-token/v{POOLING_VERSION}"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content, memoised per process by (path, size, mtime) for big weight files."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as fh:
            _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    return _DIGESTS[key]


def _directory_digest(directory: Path) -> str:
    """Digest over the names and contents of a model directory's files.

    Content only, never the absolute path, so a copied or moved model keeps its cached features.
    Hidden files and Markdown (model cards) do not change what the model computes.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts) or rel.lower().endswith(".md"):
            continue
        h.update(f"{rel}\0{file_digest(path)}\n".encode())
    return h.hexdigest()


def looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/abs``, ``a/b/c``, ``~``) is a path."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot directory of a hub model, or None if it is not in the local HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError):  # malformed id etc.: "not cached"; the loader gives the real error
        return None
    return Path(found).parent if isinstance(found, str) else None


def source_identity(source: str | Path) -> str | None:
    """Identity of a model source without loading it, or None when that needs a download first.

    Local directory → content digest of its files; cached hub model → ``hub:<id>@<commit>`` (a
    snapshot folder is named by its commit, which pins the content).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return f"local:sha256:{_directory_digest(path)[:32]}"
    source = str(source)
    if looks_like_path(source):
        return None
    snapshot = _hub_snapshot(source)
    return f"hub:{source}@{snapshot.name}" if snapshot is not None else None


def state_identity(model: torch.nn.Module, extra: dict) -> str:
    """Identity of an in-memory model (no files): config + processor settings + every weight."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return f"memory:sha256:{h.hexdigest()[:32]}"

