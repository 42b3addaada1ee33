"""cnnzoo: the classic CNN architectures, their analysis, and the lecture's workflow.

The names below are loaded on first use (PEP 562), so `import cnnzoo` and the command line's `--help` cost no
PyTorch import; `cnnzoo.create_model(...)` imports what it needs.
"""
from ._lazy import lazy_getattr
from .errors import CnnzooError, UnknownModelError

__version__ = "0.1.0"

_LAZY = {"Card": ".models", "ZooModel": ".models", "create_model": ".pretrained", "get_card": ".models",
         "list_models": ".models", "profile": ".analysis",
         "explain": ".explain"}
__all__ = ["CnnzooError", "UnknownModelError", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
