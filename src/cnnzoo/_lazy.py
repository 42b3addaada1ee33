"""Names a package loads on first use (PEP 562), so importing it costs nothing until one is used."""
from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, table: dict[str, str]):
    """A module `__getattr__` that imports `table[name]` (a submodule, relative to `package`) on first use,
    and a submodule of the package by its name."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str):
        if name not in table:  # `cnnzoo.models` after a bare `import cnnzoo`: the submodule, imported now
            try:
                return import_module(f".{name}", package)
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(import_module(table[name], package), name)
        namespace[name] = value  # found directly next time
        return value

    return __getattr__
