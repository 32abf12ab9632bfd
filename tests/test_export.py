"""`saewh export feature` in the peers' formats, checked against the peers' own schemas
and the converter's reading logic (tests/peers.py: transcribed from their source,
files and commits cited there), and every value against the brute-force oracle."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from peers import (
    DATACLASS_SOURCE_REQUIRED,
    IMPORT_FILES,
    IMPORT_SHARDS,
    PRISMA_SOURCE,
    check_activation_row,
    check_neuron_row,
    convert_batch,
    problems,
    saedashboard_problems,
    source_id,
)
from test_analysis import N_LATENTS, f32, make_oracle
from typer.testing import CliRunner

from etl.build import build_warehouse
from etl.synth import synthesize
from warehouse.cli import ExitCode, app

SOURCE = "3-res-4k__trial1"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    res = synthesize(base / "inputs", n_reviews=300, seed=1, n_latents=N_LATENTS)
    build_warehouse(res.h5_path, res.npz_path, base / "wh", n_latents=N_LATENTS, workers=2)
    return {"path": base / "wh", "o": make_oracle(res.h5_path, res.npz_path, N_LATENTS),
            "planted": res.planted, "npz": res.npz_path}


def _run(args: list):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    env = {"COLUMNS": "120", "NO_COLOR": "1", "SAEWH_WAREHOUSE": None}
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def _ok(args: list) -> str:
    res = _run(args)
    assert res.exit_code == 0, (args, res.exit_code, res.stderr)
    return res.stdout


def _features(synth) -> list[int]:
    p = synth["planted"]
    return [p["salsa"], p["one_star"], p["dead"]]


OPTS = ["--k", 4, "--intervals", 5, "--n", 2, "--bins", 7]


def _window(o, t: int, before: int = 20, after: int = 10) -> list[int]:
    """The oracle's window: the review's H5 tokens within [position - before, position + after]."""
    same = np.flatnonzero(o.tok_review == o.tok_review[t])
    pos = int(np.searchsorted(same, t))
    return [int(p) for p in same[max(0, pos - before): pos + after + 1]]


def _check_values(o, f: int, tokens: list, values: list, q: int, t: int) -> None:
    window = _window(o, t)
    assert values == [f32(o.value(p, f)) for p in window]
    assert tokens == [o.tok_text[p] or "" for p in window]
    assert values[q] == f32(o.value(t, f)) > 0


def test_saedashboard_batch_is_what_the_converter_reads(synth):
    o = synth["o"]
    feats = _features(synth)
    args = ["export", "feature", *sum((["--feature", f] for f in feats), []), *OPTS,
            "--format", "saedashboard", "--source", SOURCE, "--model", "gpt2-small", "-w", synth["path"]]
    batch = json.loads(_ok(args))
    assert saedashboard_problems(batch) == []
    assert (batch["model_id"], batch["layer"], batch["sae_set"], batch["sae_id_suffix"]) == (
        "gpt2-small", 3, "res-4k", "trial1")
    # Neuronpedia's converter, given the set name a user would give it, names the same source
    converted_features, converted = convert_batch(json.loads(json.dumps(batch)), "res-4k")
    assert {a["layer"] for a in converted} == {SOURCE} == {f["layer"] for f in converted_features}
    assert source_id(batch["layer"], "res-4k", batch["sae_id_suffix"]) == SOURCE
    assert [f["feature_index"] for f in batch["features"]] == feats
    for feat in batch["features"]:
        f = feat["feature_index"]
        assert feat["n_prompts_total"] == int(o.has_tokens.sum())
        assert feat["n_tokens_in_prompt"] == int(o.n_tok.max())  # the longest prompt, not the window
        assert feat["dataset"] == Path(synth["npz"]).name
        col = o.cols[:, f]
        assert feat["frac_nonzero"] == pytest.approx(col.nnz / o.n_tokens, rel=1e-12)
        assert sum(feat["freq_hist_data_bar_heights"]) == col.nnz
        top = [a for a in feat["activations"] if a["bin_min"] == -1]
        assert [a["values"][a["qualifying_token_index"]] for a in top] == [
            f32(x) for x in np.sort(col.data)[::-1][: len(top)]]
        assert len(top) == min(4, col.nnz)
    # every record's values are the oracle's, on the oracle's window
    salsa = batch["features"][0]
    recs = [a for a in converted if a["index"] == salsa["feature_index"]]
    assert len(recs) == len(salsa["activations"]) > 4
    ours = json.loads(_ok(["export", "feature", "--feature", feats[0], *OPTS, "--source", SOURCE,
                           "-w", synth["path"]]))["activations"]
    for conv, mine in zip(recs, ours):
        # what the converter computes from the batch is what we serve directly
        for key in ("tokens", "values", "maxValue", "maxValueTokenIndex", "minValue", "binMin", "binMax",
                    "binContains", "qualifyingTokenIndex", "layer"):
            assert conv[key] == mine[key], key
        _check_values(o, feats[0], mine["tokens"], mine["values"], mine["qualifyingTokenIndex"],
                      int(mine["dataIndex"]))


def test_the_validator_catches_what_the_peers_reject(synth):
    """The old export's gaps, each caught the way the peers' code catches it."""
    f = synth["planted"]["salsa"]
    batch = json.loads(_ok(["export", "feature", "--feature", f, "--k", 2, "--n", 0, "--format",
                            "saedashboard", "-w", synth["path"]]))
    no_suffix = {k: v for k, v in batch.items() if k != "sae_id_suffix"}
    with pytest.raises(KeyError, match="sae_id_suffix"):
        convert_batch(no_suffix, "res")
    del batch["features"][0]["activations"][0]["qualifying_token_index"]
    with pytest.raises(KeyError, match="qualifying_token_index"):
        convert_batch(batch, "res")
    assert saedashboard_problems(batch)
    row = json.loads(_ok(["export", "feature", "--feature", f, "--k", 1, "--n", 0, "-w", synth["path"]]))
    act = row["activations"][0]
    assert check_activation_row(act) == []
    assert check_activation_row({**act, "metadata": {}})  # not a field of the importer's dataclass
    assert check_activation_row({k: v for k, v in act.items() if k != "creatorId"})
    assert check_activation_row({**act, "index": int(act["index"])})  # prisma: String
    assert check_activation_row({**act, "id": "abc"})


def test_neuronpedia_feature_values_are_exact(synth):
    o = synth["o"]
    f = synth["planted"]["salsa"]
    args = ["export", "feature", "--feature", f, *OPTS, "-w", synth["path"]]
    data = json.loads(_ok(args))
    acts = data.pop("activations")
    assert check_neuron_row(data) == []
    assert data["layer"] == "0-res-4k" and data["modelId"] == "gpt2-small" and data["index"] == str(f)
    col = o.cols[:, f]
    assert data["maxActApprox"] == f32(col.data.max())
    assert sum(data["freq_hist_data_bar_heights"]) == col.nnz and len(data["freq_hist_data_bar_values"]) == 7
    ids = [a["id"] for a in acts]
    assert len(set(ids)) == len(ids)
    for a in acts:
        assert check_activation_row(a) == []
        assert (a["modelId"], a["layer"], a["index"]) == (data["modelId"], data["layer"], data["index"])
        t, q = int(a["dataIndex"]), a["qualifyingTokenIndex"]
        _check_values(o, f, a["tokens"], a["values"], q, t)
        assert a["maxValue"] == max(a["values"]) == a["values"][a["maxValueTokenIndex"]]
        assert a["values"].index(a["maxValue"]) == a["maxValueTokenIndex"]
        if a["binMin"] != -1:
            assert a["binMin"] <= a["values"][q] <= a["binMax"] and 0 < a["binContains"] <= 1
    assert _ok(args) == json.dumps({**data, "activations": acts}, ensure_ascii=False, indent=1) + "\n"


def _read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_neuronpedia_import_tables(synth, tmp_path):
    feats = _features(synth)
    args = ["export", "feature", *sum((["--feature", f] for f in feats), []), *OPTS,
            "--format", "neuronpedia-import", "--source", SOURCE, "--creator-id", "c" + "0" * 24]
    res = _run([*args, "-o", tmp_path / "a", "-w", synth["path"]])
    assert res.exit_code == 0 and res.stdout == "", res.stderr
    root = tmp_path / "a" / "gpt2-small" / SOURCE
    assert res.stderr.startswith(f"saewh: wrote {root}: 3 features, ")
    for name in IMPORT_FILES:
        assert len(_read_rows(root / name)) == 1
    (source,) = _read_rows(root / "source.jsonl")
    assert problems(source, PRISMA_SOURCE, DATACLASS_SOURCE_REQUIRED) == []
    assert (source["id"], source["setName"], source["num_tokens_in_prompt"]) == (
        SOURCE, "res-4k", int(synth["o"].n_tok.max()))
    shards = {d: sorted((root / d).glob("*.jsonl.gz")) for d in IMPORT_SHARDS}
    neurons = [r for p in shards["features"] for r in _read_rows(p)]
    acts = [r for p in shards["activations"] for r in _read_rows(p)]
    assert [n["index"] for n in neurons] == [str(f) for f in feats]
    assert all(check_neuron_row(n) == [] for n in neurons)
    assert all(check_activation_row(a) == [] for a in acts)
    assert len({a["id"] for a in acts}) == len(acts)
    assert {a["creatorId"] for a in acts} == {"c" + "0" * 24}
    # the flat rows are what Neuronpedia's converter makes of our SAEDashboard batch
    batch = json.loads(_ok([*args[:-6], "--format", "saedashboard", "--source", SOURCE, "-w", synth["path"]]))
    conv_features, conv = convert_batch(batch, "res-4k")
    assert len(conv) == len(acts)
    for c, a in zip(conv, acts):
        assert {k: c[k] for k in ("tokens", "values", "maxValue", "maxValueTokenIndex", "minValue", "binMin",
                                  "binMax", "binContains", "qualifyingTokenIndex", "layer", "modelId")} == {
            k: a[k] for k in ("tokens", "values", "maxValue", "maxValueTokenIndex", "minValue", "binMin",
                              "binMax", "binContains", "qualifyingTokenIndex", "layer", "modelId")}
        assert str(c["index"]) == a["index"]
    for c, n in zip(conv_features, neurons):
        assert c["maxActApprox"] == n["maxActApprox"]
    # deterministic: the same export is the same bytes
    assert _run([*args, "-o", tmp_path / "b", "-w", synth["path"]]).exit_code == 0
    for p in sorted(root.rglob("*")):
        if p.is_file():
            other = tmp_path / "b" / p.relative_to(tmp_path / "a")
            assert other.read_bytes() == p.read_bytes(), p
    # never merged into an existing export
    again = _run([*args, "-o", tmp_path / "a", "-w", synth["path"]])
    assert again.exit_code == int(ExitCode.USAGE) and "already exists" in again.stderr


@pytest.mark.parametrize(
    "extra, code",
    [
        (["--source", "res-24k"], ExitCode.USAGE),
        (["--source", "0-res 24k"], ExitCode.USAGE),
        (["--model", "gpt2 small"], ExitCode.USAGE),
        (["--feature", 1], ExitCode.USAGE),  # two features in the one-feature format
        (["--format", "neuronpedia-import"], ExitCode.USAGE),  # without -o DIR
        (["--feature", 10**6, "--format", "saedashboard"], ExitCode.NOT_FOUND),
    ],
)
def test_bad_export_options(synth, extra, code):
    res = _run(["export", "feature", "--feature", synth["planted"]["salsa"], *extra, "-w", synth["path"]])
    assert res.exit_code == int(code), res.stderr
    assert res.stdout == "" and res.stderr.startswith("saewh: error: ") and res.stderr.count("\n") == 1
