"""The build's errors, and the diagnosis that turns a failure into the one the user should see."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from etl.inputs import scan_h5
from warehouse.errors import InputError, OutputError, WarehouseError


class BuildError(WarehouseError):
    """The build cannot proceed: the target exists, is busy, or is not a warehouse."""


# Errors writing the output, as opposed to reading a damaged input.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
_WRITE_MESSAGES = ("no space left", "disk quota", "read-only file system", "permission denied")


def output_error(exc: OSError, target: Path) -> OutputError:
    """The one-line error for an OSError writing the warehouse `target`."""
    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return OutputError(
        f"cannot write the warehouse {target}: {what}{where}; the previous one, if any, is intact"
    )


def explain_failure(exc: BaseException, h5: Path, n_latents: int, chunk: int, target: Path) -> None:
    """After a failed build: raise the error the user should see, if it is not `exc`.

    A value error found by a parallel worker, or a read error h5py reports without a
    position, is traced to the first bad position in the file by one sequential pass
    (`scan_h5`, only on this error path).  Errors writing the output become
    `OutputError`.  Anything else (interrupts included) propagates unchanged.
    """
    if not isinstance(exc, Exception):
        return
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        raise output_error(exc, target) from None
    if _is_duckdb_io_error(exc) and any(m in str(exc).lower() for m in _WRITE_MESSAGES):
        raise OutputError(f"cannot write the warehouse {target}: {exc}".split("\n")[0]) from None
    if isinstance(exc, InputError):
        stop = exc.position
        if stop is None and "is not valid UTF-8" not in str(exc):
            return
    elif isinstance(exc, (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError)):
        stop = None
    else:
        return
    try:
        scan_h5(h5, n_latents, chunk, stop=stop)
    except InputError as found:
        raise found from None
    except Exception:  # noqa: BLE001 - the original error is the one to report
        return


def _is_duckdb_io_error(exc: BaseException) -> bool:
    # duckdb is only looked up: a build that failed before loading it has no such error.
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.IOException)
