"""The NPZ texts are checked and read by walking their pickle's opcodes, not unpickled.

The streaming reader must give exactly what the restricted unpickler gave (strings, or
the same error), hold none of the texts, and hand anything unusual back to the old path.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import zipfile

import numpy as np
import pytest

from etl.inputs import InputError, NpzStrings, _read_npy_member, _read_strings_member, _strings, load_npz

N = 5000  # several pickle APPENDS batches (1000 elements each)


def _texts(n: int = N) -> list[str]:
    rng = random.Random(n)
    words = ["salsa", "good", "é", "日本", "🙂", "", "x" * 300, "line\nbreak", "tab\t"]
    return [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 40))) for _ in range(n)]


def _member(arr: np.ndarray, protocol: int | None = None, numpy1: bool = False) -> bytes:
    """The .npy bytes of an object array, pickled as np.save does or with `protocol`."""
    buf = io.BytesIO()
    if protocol is None:
        np.save(buf, arr, allow_pickle=True)
        data = buf.getvalue()
    else:
        np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
        data = buf.getvalue() + pickle.dumps(arr, protocol=protocol)
    if numpy1:  # numpy < 2 names its module numpy.core (same length framing aside)
        if protocol is not None and protocol >= 4:
            data = data.replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")
            # the FRAME holding it is one byte shorter now
            at = data.index(b"\x95")
            size = int.from_bytes(data[at + 1 : at + 9], "little")
            data = data[: at + 1] + (size - 1).to_bytes(8, "little") + data[at + 9 :]
        else:
            data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in data
    return data


def _npz(path, texts, member: bytes | None = None, compress: bool = False):
    """A complete metadata NPZ around `texts` (or raw .npy bytes for the texts member)."""
    n = len(texts)
    arrays = {
        "review_ids": np.array([f"r{i:021d}" for i in range(n)], dtype=object),
        "texts": np.array(texts, dtype=object) if not isinstance(texts, np.ndarray) else texts,
        "stars": np.full(n, 3, np.int64),
        "useful": np.zeros(n, np.int64),
        "user_ids": np.array([f"u{i}" for i in range(n)], dtype=object),
        "business_ids": np.array([f"b{i % 7}" for i in range(n)], dtype=object),
    }
    kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", kind) as zf:
        for key, arr in arrays.items():
            data = member if key == "texts" and member is not None else _member(arr)
            zf.writestr(f"{key}.npy", data)
    return path


def _loaded(path) -> list[str]:
    texts = load_npz(path)["texts"]
    assert isinstance(texts, NpzStrings)
    got = [t for batch in texts.batches(777) for t in batch]
    assert len(got) == len(texts)
    return got


@pytest.mark.parametrize("protocol", [None, 3, 4, 5])
@pytest.mark.parametrize("numpy1", [False, True])
def test_streams_every_numpy_and_protocol(tmp_path, protocol, numpy1):
    if numpy1 and protocol is None:
        protocol = 4 if np.__version__ >= "2" else 3
    texts = _texts()
    arr = np.array(texts, dtype=object)
    path = _npz(tmp_path / "t.npz", texts, _member(arr, protocol, numpy1), compress=True)
    meta = load_npz(path)
    assert not meta["texts"].in_memory
    assert _loaded(path) == texts


def test_protocol_2_is_still_refused(tmp_path):
    """numpy's protocol-2 pickle needs `_codecs.encode`, which the old loader refused too."""
    arr = np.array(_texts(20), dtype=object)
    path = _npz(tmp_path / "p2.npz", list(arr), _member(arr, 2))
    with pytest.raises(InputError, match="refusing to load _codecs.encode"):
        load_npz(path)


def test_repeated_string_objects(tmp_path):
    """The same str object twice pickles as a GET of the first: both passes agree."""
    s = "a long text repeated by reference " * 10
    texts = _texts(3000)
    texts[10] = texts[2500] = s  # one object, three positions
    texts[2999] = s
    texts[5], texts[6] = "", ""  # CPython's shared empty and one-character strings
    texts[7] = texts[8] = "é"
    path = _npz(tmp_path / "rep.npz", texts)
    assert _member(np.array(texts, dtype=object)).count(b"h") > 0
    meta = load_npz(path)
    assert not meta["texts"].in_memory
    assert _loaded(path) == texts
    small = np.array([s, s, "x"], dtype=object)
    assert _loaded(_npz(tmp_path / "small.npz", small)) == [s, s, "x"]


def test_bytes_elements(tmp_path):
    texts = np.array([b"plain", "str", "caf\u00e9".encode(), b""] * 300, dtype=object)
    assert _loaded(_npz(tmp_path / "b.npz", texts)) == ["plain", "str", "café", ""] * 300
    bad = texts.copy()
    bad[1001] = b"\xff\xfe"
    with pytest.raises(InputError, match=r"texts\[1001\] is not valid UTF-8"):
        load_npz(_npz(tmp_path / "bad.npz", bad))


def test_empty_array(tmp_path):
    path = _npz(tmp_path / "empty.npz", np.array([], dtype=object))
    texts = load_npz(path)["texts"]
    assert len(texts) == 0 and not texts.in_memory and list(texts.batches()) == []


def test_non_string_deep_in_a_large_array(tmp_path):
    texts = np.array(_texts(), dtype=object)
    texts[3210] = None
    with pytest.raises(InputError, match=r"'texts' holds a NoneType, expected strings"):
        load_npz(_npz(tmp_path / "none.npz", texts))
    texts[3210] = ("a", "tuple")
    with pytest.raises(InputError, match=r"'texts' holds a tuple, expected strings"):
        load_npz(_npz(tmp_path / "tuple.npz", texts))


def test_lone_surrogate_deep_in_a_large_array(tmp_path):
    texts = _texts()
    texts[4321] = "fine until \ud800 here"
    texts[4400] = "\udc00 again, later"
    with pytest.raises(InputError, match=r"texts\[4321\] is not valid UTF-8"):
        load_npz(_npz(tmp_path / "sur.npz", texts))


def test_payload_deep_in_a_large_array_never_runs(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    texts = np.array(_texts(), dtype=object)
    texts[4000] = Payload()
    with pytest.raises(InputError, match="refusing to load"):
        load_npz(_npz(tmp_path / "evil.npz", texts))
    assert not marker.exists()


def test_batches_read_the_file_again(tmp_path):
    """The texts are not held: a file replaced after loading is noticed, not half-used."""
    texts = _texts()
    path = _npz(tmp_path / "t.npz", texts)
    loaded = load_npz(path)["texts"]
    _npz(path, texts[:-1])
    with pytest.raises(InputError, match="changed while the build read it"):
        list(loaded.batches())


def _old_way(zf, npz) -> list[str] | str:
    try:
        arr = _read_npy_member(zf, "texts.npy", npz, "texts")
        if arr.ndim != 1:
            return "not 1-D"
        return _strings(arr, npz, "texts").tolist()
    except InputError as exc:
        return str(exc)


def _new_way(zf, npz) -> list[str] | str:
    try:
        got = _read_strings_member(zf, "texts.npy", npz, "texts")
        if not isinstance(got, NpzStrings):
            if got.ndim != 1:
                return "not 1-D"
            return _strings(got, npz, "texts").tolist()
        if got.bad_position is not None:
            return f"{npz}: texts[{got.bad_position}] is not valid UTF-8"
        return [t for batch in got.batches() for t in batch]
    except InputError as exc:
        return str(exc)


@pytest.mark.parametrize("protocol", [3, 4])
def test_damaged_pickles_agree_with_the_unpickler(tmp_path, protocol):
    """Bytes flipped, cut or inserted anywhere in the pickle: the streaming reader
    accepts exactly what the restricted unpickler accepts, with the same strings, and
    otherwise the same error."""
    texts = np.array([*_texts(1500)[:1490], "", "", "é", "é", b"by", "\ud800", "x" * 70, "y"] + [None] * 2,
                     dtype=object)
    texts[-2] = texts[-3]  # a long string by reference
    texts[-1] = texts[3]
    good = _member(texts, protocol)
    rng = random.Random(protocol)
    header = len(good) - len(pickle.dumps(texts, protocol=protocol))
    cuts = [header + i for i in range(0, 400)] + [rng.randrange(header, len(good)) for _ in range(300)]
    npz = tmp_path / "m.npz"
    for i, at in enumerate(cuts):
        data = bytearray(good)
        how = i % 3
        if how == 0:
            data[at] = rng.randrange(256)
        elif how == 1:
            data = data[:at]
        else:
            data[at:at] = bytes([rng.randrange(256)])
        with zipfile.ZipFile(npz, "w") as zf:
            zf.writestr("texts.npy", bytes(data))
        with zipfile.ZipFile(npz) as zf:
            new = _new_way(zf, npz)
            if "far out of order" in str(new):
                continue  # the unpickler itself would allocate gigabytes
            old = _old_way(zf, npz)
        if isinstance(old, str):  # object addresses differ from run to run
            new, old = (re.sub(r"0x[0-9a-f]+", "0x?", str(x)) for x in (new, old))
        assert new == old, (how, at)


def test_memo_index_that_would_exhaust_the_unpicklers_memory(tmp_path):
    """A LONG_BINPUT of index 2**31 makes the C unpickler allocate its memo table to
    that size (16 GB): refused before the unpickler sees it."""
    texts = np.array(_texts(50), dtype=object)
    member = _member(texts, 3)
    at = member.index(b"q\x0e")  # BINPUT 14, the first element's
    member = member[:at] + b"r" + (1 << 31).to_bytes(4, "little") + member[at + 2 :]
    with pytest.raises(InputError, match=r"unsafe or broken pickle \(memo index 2147483648 far out of order"):
        load_npz(_npz(tmp_path / "memo.npz", texts, member))
