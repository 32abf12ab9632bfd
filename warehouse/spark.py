"""A warehouse from Apache Spark: its tables as Spark views, and the contract's queries
as parameterized Spark SQL (sql/spark/*.sql, beside the DuckDB macros in sql/).

```python
from pyspark.sql import SparkSession
from warehouse.spark import register, query
spark = SparkSession.builder.getOrCreate()
register(spark, "wh")                                  # views: activations, tokens, ...
query(spark, "top_k", feature=16751, k=20).show()      # = DuckDB's top_k(16751, 20)
spark.sql("SELECT * FROM features WHERE n_active > 0").show()
```

Each query file's parameters are Spark SQL named parameter markers (`:feature`), bound
by `spark.sql(text, args=...)`, never formatted into the text; only the contract's
constants are rendered into it (`{{contract NAME}}`, as in the DuckDB DDL).  Needs the
`spark` extra (pyspark is imported by the caller's session, not here).
"""

from __future__ import annotations

from pathlib import Path

from warehouse.contract import TABLE_GLOBS, TABLES
from warehouse.ddl import render_contract, table_files
from warehouse.errors import NotFound, UsageError
from warehouse.snapshots import CURRENT, current_snapshot
from warehouse.sqlfiles import split_statements, sql_dir

# The contract's queries, one file each in sql/spark/, and their parameters in order.
QUERIES: dict[str, tuple[str, ...]] = {
    "activation": ("token_pos", "feature"),
    "feature_tokens": ("feature",),
    "top_k": ("feature", "k"),
    "top_k_contexts": ("feature", "k", "before", "after"),
    "feature_by_stars": ("feature",),
    "review_features": ("review_id", "k"),
}
# The partitioned tables: directories of parts (activations' hive `bucket=N` directories
# give its `bucket` column).
_PARTITIONED = tuple(TABLE_GLOBS)


def snapshot_path(warehouse: Path | str) -> Path:
    """The snapshot `warehouse` serves now (resolved once: views registered over it keep
    reading it while later builds publish others), or a pre-snapshot warehouse itself."""
    root = Path(warehouse).absolute()
    if (root / CURRENT).is_symlink() or not (root / "manifest.json").is_file():
        return current_snapshot(root)
    return root


def register(spark, warehouse: Path | str) -> dict[str, str]:
    """Register the warehouse's tables as temporary views of `spark`'s session, named as
    in DuckDB (`activations`, `tokens`, `reviews`, ..., `top_examples` with its contexts);
    returns {view: the Parquet it reads}.  The files are the manifest's exact list."""
    snapshot = snapshot_path(warehouse)
    files = table_files(snapshot)
    views: dict[str, str] = {}
    for table in TABLES:
        paths = [str(snapshot / f) for f in files[table]]
        reader = spark.read
        if table in _PARTITIONED:
            reader = reader.option("basePath", str(snapshot / table))
        name = "top_examples_offsets" if table == "top_examples" else table
        reader.parquet(*paths).createOrReplaceTempView(name)
        views[name] = str(snapshot / table) if table in _PARTITIONED else paths[0]
    for stmt in split_statements(_text("views")):
        spark.sql(stmt)
    views["top_examples"] = "top_examples_offsets JOIN reviews (sql/spark/views.sql)"
    return views


def query_sql(name: str) -> str:
    """The Spark SQL of the contract query `name`, its constants rendered."""
    if name not in QUERIES:
        raise NotFound(f"no Spark query {name!r}: one of {', '.join(QUERIES)}")
    return _text(name)


def query(spark, name: str, **params):
    """The DataFrame of the contract query `name` (a key of QUERIES) with its parameters
    bound by Spark; `before`/`after` default to the contract's window."""
    from warehouse.contract import DEFAULT_AFTER, DEFAULT_BEFORE

    sql = query_sql(name)
    if name == "top_k_contexts":
        params = {"before": DEFAULT_BEFORE, "after": DEFAULT_AFTER, **params}
    if set(params) != set(QUERIES[name]):
        got = ", ".join(sorted(params)) or "none"
        raise UsageError(f"{name} takes {', '.join(QUERIES[name])}; got {got}")
    return spark.sql(sql, args=params)


def _text(name: str) -> str:
    """sql/spark/NAME.sql without its comment lines (a statement's text for spark.sql)."""
    path = sql_dir() / "spark" / f"{name}.sql"
    body = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                     if not line.strip().startswith("--"))
    return render_contract(body).strip().rstrip(";")
