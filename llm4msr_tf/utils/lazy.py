"""Lazy re-exports: a package names its public objects without importing their (heavy) modules."""
import importlib
from typing import Any, Callable, Dict


def lazy_getattr(package: str, names: Dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) that imports a public name on first access.

    Args:
        package: the package's ``__name__``.
        names: public name -> where it lives: ``"module"`` (the object of the same name in it),
            ``"module:attr"`` (another name in it), or the submodule ``f"{package}.{name}"`` itself.

    Returns:
        The function to assign to the package's ``__getattr__``; it caches each resolved name
        in the package's namespace.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attr = names[name].partition(":")
        module = importlib.import_module(module_name)
        value = module if module_name == f"{package}.{name}" else getattr(module, attr or name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
