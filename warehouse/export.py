"""Exports: a feature's dashboard data as JSON for existing tools, and the per-feature stats.

Two JSON shapes for one feature (`saewh export feature`):

- ``neuronpedia``: one Neuronpedia feature object, as Neuronpedia's API serves and
  imports it: ``modelId``, ``layer``, ``index`` (a string), ``maxActApprox``,
  ``frac_nonzero``, ``freq_hist_data_bar_values`` (bin centres) and
  ``freq_hist_data_bar_heights`` (counts), and ``activations``: activation records
  ``{tokens, values, maxValue, maxValueTokenIndex, minValue, binMin, binMax,
  binContains, qualifyingTokenIndex, dataIndex}``.
- ``saedashboard``: SAEDashboard's Neuronpedia batch (its ``NeuronpediaDashboardBatch``
  ``to_dict()``): ``{model_id, layer, sae_set, features: [{feature_index, ...,
  frac_nonzero, freq_hist_data_bar_values, freq_hist_data_bar_heights,
  n_prompts_total, n_tokens_in_prompt, dataset, activations: [{bin_min, bin_max,
  bin_contains, tokens, values}]}]}``.  Fields that need the model (logits, neuron
  alignment, decoder weights) are empty lists: the warehouse holds activations only.

In both, the records are the top-k activations (SAEDashboard's convention for the
"TOP ACTIVATIONS" group: bin min -1, bin max = the feature's max, bin contains -1)
followed by random samples of equal-width intervals from 0 to the max (bin min/max =
the interval, bin contains = its share of all activations), as the `samples` report
draws them (reproducible with `seed`).  A record's tokens are the window of its
review around the activating token (`before`/`after`), its values the feature's
activation on each of them (0 where inactive).  ``dataIndex`` / extra ``metadata``
carry the warehouse's own keys (token_pos, review_id, stars) so a record can be
traced back.  Values are float32, written as their shortest decimal.

`saewh export stats` writes the macro `feature_stats()`: one row per feature.

Nothing here imports numpy, pyarrow, h5py or transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.render import float32_text

if TYPE_CHECKING:
    import duckdb

    from warehouse.reports import Result

FORMATS = ("neuronpedia", "saedashboard")


def _f32(x: float | None) -> float | None:
    return None if x is None else float(float32_text(x))


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def feature_data(
    con: duckdb.DuckDBPyConnection,
    feature: int,
    *,
    k: int = 20,
    intervals: int = 10,
    n: int = 5,
    seed: int = 0,
    before: int = 20,
    after: int = 10,
    bins: int = 50,
) -> dict[str, Any]:
    """A feature's dashboard data in a neutral shape: summary, histogram and record groups."""
    summary = _rows(
        con,
        "SELECT f.feature, f.n_active, f.n_reviews, f.density, f.max_value, "
        "(SELECT count(*) FROM reviews WHERE n_tokens > 0) AS n_reviews_with_tokens "
        "FROM features f WHERE f.feature = $f",
        {"f": feature},
    )
    if not summary:
        raise ValueError(f"feature {feature} is not in this warehouse")
    hist = _rows(
        con,
        "SELECT interval, lo, hi, n_activations FROM feature_intervals($f, intervals := $b) "
        "ORDER BY interval",
        {"f": feature, "b": bins},
    )
    top = _rows(
        con, "SELECT rank, token_pos, review_id, stars, value FROM top_k($f, $k)", {"f": feature, "k": k}
    )
    ivs = _rows(
        con,
        "SELECT interval, lo, hi, frac_activations FROM feature_intervals($f, intervals := $i) "
        "ORDER BY interval",
        {"f": feature, "i": intervals},
    )
    samples = _rows(
        con,
        "SELECT interval, sample, token_pos, review_id, stars, value "
        "FROM interval_samples($f, n := $n, intervals := $i, seed := $s, before := 0, after := 0) "
        "ORDER BY interval, sample",
        {"f": feature, "n": n, "i": intervals, "s": seed},
    )
    positions = sorted({r["token_pos"] for r in top} | {r["token_pos"] for r in samples})
    records = {
        r["token_pos"]: r
        for r in _rows(
            con,
            'SELECT token_pos, tokens, "values", max_value, min_value, max_value_token_index, '
            "qualifying_token_index FROM activation_records($f, $p::BIGINT[], before := $b, after := $a)",
            {"f": feature, "p": positions, "b": before, "a": after},
        )
    } if positions else {}
    max_value = summary[0]["max_value"]
    groups: list[dict[str, Any]] = []
    if top:
        groups.append(
            {"bin_min": -1.0, "bin_max": _f32(max_value), "bin_contains": -1.0, "examples": top}
        )
    by_interval: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_interval.setdefault(s["interval"], []).append(s)
    for iv in ivs:
        if iv["interval"] in by_interval:
            groups.append(
                {
                    "bin_min": iv["lo"],
                    "bin_max": iv["hi"],
                    "bin_contains": iv["frac_activations"],
                    "examples": by_interval[iv["interval"]],
                }
            )
    for g in groups:
        g["records"] = [
            dict(records[e["token_pos"]], example=e) for e in g["examples"] if e["token_pos"] in records
        ]
    return {
        "feature": feature,
        "summary": summary[0],
        "histogram": hist,
        "groups": groups,
        "window": before + after + 1,
    }


def _values(rec: dict[str, Any]) -> list[float]:
    return [_f32(v) for v in rec["values"]]


def to_neuronpedia(data: dict[str, Any], model_id: str, layer: str) -> dict[str, Any]:
    """A Neuronpedia feature object (see the module docstring)."""
    s = data["summary"]
    activations = []
    for g in data["groups"]:
        for rec in g["records"]:
            ex = rec["example"]
            activations.append(
                {
                    "tokens": list(rec["tokens"]),
                    "values": _values(rec),
                    "maxValue": _f32(rec["max_value"]),
                    "maxValueTokenIndex": rec["max_value_token_index"],
                    "minValue": _f32(rec["min_value"]),
                    "binMin": g["bin_min"],
                    "binMax": g["bin_max"],
                    "binContains": g["bin_contains"],
                    "qualifyingTokenIndex": rec["qualifying_token_index"],
                    "dataIndex": str(ex["token_pos"]),
                    "metadata": {
                        "review_id": ex["review_id"],
                        "stars": ex["stars"],
                        "token_pos": ex["token_pos"],
                    },
                }
            )
    return {
        "modelId": model_id,
        "layer": layer,
        "index": str(data["feature"]),
        "maxActApprox": _f32(s["max_value"]),
        "frac_nonzero": s["density"],
        "freq_hist_data_bar_values": [(h["lo"] + h["hi"]) / 2 for h in data["histogram"]],
        "freq_hist_data_bar_heights": [h["n_activations"] for h in data["histogram"]],
        "activations": activations,
    }


def to_saedashboard(data: dict[str, Any], model_id: str, layer: int, sae_set: str) -> dict[str, Any]:
    """SAEDashboard's Neuronpedia batch with this one feature (see the module docstring)."""
    s = data["summary"]
    activations = [
        {
            "bin_min": g["bin_min"],
            "bin_max": g["bin_max"],
            "bin_contains": g["bin_contains"],
            "tokens": list(rec["tokens"]),
            "values": _values(rec),
        }
        for g in data["groups"]
        for rec in g["records"]
    ]
    empty: list[Any] = []
    feature = {
        "feature_index": data["feature"],
        "neuron_alignment_indices": empty,
        "neuron_alignment_values": empty,
        "neuron_alignment_l1": empty,
        "correlated_neurons_indices": empty,
        "correlated_neurons_l1": empty,
        "correlated_neurons_pearson": empty,
        "correlated_features_indices": empty,
        "correlated_features_l1": empty,
        "correlated_features_pearson": empty,
        "neg_str": empty,
        "neg_values": empty,
        "pos_str": empty,
        "pos_values": empty,
        "frac_nonzero": s["density"],
        "freq_hist_data_bar_values": [(h["lo"] + h["hi"]) / 2 for h in data["histogram"]],
        "freq_hist_data_bar_heights": [h["n_activations"] for h in data["histogram"]],
        "logits_hist_data_bar_heights": empty,
        "logits_hist_data_bar_values": empty,
        "n_prompts_total": s["n_reviews_with_tokens"],
        "n_tokens_in_prompt": data["window"],
        "dataset": "",
        "decoder_weights_dist": empty,
        "activations": activations,
    }
    return {"model_id": model_id, "layer": layer, "sae_set": sae_set, "features": [feature]}


def export_feature(
    warehouse: Path,
    feature: int,
    fmt: str = "neuronpedia",
    *,
    model_id: str = "sae-warehouse",
    layer: str = "0",
    sae_set: str = "sae-warehouse",
    **options: int,
) -> str:
    """The feature's dashboard JSON (text, deterministic: sorted groups, no timestamps)."""
    from warehouse.db import open_snapshot
    from warehouse.reports import NotFound, load_manifest

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    con, snapshot = open_snapshot(warehouse)
    try:
        n_latents = int(load_manifest(snapshot)["sae"]["n_latents"])
        if not 0 <= feature < n_latents:
            raise NotFound(f"unknown feature {feature}: this warehouse's features are 0..{n_latents - 1}")
        data = feature_data(con, feature, **options)
    finally:
        con.close()
    if fmt == "neuronpedia":
        out = to_neuronpedia(data, model_id, layer)
    else:
        out = to_saedashboard(data, model_id, int(layer) if layer.lstrip("-").isdigit() else 0, sae_set)
    return json.dumps(out, ensure_ascii=False, indent=1) + "\n"


def stats_result(warehouse: Path, arrow: bool = False) -> Result:
    """The macro feature_stats(): one row per feature, as a result to write."""
    from warehouse.reports import run_query

    return run_query(warehouse, "SELECT * FROM feature_stats() ORDER BY feature", arrow=arrow,
                     name="feature_stats")
