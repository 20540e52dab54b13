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

from .checks import layer_label, layer_name
from .errors import ModelFileError, SpecError
from .module import is_module, load_state_dict, move, set_mode, state_dict
from .protocols import Module
from .registry import registry
from .sequential import Sequential
from .spec import Spec, create

FORMAT = "minidl-model"
#: 3: a container's modules nested in its arguments, and a model that is not a Sequential
#: as "model"; 2 (minidl 0.2): a flat list of "layers".
VERSION = 3
READS = (2, 3)
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


def architecture(model: Module) -> dict[str, Any]:
    """The model as data: ``{"layers": [item, ...]}`` for a :class:`Sequential`, else
    ``{"model": item}``. An item is a layer's registered name, the plugin that registered
    it, and the arguments it was made with (its ``init_args``, which
    :class:`minidl.ModuleBase` records); a container's arguments that are modules are
    items themselves, at the positions (or keywords) its ``modules`` list names."""
    if type(model) is Sequential:
        return {"layers": [_item(m, layer_label(model, i)) for i, m in enumerate(model)]}
    return {"model": _item(model, layer_label(model))}


def _item(layer: Any, where: str) -> dict[str, Any]:
    name = registry.name_of("layer", type(layer))
    if name is None and type(layer) is not Sequential:
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
    args = list(init_args[0])
    kwargs = {k: v for k, v in init_args[1].items() if k not in _PLACEMENT}
    modules: list[int | str] = [
        key for key, v in [*enumerate(args), *kwargs.items()] if is_module(v)
    ]
    for n, key in enumerate(modules):
        inner = args[key] if isinstance(key, int) else kwargs[key]
        inside = f"{where} > layer {n + 1} ({layer_name(inner)})"
        if isinstance(key, int):
            args[key] = _item(inner, inside)
        else:
            kwargs[key] = _item(inner, inside)
    item = {
        "name": name or "sequential",
        "plugin": registry.table("layer")[name].plugin if name else "minidl",
        "args": args,
        "kwargs": kwargs,
        **({"modules": modules} if modules else {}),
    }
    try:
        json.dumps(item)
    except (TypeError, ValueError):
        raise ModelFileError(
            f"cannot save the model: {where} was made with arguments that are not JSON "
            f"data ({init_args[0]!r}, {init_args[1]!r}); a file records numbers, strings, "
            "lists and dicts, and modules as arguments of their own"
        ) from None
    return item


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
        **architecture(model),
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
    if document.get("version") not in READS:
        raise ModelFileError(
            f"{path}: format version {document.get('version')!r}; this minidl reads versions "
            f"{' and '.join(map(str, READS))}"
        )
    key = "model" if "model" in document and document["version"] >= 3 else "layers"
    items = [document[key]] if key == "model" else document.get("layers")
    try:
        valid = isinstance(items, list) and all(_valid(x) for x in items)
    except RecursionError:
        valid = False
    if not valid:
        raise ModelFileError(
            f"{path}: {key!r} must be "
            + ("a list of {name, args, kwargs} objects" if key == "layers" else "one object")
            + " ({name, args, kwargs}; a container's modules are such objects among its "
            "args, their positions listed in 'modules')"
        )
    return document


def _valid(item: Any) -> bool:
    if not (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("args", []), list)
        and isinstance(item.get("kwargs", {}), dict)
        and isinstance(item.get("modules", []), list)
    ):
        return False
    args, kwargs = item.get("args", []), item.get("kwargs", {})
    for key in item.get("modules", []):
        if type(key) is int and 0 <= key < len(args):
            inner = args[key]
        elif isinstance(key, str) and key in kwargs:
            inner = kwargs[key]
        else:
            return False
        if not _valid(inner):
            return False
    return True


@torch.no_grad()
def load_model(directory: str | Path) -> tuple[Module, dict[str, Any]]:
    """The saved model, in eval mode, and its metadata. A layer that no loaded plugin
    registers is named, with the plugin the model was saved with. Files of version 2
    (minidl 0.2: a flat list of layers) load as they always did."""
    try:
        return _load(Path(directory))
    except RecursionError:  # a file may nest containers deeper than Python's stack
        raise ModelFileError(f"{directory}: the model is nested too deeply to load") from None


def _load(directory: Path) -> tuple[Module, dict[str, Any]]:
    document = read_architecture(directory)
    model = (
        _make(document["model"], directory)
        if "model" in document and document["version"] >= 3
        else Sequential(*(_make(item, directory) for item in document["layers"]))
    )
    dtype = getattr(torch, str(document.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelFileError(f"{directory}: unknown dtype {document.get('dtype')!r}")
    move(model, dtype)
    path = directory / WEIGHTS
    try:
        tensors, _ = load_tensors(path)
    except FileNotFoundError:
        raise ModelFileError(f"{directory}: no {WEIGHTS}") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        load_state_dict(model, tensors)
    except RecursionError:
        raise
    except (KeyError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: {e}") from None
    set_mode(model, False)
    metadata = document.get("metadata", {})
    return model, metadata if isinstance(metadata, dict) else {}


def _make(item: dict[str, Any], directory: Path) -> Any:
    """The layer an item describes, its modules made first; names only registered ones."""
    known = registry.table("layer")
    name = item["name"].lower()
    if name not in known and name != "sequential":
        plugin = item.get("plugin")
        origin = f" (saved from plugin {plugin!r})" if isinstance(plugin, str) else ""
        raise ModelFileError(
            f"{directory}: layer {item['name']!r}{origin} is not registered; is the "
            f"plugin that provides it installed and loaded? Available names: "
            f"{', '.join(sorted(known))}"
        )
    args, kwargs = list(item.get("args", [])), dict(item.get("kwargs", {}))
    for key in item.get("modules", []):
        if isinstance(key, int):
            args[key] = _make(args[key], directory)
        else:
            kwargs[key] = _make(kwargs[key], directory)
    # Placement is not the file's to say: the dtype is recorded once, and the model
    # starts on the CPU.
    kwargs = {k: v for k, v in kwargs.items() if k not in _PLACEMENT}
    if name not in known:  # minidl's own chain, when no plugin registers the name
        return Sequential(*args)
    try:
        return create("layer", Spec(name, args, kwargs))
    except SpecError as e:
        raise ModelFileError(f"{directory}: {e}") from None
