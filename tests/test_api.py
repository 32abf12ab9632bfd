"""`Warehouse(path)`, the library object the CLI calls, against brute force on the H5."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bruteforce import BruteForce
from inputs import write_inputs

from warehouse import SaewhError, Warehouse
from warehouse.errors import NotFound, QueryError, UsageError, WarehouseError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from etl.build import build_warehouse

    root = tmp_path_factory.mktemp("api")
    h5, npz = write_inputs(root / "inputs", variant="awkward", n_reviews=30, seed=5)
    build_warehouse(h5, npz, root / "wh", tokenizer="gpt2", progress=False)
    return Warehouse(root / "wh"), BruteForce(h5, npz)


def _densest(bf: BruteForce) -> int:
    return max(range(bf.n_latents_seen()), key=lambda f: len(bf.active_positions(f)))


def test_sql_matches_brute_force(built):
    wh, bf = built
    feature = _densest(bf)
    with wh.sql(f"SELECT rank, token_pos, value FROM top_k({feature}, 7)") as result:
        rows = result.fetchall()
    expected = [(rank, t, v) for rank, t, _, _, v, _, _ in bf.top_k(feature, 7)]
    assert [(r, t) for r, t, _ in rows] == [(r, t) for r, t, _ in expected]
    assert np.allclose([v for *_, v in rows], [v for *_, v in expected])


def test_report_takes_its_options_as_keywords(built):
    wh, bf = built
    feature = _densest(bf)
    with wh.report("top-k", feature=feature, k=4) as result:
        rows = result.fetchall()
    assert [row[0] for row in rows] == [1, 2, 3, 4]
    assert len(rows) == min(4, len(bf.active_positions(feature)))
    with wh.report("top-k", feature=feature, k=3, arrow=True) as result:
        table = result.to_arrow()
    assert table.num_rows == min(3, len(bf.active_positions(feature)))


def test_report_errors_name_the_fix(built):
    wh, bf = built
    with pytest.raises(UsageError, match="no report 'nope'; the reports: .*top-k"):
        wh.report("nope")
    with pytest.raises(UsageError, match="no option 'feat'; its options: feature"):
        wh.report("top-k", feat=1)
    with pytest.raises(NotFound):
        wh.report("top-k", feature=10**6)
    with pytest.raises(QueryError):
        wh.sql("CREATE TABLE x AS SELECT 1")


def test_several_sections_are_read_one_by_one(built):
    wh, bf = built
    feature = _densest(bf)
    with wh.report("feature", feature=feature) as result:
        assert len(result.names) > 1
        with pytest.raises(UsageError, match="sections"):
            result.fetchall()
    with wh.report("feature", feature=feature) as result:
        names = [section.name for section in result.sections()]
    assert names == result.names


def test_info_is_the_cli_json(built):
    from typer.testing import CliRunner

    from warehouse.cli import app

    wh, bf = built
    facts = wh.info()
    assert facts["tables"]["tokens"]["rows"] == len(bf.token_review)
    assert facts["tables"]["activations"]["rows"] == len(bf.activations(range(bf.n_latents_seen())))
    out = CliRunner().invoke(app, ["info", "--json", "-w", str(wh.path)])
    assert out.exit_code == 0 and json.loads(out.stdout) == facts


def test_verify_and_a_missing_warehouse(built, tmp_path):
    wh, _ = built
    assert wh.verify() == []
    with pytest.raises(WarehouseError) as info:
        Warehouse(tmp_path / "none").info()
    assert isinstance(info.value, SaewhError) and "\n" not in str(info.value)
