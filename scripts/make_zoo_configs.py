"""Write llm4msr_tf/configs/zoo/<dataset>/<backbone>.json: one ready ModelConfig per dataset x backbone.

Run from the repository root: ``python scripts/make_zoo_configs.py``. Every file lists the
backbone's full constructor arguments (from its ``get_config``), so a copied file shows every
knob. tests/test_backbones.py checks that the committed files equal what this script writes.
"""
import json
import os
import sys
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO_DIR = os.path.join(ROOT, "llm4msr_tf", "configs", "zoo")

# Scenario-Wise-Rec's MovieLens settings (scripts/run_movielens_rank_multi_domain.py) where it has
# the model; HiNet from its official code (github.com/mrchor/HiNet); PEPNet = its EPNet/PPNet widths.
SWR_MOVIELENS: Dict[str, Dict[str, Any]] = {
    "shared_bottom": {"bottom_units": [128], "tower_units": [8]},
    "mmoe": {"num_experts": 3, "expert_units": [16], "tower_units": [8]},
    "ple": {"num_levels": 1, "num_shared_experts": 1, "num_specific_experts": 2, "expert_units": [16],
            "tower_units": [8]},
    "star": {"hidden_units": [128, 64, 32], "aux_units": [32]},
    "sar_net": {"num_shared_experts": 8, "num_specific_experts": 2, "expert_units": [16], "tower_units": [32, 32]},
    "m2m": {"num_experts": 4, "expert_units": 16, "num_transformer_layers": 2, "num_heads": 4,
            "transformer_ff_units": 16, "tower_units": [64, 32]},
    "adasparse": {"hidden_units": [32, 32], "form": "fusion", "epsilon": 0.01, "alpha": 1.0, "delta_alpha": 1e-4,
                  "beta": 2.0, "dropout": 0.2},
    "adaptdhm": {"hidden_units": [64, 64], "num_clusters": 3, "beta": 0.9},
    "epnet": {"hidden_units": [128, 64, 32]},
    "ppnet": {"hidden_units": [128, 64, 32]},
    "pepnet": {"hidden_units": [128, 64, 32]},
    "hinet": {"num_shared_subexperts": 5, "num_specific_subexperts": 5, "subexpert_units": [128, 64],
              "san_units": [128, 64], "num_task_experts": 2, "num_task_shared_experts": 2,
              "task_expert_units": [128, 64], "tower_units": [128, 64]},
    "m3oe": {"star_units": [128, 64], "expert_units": [32], "num_experts": 4, "tower_units": 32},
    "hamur": {"hidden_units": [256, 128], "hyper_units": [64], "rank": 35, "adapter_units": 32},
}

# The synthetic world is tiny (400 users, 300 items): small widths train in seconds.
SYNTHETIC: Dict[str, Dict[str, Any]] = {
    "shared_bottom": {"bottom_units": [32], "tower_units": [8]},
    "mmoe": {"num_experts": 3, "expert_units": [16], "tower_units": [8]},
    "ple": {"num_levels": 1, "num_shared_experts": 1, "num_specific_experts": 1, "expert_units": [16],
            "tower_units": [8]},
    "star": {"hidden_units": [32, 16], "aux_units": [8]},
    "sar_net": {"num_shared_experts": 4, "num_specific_experts": 1, "expert_units": [16], "tower_units": [16]},
    "m2m": {"num_experts": 2, "expert_units": 8, "num_transformer_layers": 1, "num_heads": 2,
            "transformer_ff_units": 8, "tower_units": [16]},
    "adasparse": {"hidden_units": [32, 16], "dropout": 0.1},
    "adaptdhm": {"hidden_units": [32], "num_clusters": 3},
    "epnet": {"hidden_units": [32, 16]},
    "ppnet": {"hidden_units": [32, 16]},
    "pepnet": {"hidden_units": [32, 16]},
    "hinet": {"num_shared_subexperts": 2, "num_specific_subexperts": 2, "subexpert_units": [32],
              "san_units": [16], "num_task_experts": 1, "num_task_shared_experts": 1,
              "task_expert_units": [32], "tower_units": [16]},
    "m3oe": {"star_units": [32, 16], "expert_units": [16], "num_experts": 2, "tower_units": 16},
    "hamur": {"hidden_units": [32, 16], "hyper_units": [16], "rank": 8, "adapter_units": 8},
}

ML_TRAIN = "--batch-size 4096 --epochs 30 --patience 1 (Scenario-Wise-Rec: batch 4096, Adam lr 1e-3)"
DATASETS: Dict[str, Dict[str, Any]] = {
    "movielens-1m-age": {
        "widths": SWR_MOVIELENS, "embedding_dim": 16, "learning_rate": 1e-3,
        "prepare": "llm4msr prepare --dataset movielens --source ML_1M_DIR --scenario-by age --split random",
        "train": ML_TRAIN,
        "note": "Scenario-Wise-Rec's protocol: 3 age scenarios (<25, 25-34, >=35), random 8:1:1 split.",
    },
    "movielens-1m-genre": {
        "widths": SWR_MOVIELENS, "embedding_dim": 16, "learning_rate": 1e-3,
        "prepare": "llm4msr prepare --dataset movielens --source ML_1M_DIR --scenario-by genre --split random",
        "train": ML_TRAIN,
        "note": "3 genre-family scenarios: users span scenarios, so user-level knowledge can transfer.",
    },
    "ml-100k": {
        "widths": SWR_MOVIELENS, "embedding_dim": 16, "learning_rate": 1e-3,
        "prepare": "llm4msr prepare --dataset movielens --source ML_100K_DIR --scenario-by age --split random",
        "train": "--batch-size 1024 --epochs 30 --patience 1 (80k training rows: smaller batches)",
        "note": "MovieLens-100K, age scenarios; the Scenario-Wise-Rec MovieLens widths.",
    },
    "synthetic": {
        "widths": SYNTHETIC, "embedding_dim": 8, "learning_rate": 3e-3,
        "prepare": "llm4msr prepare --dataset synthetic",
        "train": "--batch-size 256 --epochs 5",
        "note": "Seeded synthetic world with 3 scenarios; small widths for a quick end-to-end run.",
    },
}


def backbone_params(name: str, widths: Dict[str, Any], embedding_dim: int) -> Dict[str, Any]:
    """The backbone's full constructor arguments (minus Keras' own keys) for the given widths."""
    import llm4msr_tf  # noqa: F401
    from llm4msr_tf import backbones

    params = dict(widths)
    if name == "m2m":
        params["field_dim"] = embedding_dim  # attend over the feature embeddings
    cfg = backbones.create(name, 3, **params).get_config()
    for key in ("name", "trainable", "dtype", "num_scenarios"):
        cfg.pop(key, None)
    return cfg


def configs() -> Dict[str, Dict[str, Any]]:
    """{"dataset/backbone": file content} for every dataset x backbone."""
    out = {}
    for dataset, d in DATASETS.items():
        for name in sorted(d["widths"]):
            out[f"{dataset}/{name}"] = {
                "_about": f"{name} on {dataset}. {d['note']}",
                "_prepare": d["prepare"],
                "_train": f"llm4msr train --model-config {dataset}/{name} --data DATA_DIR --knowledge KDIR "
                          f"(or --no-knowledge) --out MDIR {d['train']}",
                "backbone": name,
                "backbone_params": backbone_params(name, d["widths"][name], d["embedding_dim"]),
                "embedding_dim": d["embedding_dim"],
                "learning_rate": d["learning_rate"],
            }
    return out


def main(argv: List[str]) -> int:
    """Write every config file (and remove stale ones)."""
    wanted = configs()
    for key, content in wanted.items():
        path = os.path.join(ZOO_DIR, *key.split("/")) + ".json"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
            f.write("\n")
    print(f"wrote {len(wanted)} configs under {ZOO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
