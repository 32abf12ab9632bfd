"""sae-warehouse: query SAE activations with DuckDB."""
