"""Import paths of modules that moved when the engine became its own package (2026-12-05):
`coherent_jax.sampling` still imports, as `coherent_jax.engine.sampling`, with a
DeprecationWarning naming the new path."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

_ENGINE = ("checkpointing", "deprecation", "ensemble", "fusion", "parallel", "population",
           "progress", "sampling", "schedules", "train")
MOVED = {**{f"coherent_jax.{m}": f"coherent_jax.engine.{m}" for m in _ENGINE},
         "coherent_jax.models.denoiser": "coherent_jax.engine.denoiser",
         "coherent_jax.models.folded": "coherent_jax.engine.folded",
         "coherent_jax.models.autoencoder": "coherent_jax.autoencoder"}
"""old module name -> where it lives now."""
_OLD_PACKAGES = ("coherent_jax.models",)
"""old packages that no longer exist: an empty package whose attributes are its moved modules."""


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module at its new path (the same module object)."""

    def find_spec(self, name, path=None, target=None):
        if name in _OLD_PACKAGES:
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        if spec.name in _OLD_PACKAGES:
            warnings.warn(f"{spec.name} is gone: its modules moved to "
                          f"{sorted(v for k, v in MOVED.items() if k.startswith(spec.name))}.",
                          DeprecationWarning, stacklevel=2)
            return _old_package(spec.name)
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; import it from there.",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """Nothing to run: the module at the new path is already executed."""


def _old_package(name: str) -> types.ModuleType:
    """A stand-in for a removed package: `from <name> import m` imports the moved module."""
    package = types.ModuleType(name)

    def moved_attribute(attr: str):
        if f"{name}.{attr}" in MOVED:
            return importlib.import_module(f"{name}.{attr}")
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    package.__getattr__ = moved_attribute
    return package


def install() -> None:
    """Puts the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
