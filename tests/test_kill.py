"""Interrupted builds lose nothing: kill `saewh build --replace` at several points with
SIGINT, SIGTERM and SIGKILL, fill the disk, crash inside the swap, and check that the
previous warehouse is byte-for-byte intact (or, after the swap, the new one is there and
verifies), that no partial warehouse appears where there was none, and that the next
build cleans up whatever a killed one left behind.

Kill points are found by watching the staging directory (`.NAME.staging-PID`) for each
phase's first output, so the test needs no hook in the build; the input is sized so
each phase lasts long enough to be hit.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inputs import write_inputs
from reliability import (
    N_LATENTS,
    ROOT,
    assert_clean_error,
    assert_no_partial,
    error_lines,
    leftovers,
    saewh,
    saewh_subprocess,
    tree_hashes,
)

import etl.staging as staging_mod
from etl.build import build_warehouse
from etl.synth import synthesize
from warehouse.db import connect, verify_warehouse

pytestmark = pytest.mark.slow

CHUNK = 4096


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    big = synthesize(base / "big", n_reviews=500, n_latents=8192, seed=3)
    small_h5, small_npz = write_inputs(base / "small", n_reviews=12, n_latents=N_LATENTS, k=8, seed=5)
    previous = base / "previous"
    build_warehouse(small_h5, small_npz, previous, n_latents=N_LATENTS)
    connect(previous).close()
    return {"big": (big.h5_path, big.npz_path), "small": (small_h5, small_npz), "previous": previous}


def fresh_previous(inputs, tmp_path) -> tuple[Path, dict]:
    """A copy of the previous warehouse at tmp_path/wh, already re-pointed there."""
    target = tmp_path / "wh"
    shutil.copytree(inputs["previous"], target)
    connect(target).close()
    return target, tree_hashes(target)


def _stage(target: Path, pid: int) -> Path:
    return target.parent / f".{target.name}.staging-{pid}"


MARKERS = {
    # validated, lock taken: the staging directory is about to appear
    "early": lambda t, pid: (t.parent / f".{t.name}.lock").read_text().strip() == str(pid),
    "explode": lambda t, pid: any((_stage(t, pid) / "_work").glob("spill-*")),
    "merge": lambda t, pid: any((_stage(t, pid) / "activations").glob("bucket=*/*.parquet")),
    "finish": lambda t, pid: (_stage(t, pid) / "reviews.parquet").exists(),
}


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def start_build(h5, npz, target, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", "build", "--h5", str(h5),
           "--npz", str(npz), "-w", str(target), "--replace", "--chunk-tokens", str(CHUNK),
           "--latents", "8192", "--workers", str(workers)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_at(proc: subprocess.Popen, target: Path, point: str, sig: int) -> bool:
    """Send `sig` when the build reaches `point`; False if it finished first."""
    if point == "startup":
        time.sleep(0.3)
    else:
        deadline = time.monotonic() + 120
        while proc.poll() is None:
            try:
                if MARKERS[point](target, proc.pid):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"build never reached {point}")
            time.sleep(0.002)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, sig)
    return True


def check_after_kill(proc, target, before, sig, point, inputs):
    try:
        _out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # 1. The previous warehouse, byte for byte, or (if the kill came after the swap) the
    #    new one, complete and verified.
    if tree_hashes(target) != before:
        verify_warehouse(target, checksums=True)
        manifest = json.loads((target / "manifest.json").read_text())
        assert manifest["inputs"]["h5"]["path"] == str(Path(inputs["big"][0]).resolve())
    # 2. How it ended.
    if point != "startup":
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert "Traceback" not in err, err
            expected = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}[sig]
            assert (proc.returncode, error_lines(err)) == (expected[0], [f"saewh: error: {expected[1]}"]), err
    if sig != signal.SIGKILL:
        assert leftovers(target) == [], leftovers(target)  # the build cleaned up after itself
    # 3. Workers die with the build (PR_SET_PDEATHSIG), even after SIGKILL.
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_alive(proc.pid) == [], "orphaned worker processes"


CASES = [
    (sig, point)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
    for point in ("early", "explode", "merge", "finish")
] + [(signal.SIGKILL, "startup"), (signal.SIGTERM, "startup")]


@pytest.mark.parametrize("sig, point", CASES, ids=[f"{s.name}-{p}" for s, p in CASES])
def test_kill_replacing_build(inputs, tmp_path, sig, point):
    target, before = fresh_previous(inputs, tmp_path)
    workers = 2 if point in ("explode", "merge") else 1
    proc = start_build(*inputs["big"], target, workers)
    killed = kill_at(proc, target, point, sig)
    assert killed, f"the build finished before {point}: make the input bigger"
    check_after_kill(proc, target, before, sig, point, inputs)
    if sig == signal.SIGKILL:
        # The next build cleans up what the killed one left behind.
        result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                       "--latents", N_LATENTS, "--replace")
        assert result.exit_code == 0, result.stderr
        assert leftovers(target) == []
        verify_warehouse(target, checksums=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_kill_first_build_leaves_no_partial_warehouse(inputs, tmp_path, sig):
    target = tmp_path / "new"
    proc = start_build(*inputs["big"], target, workers=1)
    assert kill_at(proc, target, "merge", sig)
    proc.communicate(timeout=120)
    assert not target.exists()
    if sig != signal.SIGKILL:
        assert_no_partial(target)
    else:
        assert len(leftovers(target)) == 1  # the killed build's staging directory...
        result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                       "--latents", N_LATENTS)
        assert result.exit_code == 0, result.stderr
        assert leftovers(target) == []  # ...is gone after the next build


# --------------------------------------------------------------------------- disk full


def test_disk_full_simulated(inputs, tmp_path, monkeypatch):
    """ENOSPC while writing (in the parent, and in a forked worker): exit 7, the previous
    warehouse intact, no staging directory left."""
    import etl.build as build_mod

    target, before = fresh_previous(inputs, tmp_path)

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for name, workers in (("_write_reviews", 1), ("_write_tokens", 2)):
        with monkeypatch.context() as m:
            m.setattr(build_mod, name, full)
            result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                           "--latents", N_LATENTS, "--replace", "--workers", workers, "--chunk-tokens", 64)
        assert_clean_error(result, 7, "No space left on device", str(target))
        assert tree_hashes(target) == before
        assert leftovers(target) == []


def _tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_disk_full_on_a_real_small_filesystem(inputs, tmp_path):
    """A tmpfs that holds the previous warehouse but not a second one beside it."""
    mnt = tmp_path / "mnt"
    used = sum(p.stat().st_blocks * 512 for p in inputs["previous"].rglob("*") if p.is_file())
    if not _tmpfs(mnt, f"{used * 3 // 2 // 1024 + 256}k"):
        pytest.skip("needs root and tmpfs to mount a small filesystem")
    try:
        target = mnt / "wh"
        result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                       "--latents", N_LATENTS)
        assert result.exit_code == 0, result.stderr
        before = tree_hashes(target)
        big_h5, big_npz = inputs["big"]
        # In a subprocess: a sparse memmap on a full disk would be a SIGBUS, not an error.
        result = saewh_subprocess("build", "--h5", big_h5, "--npz", big_npz, "-w", target, "--replace")
        assert_clean_error(result, 7, "No space left on device")
        assert tree_hashes(target) == before
        assert leftovers(target) == []
        verify_warehouse(target, checksums=True)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- the swap itself


def _staged_copy(inputs, tmp_path, target) -> Path:
    """A complete warehouse at the staging name of this process, as a build leaves it."""
    staging = staging_mod.staging_dir_for(target)
    shutil.copytree(inputs["previous"], staging)
    (staging / "marker-new").write_text("new")
    return staging


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_swap(inputs, tmp_path, monkeypatch, exchange):
    target, before = fresh_previous(inputs, tmp_path)
    if not exchange:
        monkeypatch.setattr(staging_mod, "exchange", lambda a, b: False)
    else:
        probe_a, probe_b = tmp_path / "a", tmp_path / "b"
        probe_a.mkdir()
        probe_b.mkdir()
        if not staging_mod.exchange(probe_a, probe_b):
            pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    staging = _staged_copy(inputs, tmp_path, target)
    staging_mod.swap_into_place(staging, target)
    assert (target / "marker-new").exists()
    assert leftovers(target) == []


_CRASH_SCRIPT = """
import os, sys
from pathlib import Path
import etl.staging as s
staging, target, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if mode == "between-renames":
    s.exchange = lambda a, b: False
    real = os.rename
    calls = []
    def rename(a, b):
        real(a, b)
        calls.append(b)
        if len(calls) == 1:
            os._exit(9)  # power cut right after target -> .old
    os.rename = rename
elif mode == "after-exchange":
    def to_trash(path, target):
        os._exit(9)  # crash before the old warehouse is moved aside and deleted
    s._to_trash = to_trash
s.swap_into_place(staging, target)
"""


def _crash_swap(inputs, tmp_path, mode):
    target, before = fresh_previous(inputs, tmp_path)
    staging = target.parent / ".wh.staging-999999"
    shutil.copytree(inputs["previous"], staging)
    (staging / "marker-new").write_text("new")
    done = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(staging), str(target), mode],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    return target, before


def test_crash_between_the_two_renames(inputs, tmp_path):
    """Without RENAME_EXCHANGE: the target is briefly missing; the old one is put back
    by the next reader (connect) or build."""
    target, before = _crash_swap(inputs, tmp_path, "between-renames")
    assert not target.exists() and any(".old-" in n for n in leftovers(target))
    result = saewh("sql", "-w", target, "SELECT count(*) AS n FROM reviews", "--csv")
    assert result.exit_code == 0, result.stderr
    assert tree_hashes(target) == before
    # The staging copy of the crashed build is cleaned by the next build.
    result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                   "--latents", N_LATENTS, "--replace")
    assert result.exit_code == 0, result.stderr
    assert leftovers(target) == []


def test_crash_between_the_two_renames_then_build_without_replace(inputs, tmp_path):
    target, before = _crash_swap(inputs, tmp_path, "between-renames")
    result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                   "--latents", N_LATENTS)
    assert_clean_error(result, 4, "already exists")  # the old warehouse is back
    assert tree_hashes(target) == before


def test_crash_after_the_exchange(inputs, tmp_path):
    probe_a, probe_b = tmp_path / "a", tmp_path / "b"
    probe_a.mkdir()
    probe_b.mkdir()
    if not staging_mod.exchange(probe_a, probe_b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    target, _before = _crash_swap(inputs, tmp_path, "after-exchange")
    assert (target / "marker-new").exists()  # the new one is in place
    assert leftovers(target) == [".wh.staging-999999"]  # the old one, at the staging name
    result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                   "--latents", N_LATENTS, "--replace")
    assert result.exit_code == 0, result.stderr
    assert leftovers(target) == []


def test_concurrent_build_of_the_same_target_is_refused(inputs, tmp_path):
    target, before = fresh_previous(inputs, tmp_path)
    fd = staging_mod.acquire_build_lock(target)
    try:
        result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                       "--latents", N_LATENTS, "--replace")
        assert_clean_error(result, 4, "another build", str(os.getpid()))
    finally:
        staging_mod.release_lock(fd)
    assert tree_hashes(target) == before
