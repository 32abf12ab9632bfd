"""ETL: H5 + NPZ inputs -> warehouse Parquet and DuckDB file."""
