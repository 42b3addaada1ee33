"""cnnzoo: the classic CNN architectures, their analysis, and the lecture's workflow.

The names below are loaded on first use (PEP 562), so `import cnnzoo` and the command line's `--help` cost no
PyTorch import; `cnnzoo.create_model(...)` imports what it needs.
"""
from importlib import import_module

from .errors import CnnzooError, UnknownModelError

__version__ = "0.1.0"

_LAZY = {"Card": ".models", "ZooModel": ".models", "create_model": ".models", "get_card": ".models",
         "list_models": ".models", "profile": ".analysis"}
__all__ = ["CnnzooError", "UnknownModelError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
