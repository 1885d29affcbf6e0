import importlib

import pytest

PACKAGES = ["shipyard", "shipyard.data"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_exists_and_all_is_sorted(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.split()) > 10
    assert module.__all__ == sorted(module.__all__)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_errors_form_one_tree_with_exit_codes():
    from shipyard import errors

    classes = [getattr(errors, n) for n in dir(errors) if n.endswith(("Error", "Violation"))]
    assert all(issubclass(c, errors.ShipyardError) for c in classes)
    assert issubclass(errors.ContractViolation, ValueError)
    assert errors.SpecError.exit_code == errors.DataError.exit_code == 2
    assert errors.DataError.http_status == 422
