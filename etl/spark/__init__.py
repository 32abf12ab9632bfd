"""The Spark engine: `saewh build --engine spark [--master URL]`.

The build is the local one (`etl.build.build_warehouse`: validation, the review map,
the reviews, the finish, the verified publish) with its two heavy phases run as one
Spark job (`SparkRunner`):

- explode: one Spark task per token range runs the local explode (`etl.build.explode`,
  the same numpy kernels, the same `tokens` and `review_top_features` parts) and hands
  each run's rows to Spark as Arrow batches of (key, value, review_idx), key =
  feature << 32 | token_pos, instead of writing spill files;
- Spark's shuffle is the spill: rows are partitioned by bucket (key >> 32) // 64 and
  sorted by key, i.e. by (bucket, feature, token_pos);
- merge: each shuffled partition streams its buckets, in that order, block by block,
  through the local merge's per-bucket code (`etl.build.merge.merge_sorted`), which
  writes the bucket's sorted Parquet file and computes its statistics, top examples and
  review statistics; each bucket's small `MergeResult` goes back to the driver.

So the tables hold the rows the local build writes, computed by the same code.  The
driver holds per-review and per-feature arrays, never per-activation data.  Executors
read the inputs and write the snapshot's files themselves: the warehouse directory and
the inputs must be at the same paths on every executor (a shared filesystem; README
"Running on a cluster").

`pyspark` is imported only here, and only once this engine is chosen.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import re
import sys
from pathlib import Path

from etl.build import LocalRunner
from etl.build.context import BuildContext, Settings
from etl.build.errors import BuildError
from etl.build.explode import ExplodeResult
from etl.build.files import texts_to_arrow
from etl.build.merge import MergeResult, empty_bucket
from etl.progress import Progress
from warehouse.errors import InputError, OutputError, SaewhError, UsageError

INSTALL_HINT = "pip install 'sae-warehouse[spark]'"
DEFAULT_MASTER = "local[*]"
# Tokens per explode task: ~4M activation rows at k=32, ~80 MB of shuffle output (README
# "Running on a cluster" derives executors and wall time from the measured per-task rate).
TASK_TOKENS = 1 << 17


class SparkUnavailable(UsageError):
    """`--engine spark` without pyspark, or without a Java runtime for it."""


def require_pyspark():
    """The pyspark module, or SparkUnavailable naming the extra to install."""
    try:
        import pyspark
    except ImportError:
        raise SparkUnavailable(f"--engine spark needs pyspark: {INSTALL_HINT}") from None
    return pyspark


def spark_session(master: str | None = None, app: str = "saewh", conf: dict[str, str] | None = None):
    """(the active SparkSession, or a new one on `master`; whether it was made here).

    Under `spark-submit` (or beside a session the caller made) the active session is
    used as it is.  A new one gets the settings the engine relies on: Arrow batches of
    128K rows into the merge, and the executors' Python this interpreter when the
    master is local (a cluster's is its own: README "Running on a cluster"); `conf`
    adds Spark settings (the benchmark's event log, say)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Under spark-submit (its JVM is running): its --master and --conf stand.
        return SparkSession.builder.appName(app).getOrCreate(), True
    master = master or DEFAULT_MASTER
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(1 << 17))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
    )
    if master.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")
        # The driver JVM's own start-up warnings (log4j's default profile, the hostname,
        # native Hadoop) would fill a saewh command's stderr: errors only.  (Client mode
        # only: a cluster's driver logs as its administrators set.)
        quiet = f"-Dlog4j2.configurationFile={_quiet_log4j()}"
        builder = builder.config("spark.driver.extraJavaOptions", quiet)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate(), True
    except Exception as exc:  # noqa: BLE001 - PySparkRuntimeError, Py4J: no JVM
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparkUnavailable(
            f"cannot start Spark on {master} (needs Java 17+ on PATH or JAVA_HOME): {first}"
        ) from None


def _quiet_log4j() -> str:
    """A log4j2 configuration logging errors only, to stderr (written once per process)."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"saewh-log4j2-{os.getpid()}.properties"
    if not path.exists():
        path.write_text(
            "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
            "appender.console.type = Console\nappender.console.name = console\n"
            "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex\n"
        )
    return str(path)


class SparkRunner(LocalRunner):
    """The explode and merge phases of `etl.build` as one Spark job (see the module)."""

    def __init__(self, master: str | None = None, task_tokens: int = TASK_TOKENS,
                 merge_partitions: int | None = None):
        require_pyspark()  # before the inputs are read: a missing extra fails at once
        self.master, self.task_tokens, self.merge_partitions = master, task_tokens, merge_partitions
        self.spark = None
        self.owned = False
        self.k = 0
        self.merged: list[MergeResult] = []
        self.metrics: dict = {}

    def configure(self, settings: Settings) -> Settings:
        """Starts Spark; `workers` becomes the number of explode tasks (token ranges):
        at least the cluster's parallelism, at most `task_tokens` tokens each."""
        import h5py

        self.spark, self.owned = spark_session(self.master)
        with h5py.File(settings.h5, "r") as f:
            n_tokens, self.k = (int(x) for x in f["z_idx"].shape)
        parallelism = self.spark.sparkContext.defaultParallelism
        tasks = max(1, min(max(n_tokens, 1), max(parallelism, math.ceil(n_tokens / self.task_tokens))))
        return dataclasses.replace(settings, workers=tasks)

    def explode(self, ctx: BuildContext, meta: dict) -> list[ExplodeResult]:
        """The whole Spark job (explode, shuffle, merge): the explode's results; the
        buckets' are kept for `merge`.  The texts are converted first: tasks read them."""
        texts_to_arrow(meta.pop("texts"), ctx.work.texts)
        ctx.texts_ready.set()
        from etl.spark.job import run_job

        try:
            self.merged, self.metrics = run_job(self.spark, ctx, self.k, self.merge_partitions)
        except SaewhError:
            raise
        except Exception as exc:  # noqa: BLE001 - a task's failure, as Spark reports it
            # The job's other tasks are stopped before the build removes the snapshot
            # they write into (a merge task still running would make its directory again).
            self.spark.sparkContext.cancelAllJobs()
            raise task_error(exc) from None
        from etl.spark.tasks import explode_result_path

        results = []
        for task in range(ctx.settings.workers):
            path = explode_result_path(ctx.work, task)
            results.append(pickle.loads(path.read_bytes()))
            path.unlink()
        return results

    def merge(self, ctx: BuildContext, tasks: list[tuple], bar: Progress, started) -> list[MergeResult]:
        """The buckets merged by the job, and an empty result for each bucket without rows."""
        started()
        done = {m.bucket for m in self.merged}
        merged = self.merged + [empty_bucket(ctx, b) for b in range(ctx.n_buckets) if b not in done]
        self.merged = []
        bar.update(ctx.n_buckets)
        return merged

    def close(self) -> None:
        if self.spark is not None and self.owned:
            self.spark.stop()
        self.spark = None


# The last line of a Python worker's traceback inside Spark's error: "module.Class: message".
_REMOTE_ERROR = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def task_error(exc: BaseException) -> SaewhError:
    """The one-line error for a failed Spark job: an input error a task found is the
    same InputError the local build raises; a write error is an OutputError."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        m = _REMOTE_ERROR.match(line)
        if not m:
            continue
        name, message = m.groups()
        if name == "InputError":
            return InputError(message)
        if name in ("OSError", "OutputError") and re.search(r"No space|quota|Read-only|Permission", message):
            return OutputError(f"cannot write the warehouse: {message}")
        return BuildError(f"the Spark job failed: {name}: {message}")
    return BuildError(f"the Spark job failed: {lines[0] if lines else type(exc).__name__}")


__all__ = [
    "DEFAULT_MASTER", "SparkRunner", "SparkUnavailable", "require_pyspark", "spark_session", "task_error",
]
