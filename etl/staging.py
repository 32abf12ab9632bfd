"""Staging directories and the atomic swap that publishes a finished build."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def fingerprint(path: Path) -> dict:
    """Size, mtime and a hash of the first and last MiB: cheap enough for 14 GB inputs."""
    stat = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if stat.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime": stat.st_mtime,
        "sha256_head_tail": h.hexdigest(),
    }


def staging_dir_for(target: Path) -> Path:
    return target.parent / f".{target.name}.staging-{os.getpid()}"


def clean_stale_staging(target: Path) -> None:
    """Remove staging/old directories left by builds whose process is gone."""
    for pattern in (f".{target.name}.staging-*", f".{target.name}.old-*"):
        for path in target.parent.glob(pattern):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def swap_into_place(staging: Path, target: Path) -> None:
    """Move the finished staging directory to the target; the old one survives a crash."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, target)
