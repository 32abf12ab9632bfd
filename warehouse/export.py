"""Exports: features' dashboard data in the formats the peers' tools read, and the stats.

Three shapes (`saewh export feature`), every field named, typed and meant as the peers'
own code names, types and means it (the tests check each against a validator built
from that code, citing the file and commit):

- ``neuronpedia``: one Neuronpedia feature as its API serves it: a ``Neuron`` row
  (``apps/webapp/prisma/schema.prisma``; ``neuronpedia_utils/db_models/feature.py``)
  with its ``activations``, each a full ``Activation`` row (``id``, ``creatorId``,
  ``dataSource``, ``dataIndex``, ...).
- ``saedashboard``: SAEDashboard's ``batch-N.json`` (``NeuronpediaDashboardBatch
  .to_dict()`` in ``sae_dashboard/neuronpedia/neuronpedia_dashboard.py``, plus the
  ``sae_id_suffix`` the runner adds), which Neuronpedia's converter
  (``convert-saedashboard-to-neuronpedia-export.py``) and SAEDashboard's
  ``neuronpedia_export.py`` read.
- ``neuronpedia-import``: the flat tables Neuronpedia's bulk import reads, in the
  layout ``neuronpedia_export.py`` writes: ``DIR/<model>/<source>/{release,model,
  sourceset,source}.jsonl`` and ``features/batch-0.jsonl.gz``, ``activations/
  batch-0.jsonl.gz`` (one ``Neuron`` / ``Activation`` row a line).

The records are a feature's top-k activations (SAEDashboard's "top" group: bin min -1,
bin max = the feature's max, bin contains -1) followed by uniform random samples of
equal-width intervals from 0 to the max (bin min/max = the interval, bin contains =
its share of all activations), as the `samples` report draws them.  A record's tokens
are the window of its review around the activating token, its values the feature's
exact activation on each (0 where inactive; float32, written as its shortest decimal).

Naming: ``--model`` (Neuronpedia model id) and ``--source`` (Neuronpedia source id
``LAYER-SET[__SUFFIX]``, e.g. ``0-res-24k``: SAEDashboard's ``layer``, ``sae_set`` and
``sae_id_suffix``).  Ids are deterministic (a hash of model, source, feature, group and
token), ``createdAt`` is the warehouse's build time, so an export is reproducible.

What the warehouse cannot know (it holds activations, not the model's weights): logits
(``pos_str``/``neg_str``, logit histograms), neuron alignment, correlated neurons and
features, decoder weights, steering vectors, DFA and loss values.  Those are the
peers' empty values (``[]``, ``null``), never invented.

`saewh export stats` writes the macro `feature_stats()`: one row per feature.

Nothing here imports numpy, pyarrow, h5py or transformers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.render import float32_text

if TYPE_CHECKING:
    import duckdb

    from warehouse.reports import Result

FORMATS = ("neuronpedia", "saedashboard", "neuronpedia-import")

# Neuronpedia's own fallback creator for bulk imports (SAEDashboard's
# neuronpedia_export.FALLBACK_CREATOR_ID; the converter's default): an importer
# replaces it with its user's id (`--creator-id`).
DEFAULT_CREATOR_ID = "clkht01d40000jv08hvalcvly"
DEFAULT_MODEL = "gpt2-small"  # the H5's tokens are GPT-2's; Neuronpedia's id for GPT-2 small

# Neuronpedia source ids: "<layer>-<set>" or "<layer>-<set>__<suffix>" (the converter
# builds them as str(layer_num) + "-" + set + ("__" + suffix if suffix else "")).
_SOURCE = re.compile(r"^(\d+)-([A-Za-z0-9][A-Za-z0-9._-]*?)(?:__([A-Za-z0-9._-]+))?$")
_MODEL = re.compile(r"^[A-Za-z0-9_-]+$")  # prisma Model.id: letters, digits, '_' and '-'


@dataclass(frozen=True)
class Naming:
    """Where the features live in Neuronpedia: model id and source id, and who imports them."""

    model: str
    source: str
    creator_id: str = DEFAULT_CREATOR_ID
    dataset: str = ""

    @property
    def layer(self) -> int:
        return int(self._parts()[0])

    @property
    def sae_set(self) -> str:
        return self._parts()[1]

    @property
    def suffix(self) -> str | None:
        return self._parts()[2]

    def _parts(self) -> tuple[str, str, str | None]:
        m = _SOURCE.match(self.source)
        assert m is not None  # checked by check()
        return m.group(1), m.group(2), m.group(3)

    def check(self) -> None:
        from warehouse.errors import UsageError

        if not _MODEL.match(self.model):
            raise UsageError(f"--model {self.model!r}: Neuronpedia model ids are letters, digits, '_', '-'")
        if not _SOURCE.match(self.source):
            raise UsageError(
                f"--source {self.source!r}: a Neuronpedia source id is LAYER-SET[__SUFFIX], e.g. 0-res-24k"
            )


def default_source(n_latents: int) -> str:
    """`0-res-24k` for 24,576 latents: layer 0 (unknown to the warehouse: set --source)."""
    width = f"{n_latents // 1024}k" if n_latents % 1024 == 0 else str(n_latents)
    return f"0-res-{width}"


def _f32(x: float | None) -> float | None:
    return None if x is None else float(float32_text(x))


def _statements() -> dict[str, Any]:
    from warehouse.sqlfiles import load_sql

    return {s.name: s for s in load_sql("export/feature.sql").statements}


def _rows(con: duckdb.DuckDBPyConnection, name: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    stmt = _statements()[name]
    cur = con.execute(stmt.sql, {p: values[p] for p in stmt.params})
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def corpus_data(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The prompts (reviews with tokens): how many, and the longest one's token count."""
    return _rows(con, "corpus", {})[0]


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
    v = {"feature": feature, "k": k, "intervals": intervals, "n": n, "seed": seed, "before": before,
         "after": after, "bins": bins}
    summary = _rows(con, "summary", v)
    if not summary:
        raise ValueError(f"feature {feature} is not in this warehouse")
    hist = _rows(con, "histogram", v)
    top = _rows(con, "top", v) if k > 0 else []
    ivs = _rows(con, "intervals", v)
    samples = _rows(con, "samples", v) if n > 0 else []
    positions = sorted({r["token_pos"] for r in top} | {r["token_pos"] for r in samples})
    records = (
        {r["token_pos"]: r for r in _rows(con, "records", {**v, "positions": positions})} if positions else {}
    )
    groups: list[dict[str, Any]] = []
    if top:
        groups.append(
            {"bin_min": -1.0, "bin_max": _f32(summary[0]["max_value"]), "bin_contains": -1.0, "examples": top}
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
    return {"feature": feature, "summary": summary[0], "histogram": hist, "groups": groups}


def _values(rec: dict[str, Any]) -> list[float]:
    return [_f32(x) for x in rec["values"]]


def _hist(data: dict[str, Any]) -> tuple[list[float], list[int]]:
    """SAEDashboard's frequency histogram: bar centres and counts."""
    hist = data["histogram"]
    return [(h["lo"] + h["hi"]) / 2 for h in hist], [h["n_activations"] for h in hist]


def _records(data: dict[str, Any]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(group number, group, record) in export order: top activations, then the intervals."""
    return [(i, g, rec) for i, g in enumerate(data["groups"]) for rec in g["records"]]


def _activation_id(naming: Naming, feature: int, group: int, token_pos: int) -> str:
    """A cuid-shaped id (25 lowercase characters, starting with 'c'), deterministic: the
    same export gives the same ids, and a record in two groups (a top activation also
    sampled) gets two."""
    key = f"{naming.model}\x00{naming.source}\x00{feature}\x00{group}\x00{token_pos}".encode()
    return "c" + hashlib.sha256(key).hexdigest()[:24]


def neuron_row(data: dict[str, Any], naming: Naming, created_at: str) -> dict[str, Any]:
    """A Neuronpedia ``Neuron`` row (its import's ``features/*.jsonl``), in the field order of
    ``neuronpedia_utils/db_models/feature.py`` (and ``sourceSetName``, as SAEDashboard's
    exporter writes it).  ``maxActApprox`` is the records' largest value, as the
    converter computes it (0 without records)."""
    values, heights = _hist(data)
    recs = _records(data)
    empty: list[Any] = []
    return {
        "modelId": naming.model,
        "layer": naming.source,
        "index": str(data["feature"]),
        "creatorId": naming.creator_id,
        "createdAt": created_at,
        "maxActApprox": max((_f32(r["max_value"]) for _, _, r in recs), default=0.0),
        "hasVector": False,
        "vector": empty,
        "vectorLabel": None,
        "vectorDefaultSteerStrength": 10,
        "hookName": None,
        "topkCosSimIndices": empty,
        "topkCosSimValues": empty,
        "neuron_alignment_indices": empty,
        "neuron_alignment_values": empty,
        "neuron_alignment_l1": empty,
        "correlated_neurons_indices": empty,
        "correlated_neurons_pearson": empty,
        "correlated_neurons_l1": empty,
        "correlated_features_indices": empty,
        "correlated_features_pearson": empty,
        "correlated_features_l1": empty,
        "neg_str": empty,
        "neg_values": empty,
        "pos_str": empty,
        "pos_values": empty,
        "frac_nonzero": data["summary"]["density"],
        "freq_hist_data_bar_heights": heights,
        "freq_hist_data_bar_values": values,
        "logits_hist_data_bar_heights": empty,
        "logits_hist_data_bar_values": empty,
        "decoder_weights_dist": empty,
        "sourceSetName": naming.sae_set,
    }


def activation_rows(data: dict[str, Any], naming: Naming, created_at: str) -> list[dict[str, Any]]:
    """Neuronpedia ``Activation`` rows (its import's ``activations/*.jsonl``), in the field
    order of ``neuronpedia_utils/db_models/activation.py``.  ``dataSource`` is the
    dataset (the NPZ's name, or `--dataset`), ``dataIndex`` the token's ``token_pos``
    (``SELECT * FROM tokens WHERE token_pos = dataIndex`` finds it and its review)."""
    rows = []
    for i, g, rec in _records(data):
        ex = rec["example"]
        rows.append(
            {
                "id": _activation_id(naming, data["feature"], i, ex["token_pos"]),
                "tokens": list(rec["tokens"]),
                "index": str(data["feature"]),
                "layer": naming.source,
                "modelId": naming.model,
                "maxValue": _f32(rec["max_value"]),
                "maxValueTokenIndex": rec["max_value_token_index"],
                "minValue": _f32(rec["min_value"]),
                "values": _values(rec),
                "creatorId": naming.creator_id,
                "dataSource": naming.dataset or None,
                "dataIndex": str(ex["token_pos"]),
                "dfaValues": [],
                "dfaTargetIndex": None,
                "dfaMaxValue": None,
                "createdAt": created_at,
                "lossValues": [],
                "logitContributions": None,
                "binMin": g["bin_min"],
                "binMax": g["bin_max"],
                "binContains": g["bin_contains"],
                "qualifyingTokenIndex": rec["qualifying_token_index"],
            }
        )
    return rows


def to_neuronpedia(data: dict[str, Any], naming: Naming, created_at: str) -> dict[str, Any]:
    """One Neuronpedia feature as its API serves it: the Neuron row with its Activation rows."""
    return {**neuron_row(data, naming, created_at), "activations": activation_rows(data, naming, created_at)}


def saedashboard_feature(data: dict[str, Any], corpus: dict[str, Any], naming: Naming) -> dict[str, Any]:
    """SAEDashboard's ``NeuronpediaDashboardFeature.to_dict()``.  ``n_prompts_total`` is the
    reviews with tokens; ``n_tokens_in_prompt`` the longest review's token count (a
    review is a prompt; SAEDashboard's prompts all have this one length, ours at most
    it); ``dataset`` the dataset's name."""
    values, heights = _hist(data)
    empty: list[Any] = []
    activations = [
        {
            "bin_min": g["bin_min"],
            "bin_max": g["bin_max"],
            "bin_contains": g["bin_contains"],
            "tokens": list(rec["tokens"]),
            "values": _values(rec),
            "qualifying_token_index": rec["qualifying_token_index"],
        }
        for _, g, rec in _records(data)
    ]
    return {
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
        "frac_nonzero": data["summary"]["density"],
        "freq_hist_data_bar_values": values,
        "freq_hist_data_bar_heights": heights,
        "logits_hist_data_bar_heights": empty,
        "logits_hist_data_bar_values": empty,
        "n_prompts_total": corpus["n_prompts"],
        "n_tokens_in_prompt": corpus["max_prompt_tokens"],
        "dataset": naming.dataset,
        "decoder_weights_dist": empty,
        "activations": activations,
    }


def to_saedashboard(datas: list[dict[str, Any]], corpus: dict[str, Any], naming: Naming) -> dict[str, Any]:
    """SAEDashboard's batch: ``NeuronpediaDashboardBatch.to_dict()`` and ``sae_id_suffix``."""
    return {
        "model_id": naming.model,
        "layer": naming.layer,
        "sae_set": naming.sae_set,
        "features": [saedashboard_feature(d, corpus, naming) for d in datas],
        "sae_id_suffix": naming.suffix,
    }


def import_tables(
    datas: list[dict[str, Any]], corpus: dict[str, Any], naming: Naming, created_at: str
) -> dict[str, list[dict[str, Any]]]:
    """Neuronpedia's import tables by file (relative to DIR/<model>/<source>/): the
    metadata rows SAEDashboard's ``neuronpedia_export.py`` writes beside the features
    and activations, filled from what the warehouse knows."""
    owner = "sae-warehouse"
    return {
        "release.jsonl": [{
            "name": naming.sae_set, "description": f"{naming.sae_set} (exported by sae-warehouse)",
            "creatorName": owner, "creatorId": naming.creator_id, "visibility": "PUBLIC",
            "isNewUi": False, "featured": False, "descriptionShort": naming.sae_set, "urls": [],
            "creatorEmail": None, "creatorNameShort": owner, "defaultSourceSetName": None,
            "defaultSourceId": None, "defaultUmapSourceIds": [], "createdAt": created_at,
        }],
        "model.jsonl": [{
            "id": naming.model, "instruct": naming.model.endswith("-it"), "creatorId": naming.creator_id,
            "displayNameShort": naming.model, "displayName": naming.model, "tlensId": None, "dimension": None,
            "visibility": "PUBLIC", "defaultSourceSetName": None, "defaultSourceId": None,
            "inferenceEnabled": False, "layers": 0, "neuronsPerLayer": 0, "createdAt": created_at,
            "owner": owner, "updatedAt": created_at, "website": None,
        }],
        "sourceset.jsonl": [{
            "modelId": naming.model, "name": naming.sae_set, "creatorId": naming.creator_id,
            "hasDashboards": True, "visibility": "PUBLIC", "description": naming.sae_set, "type": "",
            "creatorName": owner, "urls": [], "creatorEmail": None, "releaseName": naming.sae_set,
            "defaultOfModelId": None, "defaultRange": 1, "defaultShowBreaks": True, "showDfa": False,
            "showCorrelated": False, "showHeadAttribution": False, "showUmap": False, "createdAt": created_at,
        }],
        "source.jsonl": [{
            "id": naming.source, "modelId": naming.model, "setName": naming.sae_set,
            "creatorId": naming.creator_id, "hasDashboards": True, "inferenceEnabled": False,
            "inferenceHosts": [], "saelensConfig": None, "saelensRelease": None, "saelensSaeId": None,
            "hfRepoId": None, "hfFolderId": None, "visibility": "PUBLIC", "defaultOfModelId": None,
            "hasUmap": False, "hasUmapLogSparsity": False, "hasUmapClusters": False,
            "num_prompts": corpus["n_prompts"], "num_tokens_in_prompt": corpus["max_prompt_tokens"],
            "dataset": naming.dataset or None, "notes": None, "createdAt": created_at,
        }],
        "features/batch-0.jsonl.gz": [neuron_row(d, naming, created_at) for d in datas],
        "activations/batch-0.jsonl.gz": [a for d in datas for a in activation_rows(d, naming, created_at)],
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _gzip(data: bytes) -> bytes:
    """gzip without a timestamp or name, so the same export is the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=5, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def write_import_dir(tables: dict[str, list[dict[str, Any]]], out: Path, naming: Naming) -> Path:
    """Write the import tables under OUT/<model>/<source>/, all at once: they are written
    into a directory beside it and renamed into place, so an interrupted export leaves
    no half.  An existing <source> directory is refused (never merged into)."""
    from warehouse.errors import UsageError

    target = Path(out) / naming.model / naming.source
    if target.exists():
        raise UsageError(f"{target} already exists: remove it or export to another directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{naming.source}.saewh-", dir=target.parent))
    try:
        for name, rows in tables.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _jsonl(rows)
            path.write_bytes(_gzip(data) if name.endswith(".gz") else data)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the tables from the importing user
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _dataset_name(manifest: dict[str, Any]) -> str:
    """The NPZ's file name: where the prompts (review texts) come from."""
    path = (manifest.get("inputs") or {}).get("npz", {}).get("path")
    return Path(path).name if path else ""


def export_features(
    warehouse: Path,
    features: list[int],
    fmt: str = "neuronpedia",
    *,
    model: str = DEFAULT_MODEL,
    source: str | None = None,
    creator_id: str = DEFAULT_CREATOR_ID,
    dataset: str | None = None,
    output: Path | None = None,
    **options: int,
) -> str:
    """Features' dashboard data in `fmt`: the JSON text (neuronpedia, saedashboard), or,
    for neuronpedia-import, the tables written under `output` and a one-line note.
    Deterministic: the same warehouse and options give the same bytes."""
    from warehouse.db import open_snapshot
    from warehouse.errors import NotFound, UsageError
    from warehouse.reports import load_manifest

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not features:
        raise UsageError("--feature: give at least one feature")
    if fmt == "neuronpedia" and len(features) > 1:
        raise UsageError(
            "--format neuronpedia holds one feature; for several use saedashboard or neuronpedia-import"
        )
    if fmt == "neuronpedia-import" and output is None:
        raise UsageError("--format neuronpedia-import writes a directory: give it with --output/-o DIR")
    con, snapshot = open_snapshot(warehouse)
    try:
        manifest = load_manifest(snapshot)
        n_latents = int(manifest["sae"]["n_latents"])
        naming = Naming(model, source or default_source(n_latents), creator_id,
                        _dataset_name(manifest) if dataset is None else dataset)
        naming.check()
        for f in features:
            if not 0 <= f < n_latents:
                raise NotFound(f"unknown feature {f}: this warehouse's features are 0..{n_latents - 1}")
        datas = [feature_data(con, f, **options) for f in dict.fromkeys(features)]
        corpus = corpus_data(con)
    finally:
        con.close()
    created_at = str(manifest.get("built_at", ""))
    if fmt == "neuronpedia":
        out = to_neuronpedia(datas[0], naming, created_at)
    elif fmt == "saedashboard":
        out = to_saedashboard(datas, corpus, naming)
    else:
        assert output is not None
        target = write_import_dir(import_tables(datas, corpus, naming, created_at), output, naming)
        n_acts = sum(len(g["records"]) for d in datas for g in d["groups"])
        return f"{target}: {len(datas)} features, {n_acts} activations\n"
    return json.dumps(out, ensure_ascii=False, indent=1) + "\n"


def stats_result(warehouse: Path, arrow: bool = False) -> Result:
    """The macro feature_stats(): one row per feature, as a result to write."""
    from warehouse.reports import run_query

    return run_query(warehouse, "SELECT * FROM feature_stats() ORDER BY feature", arrow=arrow,
                     name="feature_stats")
