"""The exception tree: every exception mmsr_serve defines lives in ``mmsr_serve.errors``, drawn in
its docstring (so one import gives a caller every class to catch)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mmsr_serve
from mmsr_serve import errors

SKIP = ("mmsr_serve.cli",)  # the command, not the library


@pytest.mark.slow  # imports every module, the torch backends included
def test_every_exception_class_is_defined_in_errors_and_drawn() -> None:
    defined_elsewhere = []
    for module_info in pkgutil.walk_packages(mmsr_serve.__path__, "mmsr_serve."):
        if module_info.name in SKIP or module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        if module.__name__ == "mmsr_serve.errors":
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                defined_elsewhere.append(f"{module.__name__}.{name}")
    assert defined_elsewhere == []
    tree = errors.__doc__ or ""
    classes = [n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, errors.MMSRError)]
    assert len(classes) >= 20 and all(name in tree for name in classes)


def test_old_import_places_still_work() -> None:
    from mmsr_serve.api.runs import ClientDisconnected
    from mmsr_serve.fetch import FetchError
    from mmsr_serve.search._http import ProviderUnavailable

    assert ClientDisconnected is errors.ClientDisconnected and FetchError is errors.FetchError
    assert ProviderUnavailable is errors.ProviderUnavailable
