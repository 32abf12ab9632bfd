"""Opening and validating the two input files.

The NPZ's object arrays are pickles.  They are loaded with a restricted unpickler
that can only rebuild a numpy array of plain strings, so a planted payload cannot
run code.  The texts, nearly all of the NPZ, are not loaded at all: their pickle is
checked by walking its opcodes (`etl.pickled_strings`, which runs no pickle code) and
read again a batch at a time when the build needs them (`NpzStrings`).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etl.pickled_strings import Refused, Unusual, scan_string_array
from warehouse.errors import InputError

REQUIRED_H5 = ("z_idx", "z_val", "rev_idx")
REQUIRED_NPZ = ("review_ids", "texts", "stars", "useful", "user_ids", "business_ids")
STRING_ARRAYS = ("review_ids", "texts", "user_ids", "business_ids")
INT_ARRAYS = ("stars", "useful")


_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError)

# The only globals an object array of str needs when numpy pickles it.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ndarray(np.ndarray):  # noqa: N801 - so an element's type reads "ndarray" in errors
    """What the unpickler rebuilds arrays as: numpy's __setstate__, checked first.

    numpy takes an object array's element list without checking its length against
    the shape: a shorter list leaves the rest of the array uninitialized pointers,
    which crash (or worse) the moment they are read.
    """

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("array state is not a 4- or 5-tuple")
        shape, dtype, _, data = state[-4:]
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of sizes")
        if isinstance(dtype, np.dtype) and dtype.hasobject:
            size = int(np.prod(shape, dtype=object))
            if not isinstance(data, list) or len(data) != size:
                raise pickle.UnpicklingError(f"object array of shape {shape} does not hold {size} elements")
        super().__setstate__(state)


def _checked_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild an array as {subtype!r}")
    return np.ndarray.__new__(ndarray, shape, dtype)


class _ArrayOfStringsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            if name == "_reconstruct":
                return _checked_reconstruct
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy_member(zf: zipfile.ZipFile, member: str, npz: Path, key: str) -> np.ndarray:
    try:
        with zf.open(member) as fh:
            data = io.BytesIO(fh.read())
    except _ZIP_READ_ERRORS as exc:
        raise InputError(f"{npz}: array {key!r} cannot be read from the zip ({exc})") from None
    try:
        shape, fortran, dtype = _npy_header(data)
    except ValueError as exc:
        raise InputError(f"{npz}: array {key!r} is not a valid .npy member ({exc})") from None
    if dtype.hasobject:
        try:
            arr = _ArrayOfStringsUnpickler(data).load()
        except Exception as exc:
            raise InputError(f"{npz}: array {key!r} holds an unsafe or broken pickle ({exc})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != object:
            raise InputError(f"{npz}: array {key!r} is not an object array")
        arr = arr.view(np.ndarray)
        for item in arr.flat:
            if not isinstance(item, (str, bytes)):
                raise InputError(f"{npz}: array {key!r} holds a {type(item).__name__}, expected strings")
        return arr
    data.seek(0)
    try:
        return np.load(data, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{npz}: array {key!r} cannot be read ({exc})") from None


class NpzStrings:
    """A 1-D array of strings from an NPZ member, validated but not held in memory.

    `batches` reads the member again from the file, so memory stays bounded by a
    batch whatever the number of strings.  An array the streaming reader does not
    take (see `etl.pickled_strings`: another dtype, long strings repeated by reference
    in an unusual way...) is held instead, as loaded the old way: correct, not bounded.
    """

    ndim = 1

    def __init__(
        self,
        npz: Path,
        member: str,
        key: str,
        n: int,
        array: np.ndarray | None = None,
        repeated: frozenset[int] = frozenset(),
    ):
        self._npz, self._member, self._key, self._n = npz, member, key, n
        self._array, self._repeated = array, repeated
        # Read again later, perhaps from another working directory, and only if unchanged.
        self._file = Path(npz).absolute()
        self._identity = None if array is not None else _identity(self._file)
        self.bad_position: int | None = None  # the first element that is not UTF-8

    @classmethod
    def held(cls, array: np.ndarray, npz: Path, key: str) -> NpzStrings:
        return cls(npz, "", key, len(array), array)

    @property
    def in_memory(self) -> bool:
        """Whether the strings are held (a pickle the streaming reader did not take)."""
        return self._array is not None

    @property
    def shape(self) -> tuple[int]:
        return (self._n,)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = 1 << 16) -> Iterator[list[str]]:
        """The strings in order, `size` at a time (the last batch may be shorter)."""
        if self._array is not None:
            for s in range(0, self._n, size):
                yield self._array[s : s + size].tolist()
            return
        changed = InputError(f"{self._npz}: array {self._key!r} changed while the build read it")
        batch: list[str] = []
        try:
            with zipfile.ZipFile(self._file) as zf, zf.open(self._member) as fh:
                if _identity(self._file) != self._identity or not _skip_object_header(fh):
                    raise changed
                scan = scan_string_array(fh, keep=self._repeated)
                try:
                    while True:
                        for text in next(scan):
                            if text is None:
                                raise changed
                            batch.append(text)
                        if len(batch) >= size:
                            yield batch[:size]
                            del batch[:size]
                except StopIteration as stop:
                    if stop.value[0] != self._n:
                        raise changed from None
        except Unusual:
            raise changed from None
        except _ZIP_READ_ERRORS as exc:
            raise InputError(
                f"{self._npz}: array {self._key!r} cannot be read from the zip ({exc})"
            ) from None
        while batch:
            yield batch[:size]
            del batch[:size]


def _identity(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _npy_header(fh) -> tuple:
    """(shape, fortran order, dtype) of a .npy stream, read past its header."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def _skip_object_header(fh) -> bool:
    """Read past the .npy header; whether it announces an object array."""
    try:
        _, _, dtype = _npy_header(fh)
    except ValueError:
        return False
    return dtype == np.dtype(object)


def _read_strings_member(zf: zipfile.ZipFile, member: str, npz: Path, key: str) -> NpzStrings | np.ndarray:
    """Validate a pickled array of strings in one streaming pass, holding none of it.

    Anything the streaming reader does not take is read the old way, whole, which
    raises the same errors as before (or loads an unusual but valid pickle).
    """
    seen, first_bad = 0, None
    try:
        with zf.open(member) as fh:
            if not _skip_object_header(fh):
                raise Unusual("not an object array")
            scan = scan_string_array(fh)
            try:
                while True:
                    batch = next(scan)
                    if first_bad is None and None in batch:
                        first_bad = seen + batch.index(None)
                    seen += len(batch)
            except StopIteration as stop:
                n, repeated = stop.value
    except Refused as exc:
        raise InputError(f"{npz}: array {key!r} holds an unsafe or broken pickle ({exc})") from None
    except (Unusual, *_ZIP_READ_ERRORS):
        return _read_npy_member(zf, member, npz, key)
    texts = NpzStrings(npz, member, key, n, repeated=repeated)
    texts.bad_position = first_bad
    return texts


def load_npz(npz: Path) -> dict[str, np.ndarray | NpzStrings]:
    """Load the metadata NPZ safely and check it is complete and consistent.

    Every array is a numpy array except "texts", an `NpzStrings` read in batches.
    """
    npz = Path(npz)
    if not npz.is_file():
        raise InputError(f"{npz}: file not found")
    try:
        zf = zipfile.ZipFile(npz)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{npz}: not an NPZ (zip) file ({exc})") from None
    with zf:
        members = {Path(n).stem: n for n in zf.namelist() if n.endswith(".npy")}
        missing = [k for k in REQUIRED_NPZ if k not in members]
        if missing:
            raise InputError(f"{npz}: missing required array(s) {', '.join(missing)}")
        out = {
            k: (_read_strings_member if k == "texts" else _read_npy_member)(zf, members[k], npz, k)
            for k in REQUIRED_NPZ
        }
    n = len(out["review_ids"])
    for key, arr in out.items():
        if arr.ndim != 1:
            raise InputError(f"{npz}: array {key!r} must be 1-D, has shape {arr.shape}")
        if len(arr) != n:
            raise InputError(f"{npz}: array {key!r} has {len(arr)} entries but review_ids has {n}")
    for key in STRING_ARRAYS:
        if isinstance(out[key], NpzStrings):
            if out[key].bad_position is not None:
                raise InputError(f"{npz}: {key}[{out[key].bad_position}] is not valid UTF-8")
        else:
            out[key] = _strings(out[key], npz, key)
    if not isinstance(out["texts"], NpzStrings):
        out["texts"] = NpzStrings.held(out["texts"], npz, "texts")
    for key in INT_ARRAYS:
        out[key] = _int32s(out[key], npz, key)
    ids = out["review_ids"]
    if len(set(ids.tolist())) != n:
        seen: set[str] = set()
        for pos, rid in enumerate(ids.tolist()):
            if rid in seen:
                raise InputError(f"{npz}: duplicate review id {rid!r} at index {pos}")
            seen.add(rid)
    return out


def _as_str(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _strings(arr: np.ndarray, npz: Path, key: str) -> np.ndarray:
    if arr.dtype.kind not in "USO":
        raise InputError(f"{npz}: array {key!r} must hold strings, has {arr.dtype}")
    out = np.empty(len(arr), dtype=object)
    for pos, x in enumerate(arr.tolist()):
        try:
            out[pos] = _as_str(x)
            # A str can hold lone surrogates ('U' arrays, pickles), which no UTF-8
            # table (Parquet, Arrow, DuckDB) can store.
            out[pos].encode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise InputError(f"{npz}: {key}[{pos}] is not valid UTF-8") from None
    return out


def _int32s(arr: np.ndarray, npz: Path, key: str) -> np.ndarray:
    """Integers (or floats holding whole numbers) that fit the warehouse's INTEGER column."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InputError(f"{npz}: {key}[{pos}] = {arr[pos]} is not an integer")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{npz}: array {key!r} must be integers, has {arr.dtype}")
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InputError(f"{npz}: {key}[{pos}] = {arr[pos]} does not fit a 32-bit integer")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class H5Shape:
    n_tokens: int
    k: int
    has_unique_ids: bool


# What h5py raises when a file's bytes are damaged (it has no exception hierarchy).
_H5_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError)


def _is_string_dtype(dt: np.dtype) -> bool:
    import h5py

    return dt.kind in "SU" or h5py.check_string_dtype(dt) is not None


def open_h5(h5: Path):
    """Open the activations HDF5 file and check its datasets agree in shape and type."""
    import h5py

    h5 = Path(h5)
    if not h5.is_file():
        raise InputError(f"{h5}: file not found")
    try:
        f = h5py.File(h5, "r")
    except _H5_READ_ERRORS as exc:
        raise InputError(f"{h5}: not a readable HDF5 file ({_first_line(exc)})") from None
    try:
        _check_h5_structure(h5, f)
    except InputError:
        f.close()
        raise
    except _H5_READ_ERRORS as exc:
        f.close()
        raise InputError(
            f"{h5}: damaged HDF5 file, its datasets cannot be read ({_first_line(exc)})"
        ) from None
    return f


def _check_h5_structure(h5: Path, f) -> None:
    missing = [k for k in REQUIRED_H5 if k not in f]
    if missing:
        raise InputError(f"{h5}: missing required dataset(s) {', '.join(missing)}")
    for name in (*REQUIRED_H5, "review_ids_unique"):
        if name in f and not hasattr(f[name], "shape"):
            raise InputError(f"{h5}: {name} is a group, expected a dataset")
    z_idx, z_val, rev = f["z_idx"], f["z_val"], f["rev_idx"]
    if z_idx.ndim != 2:
        raise InputError(f"{h5}: dataset z_idx must be 2-D, has shape {z_idx.shape}")
    if z_idx.shape[0] < 1 or z_idx.shape[1] < 1:
        raise InputError(f"{h5}: dataset z_idx has shape {z_idx.shape}: no tokens or no feature slots")
    if z_val.shape != z_idx.shape:
        raise InputError(f"{h5}: dataset z_val has shape {z_val.shape} but z_idx has {z_idx.shape}")
    if rev.shape != (z_idx.shape[0],):
        raise InputError(f"{h5}: dataset rev_idx has shape {rev.shape}, expected ({z_idx.shape[0]},)")
    if not np.issubdtype(z_idx.dtype, np.integer):
        raise InputError(f"{h5}: dataset z_idx must be integers, has {z_idx.dtype}")
    if not np.issubdtype(z_val.dtype, np.floating):
        raise InputError(f"{h5}: dataset z_val must be floats, has {z_val.dtype}")
    if z_val.dtype.itemsize > 8:
        raise InputError(f"{h5}: dataset z_val has unsupported dtype {z_val.dtype}")
    if not _is_string_dtype(rev.dtype):
        raise InputError(f"{h5}: dataset rev_idx must hold review id strings, has {rev.dtype}")
    if "review_ids_unique" in f:
        uniq = f["review_ids_unique"]
        if uniq.ndim != 1 or not _is_string_dtype(uniq.dtype):
            raise InputError(
                f"{h5}: dataset review_ids_unique must be a 1-D array of strings, "
                f"has shape {uniq.shape} and dtype {uniq.dtype}"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def decode_ids(raw: np.ndarray) -> np.ndarray:
    """Review ids from fixed-length bytes or variable-length strings, as an object array."""
    try:
        if raw.dtype.kind == "S":
            return np.char.decode(raw, "utf-8").astype(object)
        if raw.dtype.kind == "U":
            return raw.astype(object)
        return np.array([_as_str(x) for x in raw], dtype=object)
    except UnicodeDecodeError:
        # The caller knows no file or position: `scan_h5` finds the exact one.
        raise InputError("a review id is not valid UTF-8") from None


def _bad_id_position(raw: np.ndarray) -> int | None:
    for pos, x in enumerate(raw.tolist()):
        if isinstance(x, bytes):
            try:
                x.decode("utf-8")
            except UnicodeDecodeError:
                return pos
    return None


def validate_chunk(h5: Path, s: int, idx: np.ndarray, val: np.ndarray, n_latents: int | None) -> None:
    """Check the rows `s, s+1, ...` of z_idx/z_val; raise on the first bad row.

    Errors: a feature index outside [0, n_latents) (only its sign without n_latents),
    a value that is NaN, infinite or negative, a feature twice in one token's row.
    """
    if idx.size == 0:
        return
    out_of_range = idx < 0
    if n_latents is not None:
        out_of_range |= idx >= n_latents
    bad_value = ~np.isfinite(val) | (val < 0)
    rows_range, rows_value = out_of_range.any(axis=1), bad_value.any(axis=1)
    srt = np.sort(idx, axis=1)
    rows_dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
    bad_rows = rows_range | rows_value | rows_dup
    if not bad_rows.any():
        return
    r = int(np.argmax(bad_rows))
    row = s + r
    if rows_range[r]:
        c = int(np.argmax(out_of_range[r]))
        if n_latents is None:
            raise InputError(f"{h5}: z_idx[{row}, {c}] = {idx[r, c]} is negative", position=row)
        raise InputError(
            f"{h5}: z_idx[{row}, {c}] = {idx[r, c]} is outside [0, {n_latents}) "
            "(pass --latents N if the SAE is wider, or --infer-latents)",
            position=row,
        )
    if rows_value[r]:
        c = int(np.argmax(bad_value[r]))
        raise InputError(
            f"{h5}: z_val[{row}, {c}] = {val[r, c]} is not a finite non-negative activation",
            position=row,
        )
    feats = idx[r].tolist()
    c2 = next(i for i in range(1, len(feats)) if feats[i] in feats[:i])
    c1 = feats.index(feats[c2])
    raise InputError(
        f"{h5}: z_idx[{row}] holds feature {feats[c2]} twice (slots {c1} and {c2}); "
        "a token's top-k features must be distinct",
        position=row,
    )


def _read(h5: Path, ds, name: str, s: int, e: int) -> np.ndarray:
    try:
        return ds[s:e]
    except _H5_READ_ERRORS as exc:
        reason = _first_line(exc)
    # Narrow the damage down to the first unreadable storage chunk of the range.
    step = ds.chunks[0] if ds.chunks else max(1, (e - s) // 64)
    lo = s
    while lo < e:
        hi = min(e, (lo // step + 1) * step)
        try:
            ds[lo:hi]
        except _H5_READ_ERRORS as exc:
            s, e, reason = lo, hi, _first_line(exc)
            break
        lo = hi
    raise InputError(f"{h5}: cannot read {name}[{s}:{e}] ({reason})", position=s)


def scan_h5(h5: Path, n_latents: int | None, chunk: int, stop: int | None = None) -> int:
    """Read and check every row of the H5 up to `stop`; return max feature index + 1.

    One sequential pass, so the error it raises is the first bad position in the file:
    an unreadable (damaged) range of any dataset, a review id that is not UTF-8, or a
    bad z_idx/z_val row (see `validate_chunk`).  Used before the build to infer
    `n_latents`, and after a failed build to name the first bad position.
    """
    f = open_h5(h5)
    with f:
        z_idx, z_val, rev = f["z_idx"], f["z_val"], f["rev_idx"]
        n = z_idx.shape[0] if stop is None else min(stop, z_idx.shape[0])
        if "review_ids_unique" in f:
            uniq = f["review_ids_unique"]
            for s in range(0, uniq.shape[0], chunk):
                raw = _read(h5, uniq, "review_ids_unique", s, s + chunk)
                bad = _bad_id_position(raw)
                if bad is not None:
                    raise InputError(f"{h5}: review_ids_unique[{s + bad}] is not valid UTF-8")
        top = -1
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            raw = _read(h5, rev, "rev_idx", s, e)
            bad = _bad_id_position(raw)
            if bad is not None:
                raise InputError(f"{h5}: rev_idx[{s + bad}] is not valid UTF-8", position=s + bad)
            idx = _read(h5, z_idx, "z_idx", s, e)
            val = _read(h5, z_val, "z_val", s, e)
            validate_chunk(h5, s, idx, val, n_latents)
            if idx.size:
                top = max(top, int(idx.max()))
    return top + 1
