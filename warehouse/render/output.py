"""Where rendered data goes: stdout or a file renamed into place when complete.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from warehouse.errors import OutputError

# ---------------------------------------------------------------- output


class Output:
    """Where rendered data goes: a text stream (stdout), or a file.

    Text is written as UTF-8 whatever the locale says (an ASCII locale must not lose
    data).  A regular file is written beside its name and renamed over it by `commit`,
    so a failed or interrupted export leaves the previous file (or none), never half of
    one; a device or pipe (`-o /dev/stdout`, `-o /dev/full`) is written in place.  A
    failing write raises OutputError; a reader that went away, BrokenPipeError.
    """

    def __init__(self, stream: Any = None, path: str | os.PathLike | None = None) -> None:
        self.name = str(path) if path is not None else "stdout"
        self._target: str | None = None
        self._temp: str | None = None
        self._file: Any = None
        if path is not None:
            real = os.path.realpath(path)
            if os.path.exists(real) and not os.path.isfile(real):
                if os.path.isdir(real):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
                self._file = open(real, "wb", buffering=1 << 20)
            else:
                self._target = real
                head, tail = os.path.split(real)
                self._temp = os.path.join(head, f".{tail}.saewh-{os.getpid()}.tmp")
                self._file = open(self._temp, "wb", buffering=1 << 20)
            self._binary = True
            self._stream = self._file
            return
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            self._stream, self._binary = buffer, True
        else:
            self._stream, self._binary = stream, False

    def write(self, text: str) -> None:
        if text:
            self._guard(self._stream.write, text.encode("utf-8") if self._binary else text)

    def write_bytes(self, data: bytes) -> None:
        self._guard(self._stream.write, data)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def getvalue(self) -> str:
        """What was written to an in-memory text stream (`render_sections`)."""
        return self._stream.getvalue()

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
                raise BrokenPipeError(errno.EPIPE, "the reader went away") from None
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise OutputError(f"cannot write {self.name}: {reason}") from None

    def commit(self) -> None:
        """Flush; a file is closed and takes its name (keeping the mode of the one it replaces)."""
        self.flush()
        if self._file is None:
            return
        self._guard(self._file.close)
        if self._temp is not None and self._target is not None:
            try:
                os.chmod(self._temp, os.stat(self._target).st_mode & 0o7777)
            except OSError:
                pass
            self._guard(os.replace, self._temp, self._target)
            self._temp = None

    def abort(self, close: bool = True) -> None:
        """Drop a file being written (its previous content, if any, stays).  `close=False`
        when another thread may be blocked writing it (its close would wait for that)."""
        if close and self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        if self._temp is not None:
            try:
                os.unlink(self._temp)
            except OSError:
                pass
            self._temp = None


class _BinaryOutput:
    """`Output` as the binary file object pyarrow's writers want."""

    def __init__(self, out: Output) -> None:
        self._out, self._pos, self.closed = out, 0, False

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._out.write_bytes(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self.closed = True
