"""Saved models: a JSON architecture of registered layers plus safetensors weights.

Loading never executes code from the files: the architecture is data naming registered
layers, and safetensors holds raw tensors only (no pickle).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .errors import ModelFileError, SpecError
from .sequential import Sequential
from .spec import LayerSpec, build

FORMAT = "minidl-model"
VERSION = 1
ARCHITECTURE = "model.json"
WEIGHTS = "model.safetensors"
_MAX_JSON = 16 * 2**20


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: readers see
    the old file or the new one, never half of one."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)  # replacing a file keeps its mode
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_model(
    model: Sequential, directory: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
    if getattr(model, "spec", None) is None:
        raise ValueError(
            "only models built from registered layers can be saved: build it with "
            "minidl.build_model(spec, in_features)"
        )
    assert model.spec is not None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = model.parameters()
    names = [
        f"{i}.{j}" for i, layer in enumerate(model.layers) for j in range(len(layer.parameters()))
    ]
    tensors = {
        n: p.data.detach().to("cpu").contiguous() for n, p in zip(names, params, strict=True)
    }
    architecture = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(params[0].data.dtype).removeprefix("torch.") if params else "float32",
        "layers": [{"name": s.name, "args": s.args, "kwargs": s.kwargs} for s in model.spec],
        "metadata": metadata or {},
    }
    try:  # before writing anything: a failure must not leave new weights beside old JSON
        text = json.dumps(architecture, indent=2)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"model metadata must be JSON data (strings, numbers, lists, dicts): {e}"
        ) from None
    atomic_write(directory / WEIGHTS, save_tensors(tensors))
    atomic_write(directory / ARCHITECTURE, text)


def read_architecture(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ARCHITECTURE
    if not path.is_file():
        raise ModelFileError(f"{directory}: not a saved model (no {ARCHITECTURE})")
    if path.stat().st_size > _MAX_JSON:
        raise ModelFileError(f"{path}: too large for a model architecture")
    try:
        architecture = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(architecture, dict) or architecture.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file")
    if architecture.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: format version {architecture.get('version')!r}; this minidl reads version {VERSION}"
        )
    layers = architecture.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(x, dict)
        and isinstance(x.get("name"), str)
        and isinstance(x.get("args", []), list)
        and isinstance(x.get("kwargs", {}), dict)
        for x in layers
    ):
        raise ModelFileError(f"{path}: 'layers' must be a list of {{name, args, kwargs}} objects")
    return architecture


def load_model(directory: str | Path) -> tuple[Sequential, dict[str, Any]]:
    """The saved model and its metadata. A layer that no loaded plugin registers is named
    in the error, so the user knows which plugin to install."""
    directory = Path(directory)
    architecture = read_architecture(directory)
    specs = [
        LayerSpec(x["name"], x.get("args", []), x.get("kwargs", {})) for x in architecture["layers"]
    ]
    try:
        model = build(specs, in_features=None)
    except SpecError as e:
        hint = " (is the plugin that provides it installed?)" if "unknown layer" in str(e) else ""
        raise ModelFileError(f"{directory}: {e}{hint}") from None
    dtype = getattr(torch, str(architecture.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelFileError(f"{directory}: unknown dtype {architecture.get('dtype')!r}")
    model.to(dtype=dtype)
    weights_path = directory / WEIGHTS
    try:
        tensors = load_tensors(weights_path.read_bytes())
    except FileNotFoundError:
        raise ModelFileError(f"{directory}: no {WEIGHTS}") from None
    except Exception as e:
        raise ModelFileError(f"{weights_path}: not a valid safetensors file ({e})") from None
    names = [
        f"{i}.{j}" for i, layer in enumerate(model.layers) for j in range(len(layer.parameters()))
    ]
    if set(names) != set(tensors):
        raise ModelFileError(
            f"{weights_path}: holds tensors {sorted(tensors)}, the architecture needs {names}"
        )
    for name, p in zip(names, model.parameters(), strict=True):
        t = tensors[name]
        if t.shape != p.shape:
            raise ModelFileError(
                f"{weights_path}: tensor {name} has shape {tuple(t.shape)}, expected {tuple(p.shape)}"
            )
        p.data = t.to(p.data.dtype)
    metadata = architecture.get("metadata", {})
    return model, metadata if isinstance(metadata, dict) else {}
