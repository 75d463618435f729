"""The benchmark helpers: the bar checks on known numbers, and the classical baselines on small corpora."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import check_bars  # noqa: E402


def _runs(method: str, values: dict[tuple[str, str], list[float]]) -> list[dict]:
    return [{"method": method, "source": s, "target": t, "seed": seed, "target_uar": v / 100}
            for (s, t), per_seed in values.items() for seed, v in enumerate(per_seed)]


def test_bars_are_computed_from_the_seed_means(tmp_path):
    runs = (_runs("emodna", {("a", "b"): [90, 92, 91], ("b", "a"): [80, 70, 81]})
            + _runs("egemaps_lr_corpus", {("a", "b"): [80, 80, 80], ("b", "a"): [74, 74, 74]})
            + _runs("mmd", {("a", "b"): [85, 85, 85], ("b", "a"): [78, 78, 78]})
            + _runs("no_decoupling", {("a", "b"): [93, 93, 93], ("b", "a"): [80, 80, 80]}))
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": runs}))
    report = check_bars.check(path, "emodna")
    # emodna seed means: 85, 81, 86 -> mean 84, std 2.65; range of b->a over seeds: 11.
    assert "| emodna: std over seeds | 2.65 | ≤ 2 | **no** |" in report
    assert "11.0 (b → a) | ≤ 10 | **no** |" in report
    assert "+7.0 (84.0 vs 77.0) | ≥ +5 | yes |" in report  # over the classical bar
    assert "+2.5 (best: mmd 81.5) | ≥ +3 | **no** |" in report
    assert "| no_decoupling − emodna | +2.5 (86.5 ± 0.0) | ≤ +2.6 | yes |" in report  # within one std


@pytest.mark.slow
def test_classical_baselines_on_small_corpora():
    import classical

    from emodna_hf.data import CorpusSpec, build_uda_data

    kwargs = {"n_per_class_per_speaker": 2, "n_speakers": 4}
    data = build_uda_data([CorpusSpec(name="synth-a", source="synthetic:synth-a", load_kwargs=kwargs)],
                          CorpusSpec(name="synth-b", source="synthetic:synth-b", load_kwargs=kwargs),
                          max_duration_s=1.0)
    records = {m: classical.run_classical(m, data, 16000) for m in classical.CLASSICAL_METHODS}
    for record in records.values():
        assert 0.0 <= record["target"]["uar"] <= 1.0
    assert "source" in records["egemaps_lr_corpus"] and "source" not in records["target_supervised"]
    # Per-corpus standardisation changes the target predictions; source metrics do not depend on it.
    assert records["egemaps_lr_corpus"]["source"] == records["egemaps_lr_source"]["source"]
    assert records["egemaps_lr_corpus"]["target"] != records["egemaps_lr_source"]["target"]
    speaker = classical.run_classical("egemaps_lr_corpus", data, 16000, speaker_normalization=True)
    assert speaker["target"] != records["egemaps_lr_corpus"]["target"]


def test_model_selection_analysis_on_known_candidates():
    import model_selection

    def point(method, step, uar, im, final=False, direction=("a", "b")):
        return {"method": method, "source": direction[0], "target": direction[1], "seed": 0, "step": step,
                "target_uar": uar, "target_im": im, "source_uar": 0.9, "final": final}

    points = [point("emodna", 1, 0.60, 0.2), point("emodna", 2, 0.80, 0.9, final=True),
              point("dann", 1, 0.50, 0.1), point("dann", 2, 0.70, 1.0, final=True)]
    row = model_selection.analyse(points)["target_im"]
    # target_im ranks 0.7 > 0.8 > 0.6 > 0.5 by criterion (dann-2, emodna-2, emodna-1, dann-1): ρ = 0.8.
    assert row["spearman"] == pytest.approx(0.8)
    assert row["picked_uar"] == pytest.approx(0.70) and row["oracle_uar"] == pytest.approx(0.80)
    assert row["selection_gap"] == pytest.approx(0.10) and row["median_uar"] == pytest.approx(0.65)
    assert row["default_uar"] == pytest.approx(0.80)  # emodna at the end of its budget
    assert row["method_choice_uar"] == pytest.approx(0.70) and row["method_oracle_uar"] == pytest.approx(0.80)
    assert row["checkpoint_choice_gain"] == pytest.approx(0.0)  # both runs' best checkpoint is their last
    # A constant criterion cannot rank: ρ is undefined, and the pick is the first candidate.
    assert np.isnan(model_selection.analyse(points)["source_uar"]["spearman"])
    assert "| `target_im` | higher | +0.80 | 70.0 | 10.0 |" in model_selection.report(points, ["test"])
