"""Interrupted builds lose nothing: kill `saewh build --replace` at several points with
SIGINT, SIGTERM and SIGKILL, fill the disk, crash around the publishing rename, and
check that what readers reach of the previous warehouse is byte-for-byte intact (or,
after the publish, the new one is current and verifies), that no partial warehouse
appears where there was none, and that the next build removes whatever a killed one
left behind.

Kill points are found by watching the build's unpublished snapshot directory
(`WH/snapshots/<id>`) for each phase's first output, so the test needs no hook in the
build; the input is sized so each phase lasts long enough to be hit.
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
    published_hashes,
    saewh,
    saewh_subprocess,
    tree_hashes,
)

import etl.staging as staging_mod
from etl.build import build_warehouse
from etl.publish import republish_moved
from etl.synth import synthesize
from warehouse.verify import verify_warehouse

pytestmark = pytest.mark.slow

CHUNK = 4096


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    big = synthesize(base / "big", n_reviews=500, n_latents=8192, seed=3)
    small_h5, small_npz = write_inputs(base / "small", n_reviews=12, n_latents=N_LATENTS, k=8, seed=5)
    previous = base / "previous"
    build_warehouse(small_h5, small_npz, previous, n_latents=N_LATENTS)
    republish_moved(previous)
    return {"big": (big.h5_path, big.npz_path), "small": (small_h5, small_npz), "previous": previous}


def fresh_previous(inputs, tmp_path) -> tuple[Path, dict]:
    """A copy of the previous warehouse at tmp_path/wh, already re-published there."""
    target = tmp_path / "wh"
    shutil.copytree(inputs["previous"], target, symlinks=True)
    assert republish_moved(target)
    return target, tree_hashes(target)


def _stage(target: Path, pid: int) -> Path:
    """The build's unpublished snapshot (the only one `leftovers` names while it runs)."""
    names = leftovers(target)
    return target / "snapshots" / names[-1] if names else target / "nowhere"


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
    # 1. The previous warehouse, byte for byte, or (if the kill came after the publish)
    #    the new one, complete and verified.
    if published_hashes(target) != before:
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
        assert tree_hashes(target) in (before, published_hashes(target))
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
    if sig != signal.SIGKILL:
        assert_no_partial(target)
    else:
        assert len(leftovers(target)) == 1  # the killed build's snapshot, unpublished...
        assert_clean_error(saewh("sql", "-w", target, "SELECT 1"), 4, "not a warehouse")
        result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                       "--latents", N_LATENTS)  # (no --replace: nothing was published)
        assert result.exit_code == 0, result.stderr
        assert leftovers(target) == []  # ...is gone after the next build


# --------------------------------------------------------------------------- disk full


def test_disk_full_simulated(inputs, tmp_path, monkeypatch):
    """ENOSPC while writing (in the parent, and in a forked worker): exit 7, the previous
    warehouse intact, no staging directory left."""
    from etl.build import explode, finish

    target, before = fresh_previous(inputs, tmp_path)

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # (a forked explode worker looks write_tokens up in its copy of the patched module)
    for module, name, workers in ((finish, "write_reviews", 1), (explode, "write_tokens", 2)):
        with monkeypatch.context() as m:
            m.setattr(module, name, full)
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


# --------------------------------------------------------------------------- the publish itself

_CRASH_SCRIPT = """
import os, sys
from pathlib import Path
import etl.publish as p
target, snapshot, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real = os.replace
def replace(a, b):
    if Path(b).name == "current" and mode == "before-rename":
        os._exit(9)  # power cut with the snapshot written, synced, not yet current
    real(a, b)
    if Path(b).name == "current" and mode == "after-rename":
        os._exit(9)  # right after the publish, before the old snapshots are pruned
os.replace = replace
p.publish(target, snapshot)
"""


def _crash_publish(inputs, tmp_path, mode):
    target, before = fresh_previous(inputs, tmp_path)
    current = (target / "current").resolve()
    snapshot = target / "snapshots" / "29991231T235959Z-0000beef"  # a finished build's copy
    shutil.copytree(current, snapshot)
    (snapshot / "marker-new").write_text("new")
    done = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(target), str(snapshot), mode],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    return target, before


def test_crash_before_the_publishing_rename(inputs, tmp_path):
    """The old snapshot stays current; the unpublished one is removed by the next build."""
    target, before = _crash_publish(inputs, tmp_path, "before-rename")
    assert published_hashes(target) == before and leftovers(target) == ["29991231T235959Z-0000beef"]
    result = saewh("sql", "-w", target, "SELECT count(*) AS n FROM reviews", "--csv")
    assert result.exit_code == 0, result.stderr
    result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                   "--latents", N_LATENTS, "--replace")
    assert result.exit_code == 0, result.stderr
    assert leftovers(target) == []


def test_crash_after_the_publishing_rename(inputs, tmp_path):
    """The new snapshot is current at once, complete; the next build prunes the old."""
    target, _before = _crash_publish(inputs, tmp_path, "after-rename")
    assert (target / "current" / "marker-new").exists()
    result = saewh("sql", "-w", target, "SELECT count(*) AS n FROM reviews", "--csv")
    assert result.exit_code == 0, result.stderr
    result = saewh("build", "--h5", inputs["small"][0], "--npz", inputs["small"][1], "-w", target,
                   "--latents", N_LATENTS, "--replace")
    assert result.exit_code == 0, result.stderr
    assert len(list((target / "snapshots").iterdir())) == 2 and leftovers(target) == []


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
