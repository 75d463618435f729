"""The benchmark helpers: the bar checks on known numbers, and the classical baselines on small corpora."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
