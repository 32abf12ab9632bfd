"""Reading a pickled numpy object array of strings without unpickling it.

`np.save` writes an object array as a pickle: `_reconstruct(ndarray, (0,), b'b')`,
then a BUILD whose state tuple ends with the list of elements, appended in batches
of 1000.  `scan_string_array` walks those opcodes itself, a buffer at a time, and
hands the elements on as they are appended, so a file of any size is read in bounded
memory, and no pickle machinery ever runs on the file's bytes.

It accepts only the plain shape numpy writes (protocols 3 to 5, from numpy 1 or 2;
numpy's protocol 2 needs `_codecs.encode`, which the unpickler refuses too) and
raises `Unusual` on anything else: an opcode outside its short list, a global other
than numpy's array reconstruction, a non-string element, unusual memo numbering or
framing, a truncated or damaged stream.  The caller then reads the member the old
way, with the restricted unpickler, which words the error exactly as before or, for
a valid but unusual file, loads it whole (correct, not bounded).  `Refused` is the
exception: what would make the unpickler itself exhaust memory is an error here.
"""

from __future__ import annotations

from collections.abc import Generator
from struct import error as StructError
from struct import unpack_from
from typing import IO

_CHUNK = 1 << 20
# The memo keeps short strings (the header's names, and '' and one-character strings,
# which CPython shares, so they repeat by reference), up to a count.  Other strings
# repeated by reference (GET) are found by a first pass, which only notes their memo
# ids, and kept by the second: memory then grows with the repeated texts only.
_MEMO_STR_MAX = 64
_MEMO_CAP = 1 << 14
_KEEP_CAP = 1 << 16
_MEMO_GAP_MAX = 1 << 24  # 128+ MB of C memo table beyond that
_HIGHEST_PROTOCOL = 5
_NO_FRAME = 1 << 62

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_OBJECT_DTYPE_ARGS = {("O8", False, True), ("O4", False, True)}
_OBJECT_DTYPE_STATE = (3, "|", None, None, None, -1, -1, 63)


class Unusual(Exception):
    """Not the plain pickle numpy writes for an array of strings (or unreadable)."""


class Refused(Unusual):
    """Broken in a way the unpickler itself must not see (it would exhaust memory)."""


class _Global:
    __slots__ = ("key",)

    def __init__(self, key: tuple[str, str]):
        self.key = key


class _Reduced:
    __slots__ = ("func", "args", "state")

    def __init__(self, func: _Global, args: tuple):
        self.func, self.args, self.state = func, args, None


class _Elements:
    """The array's element list: counted, never held."""

    __slots__ = ("count", "built")

    def __init__(self):
        self.count, self.built = 0, False


class _NotUtf8:
    """A str element holding lone surrogates (pickle writes them with surrogatepass)."""


_NOT_UTF8 = _NotUtf8()


class _Ref:
    """A GET of a string not kept, in the first pass: it repeats an earlier element,
    already checked, so only its count matters."""


_REF = _Ref()
_MISSING = object()


def _refill(fh: IO[bytes], buf: bytes, pos: int, need: int, consumed: int, strict: bool = True):
    """Keep buf[pos:] and read on until `need` bytes are available (or the data ends).

    Returns the new buffer, position, end and offset of the buffer in the stream, and
    -1 for the scan's `lim` (so it checks its frame against the new buffer).
    """
    consumed += pos
    rest = buf[pos:]
    more = fh.read(max(_CHUNK, need - len(rest)))
    buf = rest + more if rest else more
    if strict and len(buf) < need:
        raise Unusual("pickle data was truncated")
    return buf, 0, len(buf), consumed, -1


def _decode_str(raw: bytes):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:  # how pickle itself decodes: a str with lone surrogates, which UTF-8 cannot store
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise Unusual("not UTF-8 even with surrogates") from None
    return _NOT_UTF8


def _elements(items: list, into: _Elements) -> list[str | None]:
    """The appended items as str; None marks one that is not valid UTF-8."""
    out: list[str | None] = []
    for item in items:
        kind = type(item)
        if kind is str:
            out.append(item)
        elif kind is bytes:  # as `_as_str` accepts them
            try:
                out.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        elif item is _NOT_UTF8:
            out.append(None)
        elif item is _REF:
            out.append("")
        else:
            raise Unusual(f"element of type {kind.__name__}")
    into.count += len(out)
    return out


def _check_array(top) -> int:
    """The element count, if `top` is exactly the object array numpy pickles."""
    if type(top) is not _Reduced or top.func.key[1] != "_reconstruct":
        raise Unusual("not an array")
    sub, base_shape, code = top.args if len(top.args) == 3 else (None, None, None)
    if type(sub) is not _Global or sub.key != ("numpy", "ndarray") or type(base_shape) is not tuple:
        raise Unusual("not an ndarray")
    if code not in (b"b", "b"):
        raise Unusual("unexpected _reconstruct dtype")
    state = top.state
    if type(state) is not tuple or len(state) != 5:
        raise Unusual("unexpected array state")
    version, shape, dtype, fortran, elements = state
    if version != 1 or type(fortran) is not bool or type(elements) is not _Elements:
        raise Unusual("unexpected array state")
    if type(shape) is not tuple or len(shape) != 1 or type(shape[0]) is not int:
        raise Unusual("not 1-D")
    if (
        type(dtype) is not _Reduced
        or dtype.func.key != ("numpy", "dtype")
        or dtype.args not in _OBJECT_DTYPE_ARGS
        or dtype.state != _OBJECT_DTYPE_STATE
    ):
        raise Unusual("not an object dtype")
    if elements.count != shape[0]:
        raise Unusual("element count differs from the shape")
    return elements.count


def scan_string_array(
    fh: IO[bytes], keep: frozenset[int] | None = None
) -> Generator[list[str | None], None, tuple[int, frozenset[int]]]:
    """Yield the elements of the pickled object array read from `fh` as they come.

    Each yielded list holds one APPENDS batch: str, or None for an element that is
    not valid UTF-8.  Returns the element count and the memo ids of the long strings
    repeated by reference, once the whole pickle (and the rest of `fh`, so a zip
    member's CRC is checked) has been read and found to be exactly a 1-D numpy object
    array of strings.  Raises `Unusual` otherwise.

    Without `keep` (a first pass), a repeated string not kept in the memo yields ""
    in its place.  With `keep`, the ids a first pass returned, it yields every string.
    """
    try:
        return (yield from _scan(fh, keep))
    except (IndexError, StructError):  # a fixed-size argument cut short by the end of the data
        raise Unusual("pickle data was truncated") from None


# One long function on purpose (240 lines): an opcode interpreter whose dispatch is
# inline.  A text costs ~500 ns here, two opcodes (SHORT_BINUNICODE, MEMOIZE); a Python
# call per opcode costs ~45 ns, so a function per opcode would add ~18% to reading every
# text of the NPZ (measured on 400K texts, protocol 4).  The cold opcodes (the array's
# header) are the ones below the element opcodes, in the same loop.
def _scan(fh: IO[bytes], keep: frozenset[int] | None) -> Generator[list[str | None], None, tuple]:
    buf, pos, end, consumed = b"", 0, 0, 0
    stack: list = []
    metastack: list[list] = []
    memo: dict[int, object] = {}
    next_memo = strings_kept = others_kept = 0
    wanted = keep or frozenset()
    referenced: set[int] = set()
    elements: _Elements | None = None
    # Protocol 4 frames: only the framing pickle writes is taken, every opcode inside
    # one frame or outside all (the C unpickler reads bad framing in ways of its own).
    frame_end = _NO_FRAME  # where the current frame ends, in the stream
    last_frame_end = 0
    lim = -1  # past min(end, frame end) in the buffer: check the frame, the data's end

    while True:
        if end - pos < 16:
            buf, pos, end, consumed, lim = _refill(fh, buf, pos, 16, consumed, strict=False)
            if pos >= end:
                raise Unusual("pickle data was truncated (no STOP)")
        op = buf[pos]
        # The elements' opcodes first: they are nearly all of the file.
        if op == 0x8C:  # SHORT_BINUNICODE
            n = buf[pos + 1]
            if pos + 2 + n > end:
                buf, pos, end, consumed, lim = _refill(fh, buf, pos, 2 + n, consumed)
            raw = buf[pos + 2 : pos + 2 + n]
            pos += 2 + n
            try:
                stack.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                stack.append(_decode_str(raw))
        elif op == 0x94 or op == 0x71 or op == 0x72:  # MEMOIZE, BINPUT, LONG_BINPUT
            if op == 0x94:
                i = next_memo
                pos += 1
            elif op == 0x71:
                i = buf[pos + 1]
                pos += 2
            else:
                i = unpack_from("<I", buf, pos + 1)[0]
                pos += 5
            # Picklers number their memo entries 0, 1, 2...; anything else is not numpy's.
            if i != next_memo or not stack:
                if i > next_memo + _MEMO_GAP_MAX:  # the C unpickler sizes its memo table by i
                    raise Refused(f"memo index {i} far out of order")
                raise Unusual("memo entries out of order")
            next_memo += 1
            v = stack[-1]
            if type(v) is str or type(v) is bytes or v is _NOT_UTF8:
                if i in wanted or (strings_kept < _MEMO_CAP and (v is _NOT_UTF8 or len(v) <= _MEMO_STR_MAX)):
                    memo[i] = v
                    strings_kept += 1
            elif others_kept < _MEMO_CAP:
                memo[i] = v
                others_kept += 1
            else:
                raise Unusual("too many memo entries")
        elif op == 0x58 or op == 0x8D:  # BINUNICODE, BINUNICODE8
            hl = 5 if op == 0x58 else 9
            if end - pos < hl:
                buf, pos, end, consumed, lim = _refill(fh, buf, pos, hl, consumed)
            n = unpack_from("<I" if op == 0x58 else "<Q", buf, pos + 1)[0]
            if pos + hl + n > end:
                buf, pos, end, consumed, lim = _refill(fh, buf, pos, hl + n, consumed)
            raw = buf[pos + hl : pos + hl + n]
            pos += hl + n
            try:
                stack.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                stack.append(_decode_str(raw))
        elif op == 0x65 or op == 0x61:  # APPENDS, APPEND
            if op == 0x65:
                if not metastack:
                    raise Unusual("APPENDS without MARK")
                items, stack = stack, metastack.pop()
            else:
                if not stack:
                    raise Unusual("APPEND on an empty stack")
                items = [stack.pop()]
            pos += 1
            if not stack or stack[-1] is not elements or elements is None or elements.built:
                raise Unusual("appending to something other than the array's list")
            if items:
                yield _elements(items, elements)
        elif op == 0x28:  # MARK
            metastack.append(stack)
            stack = []
            pos += 1
        elif op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
            if op == 0x68:
                i = buf[pos + 1]
                pos += 2
            else:
                i = unpack_from("<I", buf, pos + 1)[0]
                pos += 5
            v = memo.get(i, _MISSING)
            if v is _MISSING:
                # Only strings go unkept (see above): this repeats an earlier element.
                if keep is not None or i >= next_memo:
                    raise Unusual(f"GET {i} of an entry not kept")
                referenced.add(i)
                if len(referenced) > _KEEP_CAP:
                    raise Unusual("too many strings repeated by reference")
                v = _REF
            stack.append(v)
        elif op == 0x95:  # FRAME: its bytes follow inline
            if frame_end != _NO_FRAME:
                raise Unusual("a FRAME before the end of the current one")
            n = unpack_from("<Q", buf, pos + 1)[0]
            pos += 9
            frame_end = last_frame_end = consumed + pos + n
            lim = -1
        elif op == 0x43 or op == 0x42 or op == 0x8E:  # SHORT_BINBYTES, BINBYTES, BINBYTES8
            if op == 0x43:
                hl, n = 2, buf[pos + 1]
            elif op == 0x42:
                hl, n = 5, unpack_from("<I", buf, pos + 1)[0]
            else:
                hl, n = 9, unpack_from("<Q", buf, pos + 1)[0]
            if pos + hl + n > end:
                buf, pos, end, consumed, lim = _refill(fh, buf, pos, hl + n, consumed)
            stack.append(buf[pos + hl : pos + hl + n])
            pos += hl + n
        elif op == 0x5D:  # EMPTY_LIST: numpy's pickle has exactly one, the elements
            if elements is not None:
                raise Unusual("a second list")
            elements = _Elements()
            stack.append(elements)
            pos += 1
        elif op == 0x4B:  # BININT1
            stack.append(buf[pos + 1])
            pos += 2
        elif op == 0x4D:  # BININT2
            stack.append(unpack_from("<H", buf, pos + 1)[0])
            pos += 3
        elif op == 0x4A:  # BININT
            stack.append(unpack_from("<i", buf, pos + 1)[0])
            pos += 5
        elif op == 0x8A:  # LONG1
            n = buf[pos + 1]
            if n > 8:
                raise Unusual("LONG1 too long for a shape")
            stack.append(int.from_bytes(buf[pos + 2 : pos + 2 + n], "little", signed=True))
            pos += 2 + n
        elif op == 0x4E:  # NONE
            stack.append(None)
            pos += 1
        elif op == 0x88 or op == 0x89:  # NEWTRUE, NEWFALSE
            stack.append(op == 0x88)
            pos += 1
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
            pos += 1
        elif op == 0x85 or op == 0x86 or op == 0x87:  # TUPLE1, TUPLE2, TUPLE3
            k = op - 0x84
            if len(stack) < k:
                raise Unusual("TUPLE past the stack")
            t = tuple(stack[-k:])
            del stack[-k:]
            stack.append(t)
            pos += 1
        elif op == 0x74:  # TUPLE
            if not metastack:
                raise Unusual("TUPLE without MARK")
            t = tuple(stack)
            stack = metastack.pop()
            stack.append(t)
            pos += 1
        elif op == 0x63:  # GLOBAL: "module\nname\n"
            if end - pos < 512:
                buf, pos, end, consumed, lim = _refill(fh, buf, pos, 512, consumed, strict=False)
            nl1 = buf.find(b"\n", pos + 1, end)
            nl2 = buf.find(b"\n", nl1 + 1, end) if nl1 >= 0 else -1
            if nl2 < 0:
                raise Unusual("GLOBAL too long")
            key = (
                buf[pos + 1 : nl1].decode("utf-8", "replace"),
                buf[nl1 + 1 : nl2].decode("utf-8", "replace"),
            )
            if key not in _ALLOWED_GLOBALS:
                raise Unusual(f"global {key}")
            stack.append(_Global(key))
            pos = nl2 + 1
        elif op == 0x93:  # STACK_GLOBAL
            if len(stack) < 2 or type(stack[-1]) is not str or type(stack[-2]) is not str:
                raise Unusual("STACK_GLOBAL without two strings")
            key = (stack[-2], stack[-1])
            if key not in _ALLOWED_GLOBALS:
                raise Unusual(f"global {key}")
            del stack[-2:]
            stack.append(_Global(key))
            pos += 1
        elif op == 0x52:  # REDUCE: recorded, never called
            if len(stack) < 2 or type(stack[-2]) is not _Global or type(stack[-1]) is not tuple:
                raise Unusual("REDUCE of something other than an allowed global")
            if stack[-2].key[1] not in ("_reconstruct", "dtype"):
                raise Unusual("REDUCE of ndarray")
            args = stack.pop()
            stack[-1] = _Reduced(stack[-1], args)
            pos += 1
        elif op == 0x62:  # BUILD: likewise only recorded
            if len(stack) < 2 or type(stack[-2]) is not _Reduced or stack[-2].state is not None:
                raise Unusual("BUILD of something other than the array or its dtype")
            state = stack.pop()
            if type(state) is tuple and state and type(state[-1]) is _Elements:
                state[-1].built = True
            stack[-1].state = state
            pos += 1
        elif op == 0x80:  # PROTO
            if buf[pos + 1] > _HIGHEST_PROTOCOL:
                raise Unusual("unsupported pickle protocol")
            pos += 2
        elif op == 0x2E:  # STOP
            pos += 1
            break
        else:
            raise Unusual(f"opcode {bytes([op])!r}")
        if pos >= lim:
            if pos > end:  # an opcode's fixed-size argument ran past the data
                raise Unusual("pickle data was truncated")
            if frame_end != _NO_FRAME:
                if consumed + pos > frame_end:
                    raise Unusual("an opcode runs past the end of its frame")
                if consumed + pos == frame_end:
                    frame_end = _NO_FRAME
            lim = min(end, frame_end - consumed)

    if len(stack) != 1 or metastack:
        raise Unusual("stack not a single value at STOP")
    n = _check_array(stack[0])
    total = consumed + end
    while True:  # read to the end: the zip checks the member's CRC there
        more = fh.read(_CHUNK)
        if not more:
            break
        total += len(more)
    if last_frame_end > total:
        raise Unusual("a FRAME runs past the data")
    return n, frozenset(referenced)
