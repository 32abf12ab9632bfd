"""Helpers shared by the reliability, security, kill, concurrency and determinism tests.

Not a test module: broken-input writers, a CLI runner that checks the one-line error
promise, tree hashing for byte-for-byte comparisons, and leftovers checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
N_LATENTS = 256


def saewh(*args: str | Path):
    """Run the CLI in-process; returns Click's Result (exit_code, stdout, stderr)."""
    from warehouse.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def saewh_subprocess(*args: str | Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("saewh: error:")]


def assert_clean_error(result, code: int, *needles: str) -> str:
    """Exit `code`, exactly one `saewh: error:` line holding every needle, no traceback."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr
    exception = getattr(result, "exception", None)
    if exception is not None and not isinstance(exception, SystemExit):
        raise AssertionError(f"uncaught {type(exception).__name__}: {exception}\n{stderr}")
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert exit_code == code, f"exit {exit_code}, expected {code}: {stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256): byte-for-byte identity."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(target: Path) -> list[str]:
    """Snapshots of `target` no reader can reach: neither current nor the one the current
    snapshot replaced (what a killed build leaves; the next build removes them)."""
    target = Path(target)
    base = target / "snapshots"
    if not base.is_dir():
        return []
    kept = set()
    if (target / "current").is_symlink():
        current = Path(os.readlink(target / "current")).name
        kept.add(current)
        try:
            kept.add(json.loads((base / current / "manifest.json").read_text()).get("previous"))
        except (OSError, ValueError):
            pass
    return sorted(p.name for p in base.iterdir() if p.name not in kept)


def published_hashes(target: Path) -> dict[str, str]:
    """`tree_hashes` of what readers can reach: leftover snapshots left out."""
    skip = tuple(f"snapshots/{name}/" for name in leftovers(target))
    return {k: v for k, v in tree_hashes(target).items() if not k.startswith(skip)}


def assert_no_partial(target: Path) -> None:
    """Nothing at `target`: a first build that failed removed all it wrote."""
    assert not Path(target).exists(), f"{target} exists"


def read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def write_h5(path: Path, data: dict[str, np.ndarray], **dataset_kw) -> Path:
    """Write datasets as given (string arrays keep their dtype)."""
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, **dataset_kw)
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as z:  # our own test files
        return {k: z[k] for k in z.files}


def write_npz(path: Path, data: dict[str, np.ndarray]) -> Path:
    np.savez(path, **data)
    return path


def env_without_tty() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SAEWH_WAREHOUSE", None)
    return env
