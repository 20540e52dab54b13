"""An optional base class for layers, and the torch-named helpers that work on any module.

The helpers (:func:`named_parameters`, :func:`state_dict`, :func:`load_state_dict`,
:func:`set_mode`, :func:`move`, :func:`named_children`, :func:`named_modules`) accept any
object of the :class:`minidl.Module` protocol, base class or not, at any depth, so
containers and model files treat every plugin's layer alike. A module without
``named_children`` (a protocol-only layer) has no children.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from .parameter import Parameter


def _attributes(obj: object) -> list[Any]:
    """The values of an object's attributes in the order they were set, read through the
    garbage collector rather than ``vars()``: on CPython 3.11 reading an instance's
    ``__dict__`` replaces its inline attribute storage with a dict for good, and every
    ``self.x`` in forward and backward costs more from then on (3% of a small network's
    training step, measured). Names, which only ``__dict__`` has, are read when asked for."""
    refs = gc.get_referents(obj)
    if any(type(r) is dict for r in refs):  # a __dict__ made already, or a dict attribute
        return list(vars(obj).values())
    return [r for r in refs if r is not type(obj)]


def _named(module: Any, items: list[Any], prefix: str) -> list[tuple[str, Any]]:
    # torch's key is the attribute holding the tensor; a layer that keeps it elsewhere
    # (in a list, say) still gets a stable key: its position.
    attrs = {id(v): k for k, v in getattr(module, "__dict__", {}).items()}
    return [(prefix + attrs.get(id(x), str(j)), x) for j, x in enumerate(items)]


_NOT_MODULES = (type, Tensor, Parameter, str, int, float, tuple, list, dict)


def is_module(obj: object) -> bool:
    """A :class:`ModuleBase`, or any object with ``forward``, ``backward`` and
    ``parameters`` (a class, whose methods are callable too, is not one)."""
    if isinstance(obj, ModuleBase):
        return True
    if obj is None or isinstance(obj, _NOT_MODULES):  # the usual attributes, told quickly
        return False
    return all(callable(getattr(obj, m, None)) for m in ("forward", "backward", "parameters"))


def named_children(module: Any) -> list[tuple[str, Any]]:
    """``module.named_children()``, or nothing for a module without it (a leaf)."""
    own = getattr(module, "named_children", None)
    return list(own()) if callable(own) else []


def children(module: Any) -> list[Any]:
    """``module.children()``, or nothing for a module without it (a leaf)."""
    own = getattr(module, "children", None)
    return list(own()) if callable(own) else []


def named_modules(module: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The module, then every module inside it, depth first, each once, under torch's
    dotted names (``""``, ``"1"``, ``"1.0"``)."""
    seen: set[int] = set()

    def walk(m: Any, name: str) -> Iterator[tuple[str, Any]]:
        if id(m) not in seen:
            seen.add(id(m))
            yield name, m
            for key, child in named_children(m):
                yield from walk(child, f"{name}.{key}" if name else key)

    return walk(module, prefix)


def named_parameters(module: Any, prefix: str = "") -> list[tuple[str, Parameter]]:
    own = getattr(module, "named_parameters", None)
    if callable(own):
        return list(own(prefix))
    return _named(module, module.parameters(), prefix)


def named_buffers(module: Any, prefix: str = "") -> list[tuple[str, Tensor]]:
    own = getattr(module, "named_buffers", None)
    if callable(own):
        return list(own(prefix))
    buffers = getattr(module, "buffers", None)
    return _named(module, list(buffers()) if callable(buffers) else [], prefix)


def state_dict(module: Any) -> dict[str, Tensor]:
    """Parameters and buffers under torch's keys (``"0.weight"``); the tensors themselves."""
    state = {name: p.data for name, p in named_parameters(module)}
    state.update(named_buffers(module))
    return state


def load_state_dict(module: Any, state: dict[str, Tensor], strict: bool = True) -> None:
    """Copy ``state`` into the module's own tensors, in place (views into an optimizer's
    flat buffer stay views). Keys and shapes must match, as torch's ``strict=True`` asks."""
    own = state_dict(module)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise ValueError(
            f"state_dict does not fit {type(module).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    for key, target in own.items():
        if key not in state:
            continue
        value = state[key]
        if value.shape != target.shape:
            raise ValueError(
                f"state_dict key {key!r} has shape {tuple(value.shape)}, the module's "
                f"{tuple(target.shape)}"
            )
        target.copy_(value)


def set_mode(module: Any, training: bool) -> None:
    """``module.train(training)`` for a module that has modes; nothing for one that has none."""
    train = getattr(module, "train", None)
    if callable(train):
        train(training)


def parse_to(*args: Any, **kwargs: Any) -> tuple[torch.device | None, torch.dtype | None]:
    """``to()``'s arguments as torch takes them: ``to(dtype)``, ``to(device)``,
    ``to(device, dtype)``, ``to(tensor)`` or keywords."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, str | torch.device | int):
            device = torch.device(a)
        else:
            raise TypeError(f"to() takes a device, a dtype or a tensor, got {a!r}")
    return (None if device is None else torch.device(device)), dtype


def move(module: Any, *args: Any, **kwargs: Any) -> None:
    """``module.to(...)``, or for a module without ``to``, its parameters alone.

    Takes every form torch's ``to`` takes, parsed here once; a module's own ``to`` is
    called in the one form the protocol documents, ``to(device=..., dtype=...)``, so a
    layer that defines ``to(self, device=None, dtype=None)`` gets each where it belongs."""
    device, dtype = parse_to(*args, **kwargs)
    to = getattr(module, "to", None)
    if callable(to):
        to(device=device, dtype=dtype)
        return
    for p in module.parameters():
        p.to(device=device, dtype=dtype)


class ModuleBase:
    """Subclass it to get torch's conveniences: ``__call__``, ``parameters()`` and
    ``named_parameters()`` found from the attributes, ``register_buffer``, ``buffers()``,
    ``train()``/``eval()``, ``state_dict()``, ``to()`` and ``zero_grad()``.

    It also remembers the arguments it was made with (:attr:`init_args`), which is what a
    model file records to rebuild the layer. Nothing requires it: :class:`minidl.Sequential`
    and the training loop accept any object with ``forward``, ``backward`` and ``parameters``.
    """

    training: bool = True
    _init_args: tuple[tuple[Any, ...], dict[str, Any]]
    _buffer_names: tuple[str, ...] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if (args or kwargs) and cls.__init__ is object.__init__:  # as object() would say
            raise TypeError(f"{cls.__name__}() takes no arguments")
        self = super().__new__(cls)
        self._init_args = (args, kwargs)
        return self

    @property
    def init_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` such that ``type(self)(*args, **kwargs)`` rebuilds the layer."""
        return self._init_args

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def _children(self) -> list[Any]:
        return [v for v in _attributes(self) if is_module(v)]

    def named_children(self) -> Iterator[tuple[str, Any]]:
        """The modules held as attributes, under the attributes' names, as torch's; a
        container that keeps them elsewhere overrides it (as :class:`Sequential` does)."""
        return ((k, v) for k, v in vars(self).items() if is_module(v))

    def children(self) -> Iterator[Any]:
        return iter(self._children())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        return named_modules(self, prefix)

    def modules(self) -> Iterator[Any]:
        return (m for _, m in named_modules(self))

    def apply(self, fn: Callable[[Any], None]) -> Any:
        """``fn`` on every module inside, children first, then on this one (torch's order)."""
        for child in self._children():
            own = getattr(child, "apply", None)
            own(fn) if callable(own) else fn(child)
        fn(self)
        return self

    def parameters(self) -> list[Parameter]:
        # torch's order: the module's own parameters first, then each child's.
        found = [v for v in _attributes(self) if isinstance(v, Parameter)]
        for child in self._children():
            found.extend(child.parameters())
        return found

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        names = {id(p): k for k, p in _named(self, self.parameters(), prefix)}
        for child, module in self.named_children():
            names.update((id(p), k) for k, p in named_parameters(module, f"{prefix}{child}."))
        return [(names[id(p)], p) for p in self.parameters()]

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Keep ``tensor`` as ``self.<name>``: state that is saved and moved, never trained."""
        if name not in self._buffer_names:
            self._buffer_names = (*self._buffer_names, name)
        setattr(self, name, tensor)

    def named_buffers(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        found = [(prefix + n, getattr(self, n)) for n in self._buffer_names]
        for child, module in self.named_children():
            found.extend(named_buffers(module, f"{prefix}{child}."))
        return found

    def buffers(self) -> list[Tensor]:
        return [b for _, b in self.named_buffers()]

    def state_dict(self) -> dict[str, Tensor]:
        return state_dict(self)

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> None:
        load_state_dict(self, state, strict)

    def train(self, mode: bool = True) -> Any:
        self.training = mode
        for child in self._children():
            set_mode(child, mode)
        return self

    def eval(self) -> Any:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Move parameters and buffers; a dtype applies to floating buffers only."""
        device, dtype = parse_to(*args, **kwargs)
        for p in self.parameters():
            p.to(device=device, dtype=dtype)
        for name in self._buffer_names:
            b = getattr(self, name)
            setattr(self, name, b.to(device=device, dtype=dtype if b.is_floating_point() else None))
        for child in self._children():
            move(child, device=device, dtype=dtype)
        return self

    def float(self) -> Any:
        return self.to(torch.float32)

    def double(self) -> Any:
        return self.to(torch.float64)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
