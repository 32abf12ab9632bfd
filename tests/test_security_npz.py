"""Hostile NPZ files: object arrays are pickles, and a pickle can run code.

Each payload below would create a marker file when unpickled.  The test first proves
the payload is live (`np.load(..., allow_pickle=True)` in a throw-away process creates
the marker), then shows that `saewh build` refuses the file with one clean error line
and the marker never appears.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from inputs import write_inputs
from reliability import N_LATENTS, assert_clean_error, assert_no_partial, saewh, saewh_subprocess

from etl.inputs import InputError, load_npz


class _Payload:
    """Unpickles as `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker) -> dict:
    m = str(marker)
    return {
        "os.system": _Payload(os.system, f"touch {m}"),
        "builtins.exec": _Payload(builtins.exec, f"open({m!r}, 'w').write('pwned')"),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", m]),
        "builtins.eval": _Payload(builtins.eval, f"__import__('pathlib').Path({m!r}).touch()"),
    }


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz_with_member(base_npz, out, key: str, member: bytes):
    """A copy of the base NPZ whose `key`.npy member is replaced by raw bytes."""
    with zipfile.ZipFile(base_npz) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, member if name == f"{key}.npy" else src.read(name))
    return out


def _raw_protocol0_payload(marker) -> bytes:
    """A hand-written pickle (no numpy involved) after a valid object-array header."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (12,)})
    return header.getvalue() + f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("sec"), n_reviews=12, n_latents=N_LATENTS, k=8, seed=2)


def _hostile_files(base, tmp_path, marker):
    texts = np.load(base[1], allow_pickle=True)["texts"]
    files = {}
    for name, payload in _payloads(marker).items():
        arr = texts.copy()
        arr[7] = payload  # one poisoned element among genuine strings
        files[name] = _npz_with_member(base[1], tmp_path / f"{name}.npz", "texts", _npy_bytes(arr))
    files["raw-protocol-0"] = _npz_with_member(
        base[1], tmp_path / "raw.npz", "review_ids", _raw_protocol0_payload(marker)
    )
    return files


def test_payloads_are_live(base, tmp_path):
    """Sanity: a naive loader really would run each payload (in a separate process)."""
    marker = tmp_path / "naive-marker"
    for name, path in _hostile_files(base, tmp_path, marker).items():
        code = (
            "import numpy as np, sys\n"
            "z = np.load(sys.argv[1], allow_pickle=True)\n"
            "[z[k] for k in z.files]\n"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
        for _ in range(50):  # Popen's child may lag a little
            if marker.exists():
                break
            import time

            time.sleep(0.05)
        assert marker.exists(), f"payload {name} did not run under a naive loader"
        marker.unlink()


def test_payloads_never_run(base, tmp_path):
    marker = tmp_path / "marker"
    for name, path in _hostile_files(base, tmp_path, marker).items():
        with pytest.raises(InputError, match="unsafe or broken pickle|refusing"):
            load_npz(path)
        target = tmp_path / f"wh-{name}"
        result = saewh("build", "--h5", base[0], "--npz", path, "-w", target, "--latents", N_LATENTS)
        line = assert_clean_error(result, 3, path.name, "refusing to load")
        assert "unsafe" in line
        assert_no_partial(target)
        assert not marker.exists(), f"payload {name} ran"


def test_payload_refused_by_the_cli_process(base, tmp_path):
    """The same through a real `saewh` process."""
    marker = tmp_path / "marker"
    path = _hostile_files(base, tmp_path, marker)["os.system"]
    target = tmp_path / "wh"
    result = saewh_subprocess("build", "--h5", base[0], "--npz", path, "-w", target, "--latents", N_LATENTS)
    assert_clean_error(result, 3, "os.system.npz", "'texts'", "refusing to load")
    assert not marker.exists()
    assert_no_partial(target)


@pytest.mark.parametrize(
    "element, kind",
    [(17, "int"), ({"a": 1}, "dict"), (["x"], "list"), (np.arange(3), "ndarray"), (None, "NoneType")],
)
def test_object_array_holding_a_non_string(base, tmp_path, element, kind):
    texts = np.load(base[1], allow_pickle=True)["texts"]
    arr = texts.copy()
    arr[3] = element
    path = _npz_with_member(base[1], tmp_path / "odd.npz", "texts", _npy_bytes(arr))
    target = tmp_path / "wh"
    result = saewh("build", "--h5", base[0], "--npz", path, "-w", target, "--latents", N_LATENTS)
    assert_clean_error(result, 3, "odd.npz", "'texts'")
    assert kind in result.stderr or "refusing" in result.stderr
    assert_no_partial(target)


def test_pickle_that_is_not_an_array(base, tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (12,)})
    member = header.getvalue() + pickle.dumps(["a plain list", "of strings"], protocol=3)
    path = _npz_with_member(base[1], tmp_path / "list.npz", "user_ids", member)
    with pytest.raises(InputError, match="not an object array"):
        load_npz(path)


def test_genuine_object_arrays_still_load(base):
    meta = load_npz(base[1])
    assert len(meta["texts"]) == 12 and all(isinstance(t, str) for t in meta["texts"])
    assert not meta["texts"].in_memory  # streamed, never unpickled


@pytest.mark.parametrize("shape", [20, 5])
def test_object_array_shape_not_matching_its_list(base, tmp_path, shape):
    """numpy takes an object array's element list whatever its length: with a shape
    larger than the list, the rest of the array would be uninitialized pointers (a crash
    when read).  The restricted unpickler checks the length before numpy sees it."""
    texts = np.load(base[1], allow_pickle=True)["texts"]
    member = _npy_bytes(texts)
    at = member.index(b"K\x01K\x0c\x85")  # the state's shape (12,)
    member = member[:at] + b"K\x01K" + bytes([shape]) + member[at + 4 :]
    path = _npz_with_member(base[1], tmp_path / "shape.npz", "texts", member)
    with pytest.raises(InputError, match=rf"unsafe or broken pickle \(object array of shape \({shape},\)"):
        load_npz(path)
