import importlib
import pkgutil
import subprocess
import sys

import pytest

import shipyard


def _packages() -> list[str]:
    """shipyard and every subpackage under it, found by walking, not listed by hand."""
    found = ["shipyard"]
    for info in pkgutil.walk_packages(shipyard.__path__, "shipyard."):
        if info.ispkg:
            found.append(info.name)
    return found


PACKAGES = _packages()


def _isort_order(name: str) -> tuple[int, str]:
    # the order ruff's RUF022 keeps: CONSTANTS, then Classes, then everything else
    group = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return group, name


def test_the_walk_finds_every_subpackage():
    assert {
        "shipyard.data",
        "shipyard.evaluation",
        "shipyard.features",
        "shipyard.models",
        "shipyard.serving",
    } <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_exists_and_all_is_sorted(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.split()) > 10
    assert module.__all__, f"{name} exports nothing"
    assert module.__all__ == sorted(module.__all__, key=_isort_order)
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("package", ["shipyard", "shipyard.serving"])
def test_importing_the_package_loads_nothing_heavy(package):
    loaded = _modules_after_import(f"import {package}")
    assert not {"pandas", "mlflow", "numpy", "fastapi"} & loaded


def test_lazy_names_resolve_to_their_modules():
    from shipyard.bundle import Bundle, load_bundle
    from shipyard.data.io import read_table
    from shipyard.features.transform import Transform
    from shipyard.serving.log import read_log

    assert shipyard.load_bundle is load_bundle
    assert shipyard.Bundle is Bundle
    assert shipyard.read_table is read_table
    assert shipyard.Transform is Transform
    assert importlib.import_module("shipyard.serving").read_log is read_log
    with pytest.raises(AttributeError):
        _ = shipyard.no_such_name


def test_errors_form_one_tree_with_exit_codes():
    from shipyard import errors

    classes = [getattr(errors, n) for n in dir(errors) if n.endswith(("Error", "Violation"))]
    assert all(issubclass(c, errors.ShipyardError) for c in classes)
    assert issubclass(errors.ContractViolation, ValueError)
    assert errors.SpecError.exit_code == errors.DataError.exit_code == 2
    assert errors.DataError.http_status == 422
