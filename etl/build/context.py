"""What every phase of a build reads: the explicit, frozen `BuildContext`.

The build makes one context once the reviews are mapped and installs it before its
worker processes fork (`install`); workers read it with `current()`.  It is inherited
through fork and read-only: nothing in a build assigns to it after `install`, and
what a phase learns (the explode's run counts, say) is passed to the next phase as
arguments, not written into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from etl.build.parallel import Counter
from warehouse.contract import BUCKET_WIDTH

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

DEFAULT_LATENTS = 24_576
DEFAULT_CHUNK_TOKENS = 131_072
NO_TOKEN_ID = -1  # in WorkDir.token_ids: the token has no id (its text is unknown)
SPILL_COLUMNS = 3  # token_pos, value, review_idx: 4 bytes each, per run and bucket (WorkDir.spill)


@dataclass(frozen=True)
class Tuning:
    """Sizes that bound the build's working memory and set its I/O granularity; no
    output byte depends on them (tests/test_determinism.py shrinks them all)."""

    # A merge worker's memory is set by these caps, not by the bucket: small enough that a
    # 5M-token build's buckets reach them too, so its peak is the full size's (a merge
    # worker sampled 0.75 GB at 47M tokens against 0.3 at 5M with 4x larger caps).
    merge_block_rows: int = 1 << 20
    merge_window_rows: int = 1 << 21  # spill rows read at once by a merge worker (24 MB)
    pair_group: int = 1 << 19  # (feature, review) pairs per batch of the review statistics
    gather_window_bytes: int = 1 << 24  # of a token array, read at once for the top examples
    runs_at_once: int = 64  # runs (98 KB each at 24,576 latents) `runs_by_bucket` reads at once
    # Sorting is cache-bound: sub-blocks of ~32K tokens sort ~2x faster per slot than
    # 128K-token chunks.
    sort_block_tokens: int = 1 << 15


@dataclass(frozen=True)
class WorkDir:
    """The build's intermediate files, all in one directory (removed at the end)."""

    root: Path

    # Per token, from the review map (phase 1): its review_idx, its position in the
    # review, and (filled by the explode) the character offsets of it and of its
    # default context window.
    token_review = property(lambda self: self.root / "token_review.npy")
    token_position = property(lambda self: self.root / "token_position.npy")
    token_bounds = property(lambda self: self.root / "token_bounds.npy")
    # Per token, its token id (int32; NO_TOKEN_ID: unknown), filled by the explode and
    # read by the merge (token_feature_stats) and the finish (vocabulary).
    token_ids = property(lambda self: self.root / "token_ids.npy")
    texts = property(lambda self: self.root / "texts.arrow")  # the NPZ texts, memory-mappable

    def spill(self, worker: int, bucket: int) -> Path:
        """A worker's rows of one bucket, run after run (the explode appends, the merge
        reads): per run (sub-block) that had rows of the bucket, the run's token_pos
        (uint32), then its values (float32), then its review_idx (int32), each in
        (feature, token) order."""
        return self.root / f"spill-{worker}-{bucket:05d}.bin"

    def runs(self, worker: int, by_bucket: bool = True) -> Path:
        """A worker's run counts: row-major as the explode appends them, or bucket-major."""
        return self.root / (f"runs-{worker}-by-bucket.bin" if by_bucket else f"runs-{worker}.bin")

    def review_partials(self, worker: int) -> Path:
        """A worker's (feature, review) pairs of the reviews it could not rank whole."""
        return self.root / f"review-partials-{worker}.npz"

    def top(self, bucket: int) -> Path:
        """A bucket's top rows, from its merge, for the top examples."""
        return self.root / f"top-{bucket:05d}.npy"


@dataclass(frozen=True)
class SnapshotDir:
    """The files of the snapshot being built (its directory is named for good already)."""

    root: Path

    PARTITIONED = ("activations", "tokens", "review_top_features", "review_active_features",
                   "token_feature_stats")  # parts

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.root / "_work")

    def make_dirs(self) -> None:
        for sub in ("_work", *self.PARTITIONED):
            (self.root / sub).mkdir(parents=True)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def table(self, name: str) -> Path:
        """An unpartitioned table's file."""
        return self.root / f"{name}.parquet"

    def tokens_part(self, worker: int) -> Path:
        return self.root / "tokens" / f"part-{worker:04d}.parquet"

    def review_top_part(self, worker: int) -> Path:
        return self.root / "review_top_features" / f"part-{worker:04d}.parquet"

    @property
    def review_top_split(self) -> Path:
        """The ranked features of the reviews no single worker saw whole."""
        return self.root / "review_top_features" / "part-split.parquet"

    def review_active_part(self, worker: int) -> Path:
        return self.root / "review_active_features" / f"part-{worker:04d}.parquet"

    @property
    def review_active_split(self) -> Path:
        """The active features of the reviews no single worker saw whole."""
        return self.root / "review_active_features" / "part-split.parquet"

    def token_stats_part(self, bucket: int) -> Path:
        return self.root / "token_feature_stats" / f"part-{bucket:05d}.parquet"

    def activations_part(self, bucket: int) -> Path:
        return self.root / "activations" / f"bucket={bucket}" / "part-0.parquet"

    def parts(self, name: str) -> list[Path]:
        """A partitioned table's files, sorted."""
        return sorted((self.root / name).rglob("*.parquet"))

    def has_parts(self, name: str) -> bool:
        """Whether a partitioned table has a file (found without listing them all)."""
        return next((self.root / name).rglob("*.parquet"), None) is not None


@dataclass(frozen=True)
class Settings:
    """What the caller of `build_warehouse` chose (checked before the build starts)."""

    h5: Path  # as given (errors found in the build process name it so)
    npz: Path
    tokenizer: str
    workers: int
    n_latents: int
    chunk: int  # tokens per chunk read from the H5
    progress: bool = False
    tuning: Tuning = Tuning()


@dataclass(frozen=True, eq=False)
class BuildContext:
    """Inputs, sizes and settings of one build, and the per-review arrays its workers
    share.  Made once, before the workers fork; never changed (see the module's doc)."""

    settings: Settings
    h5: Path  # absolute: workers open it themselves (and name it in their errors)
    out: SnapshotDir
    n_tokens: int  # in the H5
    n_tokens_of: np.ndarray  # per review_idx, its tokens in the H5
    n_npz: int  # review_idx below it are the NPZ's reviews (they have a text)
    star_code: np.ndarray  # per review_idx, its index in star_values (-1: none, or no tokens)
    star_values: np.ndarray
    groups: dict  # "business"/"user": (code per review_idx, number of codes); etl.review_stats
    counter: Counter  # progress, shared with the workers
    texts_ready: Event  # shared with the forked workers: set once `work.texts` is complete
    n_vocab: int  # the tokenizer's token ids are [0, n_vocab)

    @property
    def work(self) -> WorkDir:
        return self.out.work

    @property
    def n_reviews(self) -> int:
        """Every review_idx: the NPZ's reviews, then those only the H5 names."""
        return len(self.n_tokens_of)

    @property
    def n_buckets(self) -> int:
        return -(-self.settings.n_latents // BUCKET_WIDTH)

    def bucket_features(self, bucket: int) -> tuple[int, int]:
        """The features [lo, hi) of a bucket."""
        return bucket * BUCKET_WIDTH, min((bucket + 1) * BUCKET_WIDTH, self.settings.n_latents)


# The context of the build running in this process: set once by the build before its
# workers fork, inherited by them (fork copies it), cleared when the build ends.
_current: list[BuildContext | None] = [None]


def install(context: BuildContext | None) -> None:
    """Make `context` the one `current()` returns (None: the build is over)."""
    _current[0] = context


def current() -> BuildContext:
    """The running build's context (in a worker: the one its parent installed before forking)."""
    context = _current[0]
    if context is None:
        raise RuntimeError("no build is running in this process (etl.build.context.install)")
    return context
