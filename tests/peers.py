"""The peers' formats, as their own source code defines them, for validating our exports.

Nothing here is our code's idea of the formats: field names, types and required keys
are transcribed from the peers' files (cited per schema, with the commit read), and
`convert_batch` ports the reading logic of Neuronpedia's converter line for line, so a
key it reads that we do not write fails here as it fails there (KeyError).  The peers'
packages do not install offline (SAEDashboard needs torch and TransformerLens;
neuronpedia-utils needs SAEDashboard), hence the transcription.

Sources (GitHub, read through the code index):

- N1  hijohnnylin/neuronpedia @ 008d5040ab97abd5c44d92d190b30034ad7a6e97
      apps/webapp/prisma/schema.prisma: `model Activation`, `model Neuron`, `model Source`
- N2  zazer0/neuronpedia (a fork of hijohnnylin/neuronpedia) @ 4d6d6c6de4a3c94486b75b7aa6121a0c7e0c9860
      utils/neuronpedia-utils/neuronpedia_utils/convert-saedashboard-to-neuronpedia-export.py
      (`main`, `process_data`);
      db_models/{activation,feature,source}.py @ ab1e24c1d6324f52a08419aa8479dd47bac52ca3
- S1  jbloomAus/SAEDashboard @ 234ea3211ce7dbf84d101c4e8bfe844c3903b16a
      sae_dashboard/neuronpedia/neuronpedia_dashboard.py: `NeuronpediaDashboardActivation`,
      `NeuronpediaDashboardFeature`, `NeuronpediaDashboardBatch` (their `__init__` keyword
      arguments: what `Batch(**json)` accepts)
- S2  jbloomAus/SAEDashboard @ 3ea1249ac0e31c3f8433c6c270c40d4e3bec9169
      sae_dashboard/neuronpedia/neuronpedia_export.py: the import layout
      (`{model}/{source_id}/{release,model,sourceset,source}.jsonl`, `features/*.jsonl.gz`,
      `activations/*.jsonl.gz`), its inlined dataclasses (Feature adds `sourceSetName`),
      `_process_batch` (reads `sae_id_suffix` with .get, the rest as N2)
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# ---------------------------------------------------------------- Neuronpedia (N1, N2, S2)

# prisma field -> type; "?" = nullable, "[]" = list.  Only the columns an import row
# carries (relations are not columns).
PRISMA_ACTIVATION = {
    "id": "String", "tokens": "String[]", "dataIndex": "String?", "index": "String", "layer": "String",
    "modelId": "String", "dataSource": "String?", "maxValue": "Float", "maxValueTokenIndex": "Int",
    "minValue": "Float", "values": "Float[]", "dfaValues": "Float[]", "dfaTargetIndex": "Int?",
    "dfaMaxValue": "Float?", "zQIndices": "Int[]", "zKIndices": "Int[]", "zValues": "Float[]",
    "creatorId": "String", "createdAt": "DateTime", "lossValues": "Float[]",
    "logitContributions": "String?", "binMin": "Float?", "binMax": "Float?", "binContains": "Float?",
    "qualifyingTokenIndex": "Int?",
}
PRISMA_NEURON = {
    "modelId": "String", "layer": "String", "index": "String", "sourceSetName": "String?",
    "creatorId": "String?", "createdAt": "DateTime", "maxActApprox": "Float?", "hasVector": "Boolean",
    "vector": "Float[]", "vectorLabel": "String?", "vectorDefaultSteerStrength": "Float?",
    "hookName": "String?", "topkCosSimIndices": "Int[]", "topkCosSimValues": "Float[]",
    "neuron_alignment_indices": "Int[]", "neuron_alignment_values": "Float[]",
    "neuron_alignment_l1": "Float[]", "correlated_neurons_indices": "Int[]",
    "correlated_neurons_pearson": "Float[]", "correlated_neurons_l1": "Float[]",
    "correlated_features_indices": "Int[]", "correlated_features_pearson": "Float[]",
    "correlated_features_l1": "Float[]", "neg_str": "String[]", "neg_values": "Float[]",
    "pos_str": "String[]", "pos_values": "Float[]", "frac_nonzero": "Float",
    "freq_hist_data_bar_heights": "Float[]", "freq_hist_data_bar_values": "Float[]",
    "logits_hist_data_bar_heights": "Float[]", "logits_hist_data_bar_values": "Float[]",
    "decoder_weights_dist": "Float[]", "umap_cluster": "Int?", "umap_log_feature_sparsity": "Float?",
    "umap_x": "Float?", "umap_y": "Float?",
}
PRISMA_SOURCE = {
    "id": "String", "modelId": "String", "hasDashboards": "Boolean", "inferenceEnabled": "Boolean",
    "saelensConfig": "Json?", "saelensRelease": "String?", "saelensSaeId": "String?", "hfRepoId": "String?",
    "hfFolderId": "String?", "visibility": "Visibility", "defaultOfModelId": "String?", "setName": "String",
    "creatorId": "String", "hasUmap": "Boolean", "hasUmapLogSparsity": "Boolean",
    "hasUmapClusters": "Boolean",
    "num_prompts": "Int?", "num_tokens_in_prompt": "Int?", "dataset": "String?", "notes": "String?",
    "createdAt": "DateTime",
    # db_models/source.py (N2) and S2's Source also write this list, not a prisma column
    "inferenceHosts": "String[]",
}

# The import's dataclasses (N2 db_models, S2 inlined), constructed as `cls(**row)`:
# these fields have no default, so a row without one fails; a key not among the
# fields fails too.
DATACLASS_ACTIVATION_REQUIRED = ("id", "tokens", "index", "layer", "modelId", "maxValue",
                                 "maxValueTokenIndex", "minValue", "values", "creatorId")
DATACLASS_ACTIVATION_FIELDS = (*DATACLASS_ACTIVATION_REQUIRED, "dataSource", "dataIndex", "dfaValues",
                               "dfaTargetIndex", "dfaMaxValue", "createdAt", "lossValues",
                               "logitContributions", "binMin", "binMax", "binContains",
                               "qualifyingTokenIndex", "zIndices", "zValues")
DATACLASS_FEATURE_REQUIRED = ("modelId", "layer", "index")
DATACLASS_FEATURE_FIELDS = (
    *DATACLASS_FEATURE_REQUIRED, "creatorId", "createdAt", "maxActApprox", "hasVector", "vector",
    "vectorLabel", "vectorDefaultSteerStrength", "hookName", "topkCosSimIndices", "topkCosSimValues",
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
    "correlated_features_indices", "correlated_features_pearson", "correlated_features_l1", "neg_str",
    "neg_values", "pos_str", "pos_values", "frac_nonzero", "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
    "decoder_weights_dist", "sourceSetName",
)
DATACLASS_SOURCE_REQUIRED = ("id", "modelId", "setName", "creatorId")
# The import layout (S2's module docstring and export_neuronpedia_dashboards).
IMPORT_FILES = ("release.jsonl", "model.jsonl", "sourceset.jsonl", "source.jsonl")
IMPORT_SHARDS = {"features": "Neuron", "activations": "Activation"}

# ---------------------------------------------------------------- SAEDashboard (S1)

# keyword -> type of each __init__ (all have defaults: S1 accepts a partial object, so
# what makes a key required is the converter reading it, below).
SAED_BATCH = {"model_id": "String", "layer": "Int", "sae_set": "String", "features": "Json"}
SAED_FEATURE = {
    "feature_index": "Int", "neuron_alignment_indices": "Int[]", "neuron_alignment_values": "Float[]",
    "neuron_alignment_l1": "Float[]", "correlated_neurons_indices": "Int[]",
    "correlated_neurons_l1": "Float[]", "correlated_neurons_pearson": "Float[]",
    "correlated_features_indices": "Int[]", "correlated_features_l1": "Float[]",
    "correlated_features_pearson": "Float[]", "neg_str": "String[]", "neg_values": "Float[]",
    "pos_str": "String[]", "pos_values": "Float[]", "frac_nonzero": "Float",
    "freq_hist_data_bar_values": "Float[]", "freq_hist_data_bar_heights": "Float[]",
    "logits_hist_data_bar_heights": "Float[]", "logits_hist_data_bar_values": "Float[]",
    "n_prompts_total": "Int", "n_tokens_in_prompt": "Int", "dataset": "String",
    "activations": "Json", "decoder_weights_dist": "Float[]",
}
SAED_ACTIVATION = {
    "bin_min": "Float", "bin_max": "Float", "bin_contains": "Float", "tokens": "String[]",
    "values": "Float[]", "qualifying_token_index": "Int", "dfa_values": "Float[]?",
    "dfa_maxValue": "Float?", "dfa_targetIndex": "Int?",
}

_CUID = re.compile(r"^c[a-z0-9]{24}$")  # cuid2, length 25 (N2: Cuid(length=25))


def _is(value: Any, typ: str) -> bool:
    if typ.endswith("?"):
        return value is None or _is(value, typ[:-1])
    if typ.endswith("[]"):
        return isinstance(value, list) and all(_is(v, typ[:-2]) for v in value)
    if typ == "String":
        return isinstance(value, str)
    if typ == "Int":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
    if typ == "Float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "Boolean":
        return isinstance(value, bool)
    if typ == "DateTime":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    if typ == "Visibility":
        return value in ("PUBLIC", "UNLISTED", "PRIVATE")
    if typ == "Json":
        return True
    raise AssertionError(f"unknown schema type {typ}")


def problems(row: dict[str, Any], schema: dict[str, str], required: tuple[str, ...] = (),
             allowed: tuple[str, ...] | None = None) -> list[str]:
    """What is wrong with `row` against `schema`: unknown keys, missing required keys,
    values of the wrong type (empty: it validates)."""
    if allowed is None:
        out = [f"unknown key {k!r}" for k in row if k not in schema]
    else:
        out = [f"key {k!r} is not a field of the importer's dataclass" for k in row if k not in allowed]
    out += [f"missing {k!r}" for k in required if k not in row]
    out += [f"{k}={row[k]!r} is not {t}" for k, t in schema.items() if k in row and not _is(row[k], t)]
    return out


def check_activation_row(row: dict[str, Any]) -> list[str]:
    out = problems(row, PRISMA_ACTIVATION, DATACLASS_ACTIVATION_REQUIRED, DATACLASS_ACTIVATION_FIELDS)
    if "id" in row and not _CUID.match(str(row["id"])):
        out.append(f"id {row['id']!r} is not a 25-character cuid")
    return out


def check_neuron_row(row: dict[str, Any]) -> list[str]:
    return problems(row, PRISMA_NEURON, DATACLASS_FEATURE_REQUIRED, DATACLASS_FEATURE_FIELDS)


# ---------------------------------------------------------------- the converter (N2), ported

def source_id(layer_num: int, source_set: str, suffix: str | None) -> str:
    """N2 `main`/`process_data`: str(layer_num) + "-" + set + ("__" + suffix if suffix else "")."""
    return str(layer_num) + "-" + source_set + ("__" + suffix if suffix else "")


def convert_batch(batch_data: dict[str, Any], source_set_name: str, model_name: str | None = None,
                  zero_out_bos_token: bool = False) -> tuple[list[dict], list[dict]]:
    """N2 `process_data` without the files: (Feature rows, Activation rows) as dicts.
    Every `batch_data[...]` / `feature_data[...]` / `activation_data[...]` read is the
    converter's own (a missing key raises KeyError as there); ids, creator and time are
    placeholders (the converter draws them fresh)."""
    model_id = model_name if model_name else batch_data["model_id"]
    layer_num = batch_data["layer"]
    source_suffix = batch_data["sae_id_suffix"]
    sid = source_id(layer_num, source_set_name, source_suffix)
    activations: list[dict] = []
    features: list[dict] = []
    for feature_data in batch_data["features"]:
        new_feature = {
            "modelId": model_id, "layer": sid, "index": feature_data["feature_index"],
            "hasVector": "vector" in feature_data and len(feature_data["vector"]) > 0,
            "vector": feature_data["vector"] if "vector" in feature_data else [],
            "neuron_alignment_indices": feature_data["neuron_alignment_indices"],
            "neuron_alignment_values": feature_data["neuron_alignment_values"],
            "neuron_alignment_l1": feature_data["neuron_alignment_l1"],
            "correlated_neurons_indices": feature_data["correlated_neurons_indices"],
            "correlated_neurons_pearson": feature_data["correlated_neurons_pearson"],
            "correlated_neurons_l1": feature_data["correlated_neurons_l1"],
            "correlated_features_indices": feature_data["correlated_features_indices"],
            "correlated_features_pearson": feature_data["correlated_features_pearson"],
            "correlated_features_l1": feature_data["correlated_features_l1"],
            "neg_str": feature_data["neg_str"],
            "neg_values": feature_data["neg_values"],
            "pos_str": feature_data["pos_str"],
            "pos_values": feature_data["pos_values"],
            "frac_nonzero": feature_data["frac_nonzero"],
            "freq_hist_data_bar_heights": feature_data["freq_hist_data_bar_heights"],
            "freq_hist_data_bar_values": feature_data["freq_hist_data_bar_values"],
            "logits_hist_data_bar_heights": feature_data["logits_hist_data_bar_heights"],
            "logits_hist_data_bar_values": feature_data["logits_hist_data_bar_values"],
            "decoder_weights_dist": feature_data["decoder_weights_dist"],
        }
        max_act_approx = 0
        for activation_data in feature_data["activations"]:
            if zero_out_bos_token:
                for i, token in enumerate(activation_data["tokens"]):
                    if token in ["<bos>"] and activation_data["values"][i] != 0:
                        activation_data["values"][i] = 0
            max_value = max(activation_data["values"])
            max_value_token_index = activation_data["values"].index(max_value)
            if max_value > max_act_approx:
                max_act_approx = max_value
            activations.append({
                "tokens": activation_data["tokens"], "modelId": model_id, "layer": sid,
                "index": feature_data["feature_index"], "maxValue": max_value,
                "maxValueTokenIndex": max_value_token_index, "minValue": min(activation_data["values"]),
                "values": activation_data["values"],
                "dfaValues": activation_data["dfa_values"] if "dfa_values" in activation_data else [],
                "dfaTargetIndex": activation_data.get("dfa_targetIndex"),
                "dfaMaxValue": activation_data.get("dfa_maxValue"),
                "lossValues": activation_data["loss_values"] if "loss_values" in activation_data else [],
                "logitContributions": activation_data.get("logit_contributions"),
                "binContains": activation_data["bin_contains"],
                "binMax": activation_data["bin_max"],
                "binMin": activation_data["bin_min"],
                "qualifyingTokenIndex": activation_data["qualifying_token_index"],
                "dataIndex": None,
                "dataSource": None,
            })
        new_feature["maxActApprox"] = max_act_approx
        features.append(new_feature)
    return features, activations


def saedashboard_problems(batch: dict[str, Any]) -> list[str]:
    """The batch against S1's constructors' keywords and types (plus `sae_id_suffix`)."""
    out = problems({k: v for k, v in batch.items() if k != "sae_id_suffix"}, SAED_BATCH,
                   tuple(SAED_BATCH))
    if not _is(batch.get("sae_id_suffix", "missing"), "String?"):
        out.append("sae_id_suffix must be a string or null")
    for f in batch.get("features", []):
        out += problems(f, SAED_FEATURE, tuple(SAED_FEATURE))
        for a in f.get("activations", []):
            out += problems(a, SAED_ACTIVATION, ("bin_min", "bin_max", "bin_contains", "tokens", "values",
                                                 "qualifying_token_index"))
            if len(a.get("tokens", [])) != len(a.get("values", [])):
                out.append("tokens and values differ in length")
    return out
