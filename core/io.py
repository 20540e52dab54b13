"""Model files: a JSON architecture of registered layers plus safetensors tensors.

Loading never executes code from the files: the architecture is data naming registered
layers and the arguments each was made with, and safetensors holds raw tensors only (no
pickle). The tensors are the model's ``state_dict()``, parameters and buffers, under
torch's keys.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

from .checks import layer_label
from .errors import ModelFileError, SpecError
from .module import load_state_dict, set_mode, state_dict
from .protocols import Module
from .registry import registry
from .sequential import Sequential
from .spec import Spec, create

FORMAT = "minidl-model"
VERSION = 2
ARCHITECTURE = "model.json"
WEIGHTS = "model.safetensors"
_MAX_JSON = 16 * 2**20
#: Constructor arguments a file does not record: the file records the dtype itself, and a
#: loaded model starts on the CPU.
_PLACEMENT = ("dtype", "device")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: readers see
    the old file or the new one, never half of one."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes it 0600; give what open() would
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


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """One safetensors file, written atomically; the tensors are copied to the CPU."""
    cpu = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    atomic_write(path, _save_tensors(cpu, metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file; data only, never code."""
    raw = Path(path).read_bytes()
    tensors = _load_tensors(raw)
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    metadata = header.get("__metadata__") or {}
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def architecture(model: Module) -> list[dict[str, Any]]:
    """Each layer as its registered name, the plugin that registered it, and the arguments
    it was made with (its ``init_args``, which :class:`minidl.ModuleBase` records)."""
    layers = list(getattr(model, "layers", [model]))
    described = []
    for i, layer in enumerate(layers):
        where = layer_label(model, i) if hasattr(model, "layers") else type(layer).__name__
        name = registry.name_of("layer", type(layer))
        if name is None:
            raise ModelFileError(
                f"cannot save the model: {where} is not a registered layer class; register "
                "the class itself through register_layers so a file can name it"
            )
        init_args = getattr(layer, "init_args", None)
        if init_args is None:
            raise ModelFileError(
                f"cannot save the model: {where} does not say how it was made; subclass "
                "minidl.ModuleBase (it records its constructor arguments) or give the layer "
                "init_args = (args, kwargs)"
            )
        args, kwargs = init_args
        item = {
            "name": name,
            "plugin": registry.table("layer")[name].plugin,
            "args": list(args),
            "kwargs": {k: v for k, v in kwargs.items() if k not in _PLACEMENT},
        }
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            raise ModelFileError(
                f"cannot save the model: {where} was made with arguments that are not JSON "
                f"data ({args!r}, {kwargs!r}); a file records numbers, strings, lists and dicts"
            ) from None
        described.append(item)
    return described


def save_model(
    model: Module, directory: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model.json`` and ``model.safetensors`` into ``directory`` (created if needed).
    Any model of registered layers can be saved, however it was built."""
    params = model.parameters()
    document = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(params[0].data.dtype).removeprefix("torch.") if params else "float32",
        "layers": architecture(model),
        "metadata": metadata or {},
    }
    try:  # before writing anything: a failure must not leave new weights beside old JSON
        text = json.dumps(document, indent=2)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"model metadata must be JSON data: {e}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS, state_dict(model), {"format": FORMAT})
    atomic_write(directory / ARCHITECTURE, text)


def read_architecture(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ARCHITECTURE
    if not Path(directory).is_dir():
        raise ModelFileError(f"{directory}: no such directory")
    if not path.is_file():
        raise ModelFileError(f"{directory}: not a saved model (no {ARCHITECTURE})")
    if path.stat().st_size > _MAX_JSON:
        raise ModelFileError(f"{path}: too large for a model architecture")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file")
    if document.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: format version {document.get('version')!r}; this minidl reads version {VERSION}"
        )
    layers = document.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(x, dict)
        and isinstance(x.get("name"), str)
        and isinstance(x.get("args", []), list)
        and isinstance(x.get("kwargs", {}), dict)
        for x in layers
    ):
        raise ModelFileError(f"{path}: 'layers' must be a list of {{name, args, kwargs}} objects")
    return document


@torch.no_grad()
def load_model(directory: str | Path) -> tuple[Sequential, dict[str, Any]]:
    """The saved model, in eval mode, and its metadata. A layer that no loaded plugin
    registers is named, with the plugin the model was saved with."""
    directory = Path(directory)
    document = read_architecture(directory)
    known = registry.table("layer")
    layers = []
    for item in document["layers"]:
        if item["name"].lower() not in known:
            plugin = item.get("plugin")
            origin = f" (saved from plugin {plugin!r})" if isinstance(plugin, str) else ""
            raise ModelFileError(
                f"{directory}: layer {item['name']!r}{origin} is not registered; is the "
                f"plugin that provides it installed and loaded? Available names: "
                f"{', '.join(sorted(known))}"
            )
        # Placement is not the file's to say: the dtype is recorded once, and the model
        # starts on the CPU.
        kwargs = {k: v for k, v in item.get("kwargs", {}).items() if k not in _PLACEMENT}
        try:
            layers.append(create("layer", Spec(item["name"], item.get("args", []), kwargs)))
        except SpecError as e:
            raise ModelFileError(f"{directory}: {e}") from None
    model = Sequential(*layers)
    dtype = getattr(torch, str(document.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelFileError(f"{directory}: unknown dtype {document.get('dtype')!r}")
    model.to(dtype)
    path = directory / WEIGHTS
    try:
        tensors, _ = load_tensors(path)
    except FileNotFoundError:
        raise ModelFileError(f"{directory}: no {WEIGHTS}") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        load_state_dict(model, tensors)
    except (KeyError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: {e}") from None
    set_mode(model, False)
    metadata = document.get("metadata", {})
    return model, metadata if isinstance(metadata, dict) else {}
