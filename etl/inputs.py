"""Opening and validating the two input files.

The NPZ's object arrays are pickles.  They are loaded with a restricted unpickler
that can only rebuild a numpy array of plain strings, so a planted payload cannot
run code.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_H5 = ("z_idx", "z_val", "rev_idx")
REQUIRED_NPZ = ("review_ids", "texts", "stars", "useful", "user_ids", "business_ids")
STRING_ARRAYS = ("review_ids", "texts", "user_ids", "business_ids")
INT_ARRAYS = ("stars", "useful")


class InputError(Exception):
    """An input file is missing, malformed or inconsistent (one-line message)."""


# The only globals an object array of str needs when numpy pickles it.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOfStringsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy_member(zf: zipfile.ZipFile, member: str, npz: Path, key: str) -> np.ndarray:
    with zf.open(member) as fh:
        data = io.BytesIO(fh.read())
    try:
        version = np.lib.format.read_magic(data)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(data)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(data)
    except ValueError as exc:
        raise InputError(f"{npz}: array {key!r} is not a valid .npy member ({exc})") from None
    if dtype.hasobject:
        try:
            arr = _ArrayOfStringsUnpickler(data).load()
        except Exception as exc:
            raise InputError(f"{npz}: array {key!r} holds an unsafe or broken pickle ({exc})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != object:
            raise InputError(f"{npz}: array {key!r} is not an object array")
        for item in arr.flat:
            if not isinstance(item, (str, bytes)):
                raise InputError(f"{npz}: array {key!r} holds a {type(item).__name__}, expected strings")
        return arr
    data.seek(0)
    try:
        return np.load(data, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{npz}: array {key!r} cannot be read ({exc})") from None


def load_npz(npz: Path) -> dict[str, np.ndarray]:
    """Load the metadata NPZ safely and check it is complete and consistent."""
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
        out = {k: _read_npy_member(zf, members[k], npz, k) for k in REQUIRED_NPZ}
    n = len(out["review_ids"])
    for key, arr in out.items():
        if arr.ndim != 1:
            raise InputError(f"{npz}: array {key!r} must be 1-D, has shape {arr.shape}")
        if len(arr) != n:
            raise InputError(f"{npz}: array {key!r} has {len(arr)} entries but review_ids has {n}")
    for key in STRING_ARRAYS:
        out[key] = np.array([_as_str(x) for x in out[key]], dtype=object)
    for key in INT_ARRAYS:
        if not np.issubdtype(out[key].dtype, np.integer):
            raise InputError(f"{npz}: array {key!r} must be integers, has {out[key].dtype}")
        out[key] = out[key].astype(np.int64)
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


@dataclass(frozen=True)
class H5Shape:
    n_tokens: int
    k: int
    has_unique_ids: bool


def open_h5(h5: Path):
    """Open the activations HDF5 file and check its datasets agree in shape and type."""
    import h5py

    h5 = Path(h5)
    if not h5.is_file():
        raise InputError(f"{h5}: file not found")
    try:
        f = h5py.File(h5, "r")
    except OSError as exc:
        raise InputError(f"{h5}: not a readable HDF5 file ({exc})") from None
    try:
        missing = [k for k in REQUIRED_H5 if k not in f]
        if missing:
            raise InputError(f"{h5}: missing required dataset(s) {', '.join(missing)}")
        z_idx, z_val, rev = f["z_idx"], f["z_val"], f["rev_idx"]
        if z_idx.ndim != 2:
            raise InputError(f"{h5}: dataset z_idx must be 2-D, has shape {z_idx.shape}")
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
    except InputError:
        f.close()
        raise
    return f


def decode_ids(raw: np.ndarray) -> np.ndarray:
    """Review ids from fixed-length bytes or variable-length strings, as an object array."""
    if raw.dtype.kind == "S":
        return np.char.decode(raw, "utf-8").astype(object)
    if raw.dtype.kind == "U":
        return raw.astype(object)
    return np.array([_as_str(x) for x in raw], dtype=object)


def validate_chunk(h5: Path, s: int, idx: np.ndarray, val: np.ndarray, n_latents: int) -> None:
    bad = (idx < 0) | (idx >= n_latents)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(
            f"{h5}: z_idx[{s + r}, {c}] = {idx[r, c]} is outside [0, {n_latents}) "
            "(pass --latents N if the SAE is wider)"
        )
    bad = ~np.isfinite(val) | (val < 0)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{h5}: z_val[{s + r}, {c}] = {val[r, c]} is not a finite non-negative activation")
