"""One error hierarchy: every error the library raises for a user carries its exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import etl
import warehouse
from warehouse.errors import ExitCode, InputError, SaewhError, exit_code_of
from warehouse.signals import Terminated

# Control flow inside one module, never raised to a caller (etl.pickled_strings falls
# back to the slow path on them).
INTERNAL_SIGNALS = {"etl.pickled_strings.Unusual", "etl.pickled_strings.Refused"}


def _library_modules():
    for package in (etl, warehouse):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):  # runs a program when imported
                continue
            yield importlib.import_module(info.name)


def test_every_library_exception_is_a_saewh_error():
    found = set()
    for module in _library_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseException):
                continue
            name = f"{cls.__module__}.{cls.__qualname__}"
            found.add(name)
            if name in INTERNAL_SIGNALS or issubclass(cls, KeyboardInterrupt) or cls is SaewhError:
                continue
            assert issubclass(cls, SaewhError), f"{name} is not a warehouse.errors.SaewhError"
            assert cls.exit_code is not ExitCode.INTERNAL, f"{name} has no exit code of its own"
    assert {"etl.build.errors.BuildError", "etl.staging.LockBusy", "warehouse.sandbox.RefusedQuery",
            "etl.tokenizer.TokenizerError"} <= found


@pytest.mark.parametrize("exc, code", [
    (InputError("bad", position=3), ExitCode.BAD_INPUT),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    (Terminated(), ExitCode.TERMINATED),
    (FileNotFoundError(2, "No such file"), ExitCode.BAD_INPUT),
    (RuntimeError("a bug"), ExitCode.INTERNAL),
])
def test_exit_code_of(exc, code):
    assert exit_code_of(exc) is code


def test_duckdb_errors_are_query_errors():
    import duckdb

    with pytest.raises(duckdb.Error) as info:
        duckdb.sql("SELECT no_such_column")
    assert exit_code_of(info.value) is ExitCode.QUERY


def test_messages_are_one_line_and_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(InputError("line one\n  line two", position=7)))
    assert str(err) == "line one line two" and err.position == 7


def test_a_reason_is_never_empty():
    """A foreign error without a message is named by its class (`saewh: error: ... (OSError)`)."""
    from warehouse.errors import one_line

    assert one_line(OSError()) == "OSError"
    assert one_line(ValueError("a\n b")) == "a b"
    assert one_line("  ") == ""
