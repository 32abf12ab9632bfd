"""sae-warehouse: query SAE activations with DuckDB.  Start with `Warehouse(path)`."""

from warehouse.api import Warehouse
from warehouse.errors import SaewhError

__all__ = ["SaewhError", "Warehouse"]
