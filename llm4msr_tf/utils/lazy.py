"""Lazy re-exports: a package names its public objects without importing their (heavy) modules."""
import importlib
from typing import Any, Callable, Dict


def lazy_getattr(package: str, names: Dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``names[attr]`` on first access.

    Args:
        package: the package's ``__name__`` (for the error message).
        names: public attribute name -> module that defines it.

    Returns:
        The function to assign to the package's ``__getattr__`` (PEP 562); it caches each
        resolved attribute in the package's namespace.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(package)
        value = getattr(importlib.import_module(names[name]), name)
        setattr(module, name, value)
        return value

    return __getattr__
