"""The Spark engine's job, on the driver: token ranges -> explode tasks -> shuffle by
bucket, sorted by (feature, token_pos) -> merge tasks -> one small result per bucket."""

from __future__ import annotations

import pickle

import numpy as np

from etl.build.context import BuildContext
from etl.build.merge import MergeResult
from etl.spark.tasks import RESULTS_DDL, ROWS_DDL, explode_partition, for_tasks, merge_partition
from warehouse.contract import BUCKET_WIDTH

# Rows per Arrow batch an explode task hands to Spark (~2 MB): the JVM converts each
# batch to rows before the shuffle writes them, so a batch's size is JVM memory per task.
EXPLODE_BATCH_ROWS = 1 << 17


def merge_partitions(spark, ctx: BuildContext) -> int:
    """Shuffle partitions of the merge: a few per core, at most one per bucket (a bucket
    is never split: it is one sorted file)."""
    return max(1, min(ctx.n_buckets, 4 * spark.sparkContext.defaultParallelism))


def run_job(
    spark, ctx: BuildContext, k: int, partitions: int | None = None
) -> tuple[list[MergeResult], dict]:
    """Explode, shuffle and merge (`k`: the H5's slots per token); returns the buckets'
    results (buckets with rows only) and what the job was cut into.
    `ctx.settings.workers` is the number of explode tasks; each writes its
    `ExplodeResult` beside the work files (tasks.explode_result_path)."""
    from pyspark.sql import functions as F

    shipped = for_tasks(ctx)
    tasks = ctx.settings.workers
    bounds = np.linspace(0, ctx.n_tokens, tasks + 1).astype(np.int64).tolist()
    partitions = partitions or merge_partitions(spark, ctx)
    rows = spark.range(0, tasks, 1, tasks).mapInArrow(
        explode_partition(shipped, bounds, EXPLODE_BATCH_ROWS), ROWS_DDL
    )
    bucket = F.floor(F.shiftright("key", 32) / F.lit(BUCKET_WIDTH))
    # Spark's shuffle does what the local spill files and their merge do: a bucket's rows
    # from every task, in one partition, sorted by (feature, token_pos); sortWithinPartitions
    # spills to the executors' local disks past their execution memory.
    shuffled = rows.repartition(partitions, bucket).sortWithinPartitions("key")
    bucket_rows = ctx.n_tokens * k // ctx.n_buckets
    out = shuffled.mapInArrow(
        merge_partition(shipped, ctx.settings.tuning.merge_block_rows, bucket_rows), RESULTS_DDL
    )
    # collect(), not toLocalIterator(): that runs one job per partition, one after
    # another (it serialized the merge).  The results are small: a few KB per bucket.
    merged = [pickle.loads(row.result) for row in out.collect()]
    return merged, {"explode_tasks": tasks, "merge_partitions": partitions}
