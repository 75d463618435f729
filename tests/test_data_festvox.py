"""The festvox corpus family (the next confirmation family): independence from the other generators, presets
(labels, priors, regions), a tiny corpus per preset (schema, priors, speakers), determinism, label noise, the
emotion model's rendering, and the clear errors."""

from __future__ import annotations

import ast
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emodna_hf.data import FESTVOX_PRESETS, make_festvox_corpus
from emodna_hf.data.labels import get_label_map
from emodna_hf.data.synthetic import corpus, make_synthetic_corpus
from emodna_hf.data.synthetic import festvox as festvox
from emodna_hf.data.synthetic import festvox_render as render


def _missing(preset: str) -> list[str]:
    missing = [tool for tool in ("festival", "sox") if shutil.which(tool) is None]
    voices = Path("/usr/share/festival/voices")  # Debian's festvox packages install here
    return missing + [f"voice {v}" for v in FESTVOX_PRESETS[preset].voices if not any(voices.glob(f"*/{v}"))]


def needs(preset: str):
    missing = _missing(preset)
    packages = festvox.LANGUAGES[FESTVOX_PRESETS[preset].language][2]
    return pytest.mark.skipif(bool(missing), reason=f"{preset} needs {missing}: apt-get install festival sox "
                              f"libsox-fmt-all {packages}")


def arrays(dataset) -> list[np.ndarray]:
    return [np.asarray(a["array"]) for a in dataset["audio"]]


def test_the_family_imports_nothing_from_the_other_generators():
    """Only `corpus.py` (the schema and the Arrow table every generated corpus shares) and `storage.py`."""
    others = ("source_filter", "acoustics", "espeak", "flite")
    for module in ("festvox.py", "festvox_render.py"):
        tree = ast.parse((Path(festvox.__file__).parent / module).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported |= {node.module or ""} | {f"{node.module or ''}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        assert not {m for m in imported if any(g in part for part in m.split(".") for g in others)}, module


def test_presets_cover_the_shifts_of_real_corpora():
    label_map = {raw.casefold(): emotion for raw, emotion in get_label_map("synthetic").items()}
    presets = list(FESTVOX_PRESETS.values())
    for preset in presets:
        assert [label_map[raw.casefold()] for raw in preset.labels] == list(corpus.EMOTIONS)
        assert abs(sum(preset.priors) - 1) < 1e-9
        assert 320 <= preset.n_speakers * sum(corpus.class_counts(preset.priors, 4 * preset.n_per_class_per_speaker)) <= 400
        assert 4 <= preset.n_speakers <= 30 and 0.0 < preset.label_noise <= 0.15
    assert len({p.language for p in presets}) == 4 and len({p.sampling_rate for p in presets}) == 4
    assert any(len(set(p.priors)) == 1 for p in presets)  # balanced (acted)
    assert max(p.priors[2] for p in presets) >= 0.55  # mostly neutral (call centre)
    assert min(p.priors[3] for p in presets) <= 0.1 and min(p.priors[0] for p in presets) <= 0.1  # rare sad, angry
    # Class-conditional style: each emotional class sits at three or more places over the four corpora.
    for e in (0, 1, 3):
        assert len({p.centres[e] for p in presets}) >= 3, corpus.EMOTIONS[e]
    assert len({p.codec for p in presets}) == 4 and len({p.noise for p in presets}) == 3


def test_label_noise_moves_labels_to_the_nearest_other_class():
    preset = FESTVOX_PRESETS["synth-fi"]
    speaker = festvox._speaker(preset, 0, np.random.default_rng(0))
    for e in range(4):
        labels = [festvox._draw(preset, speaker, e, np.random.default_rng([e, k]))[1] for k in range(2000)]
        flipped = np.mean(np.asarray(labels) != e)
        assert abs(flipped - preset.label_noise) < 0.03, (e, flipped)
    # Anger, happiness and sadness flip mostly to neutral, their nearest neighbour in this corpus.
    angry = Counter(festvox._draw(preset, speaker, 0, np.random.default_rng([9, k]))[1] for k in range(2000))
    assert angry.most_common(2)[1][0] == 2


def test_display_rules_render_arousal_as_higher_faster_louder_speech():
    preset = FESTVOX_PRESETS["synth-cs"]
    speaker = festvox._speaker(preset, 0, np.random.default_rng(0))
    (r0, p0), (r1, p1) = (festvox._prosody(preset, "diphone", speaker, np.array([a, 0.0, 0.5]),
                                           np.random.default_rng(1)) for a in (0.0, 1.0))
    assert r1.f0_scale > r0.f0_scale * 2 ** (3 / 12) and r1.f0_range > r0.f0_range and r1.stretch < r0.stretch
    assert p1["level_db"] > p0["level_db"] + 5 and p1["effort_db"] > p0["effort_db"]
    # Unit selection ignores festival's prosody controls: f0 and tempo go to sox instead.
    r2, p2 = festvox._prosody(preset, "clunits", speaker, np.array([1.0, 0.0, 0.5]), np.random.default_rng(1))
    assert r2.f0_scale == 1.0 and p2["f0_st"] > speaker.f0_st + 3 and p2["tempo"] > 1.0
    # HTS: the engine's speed option for tempo (its -fm does nothing in festival 2.5), sox for f0.
    r3, p3 = festvox._prosody(preset, "hts", speaker, np.array([1.0, 0.0, 0.5]), np.random.default_rng(1))
    assert r3.hts_speed > 1.0 and p3["f0_st"] > speaker.f0_st + 3 and p3["tempo"] == 1.0


@pytest.mark.parametrize("name", sorted(FESTVOX_PRESETS))
def test_tiny_corpus_has_schema_priors_speakers_and_is_deterministic(name):
    missing = _missing(name)
    if missing:
        pytest.skip(f"{name} needs {missing}: apt-get install festival sox libsox-fmt-all "
                    f"{festvox.LANGUAGES[FESTVOX_PRESETS[name].language][2]}")
    preset = FESTVOX_PRESETS[name]
    first = make_festvox_corpus(name, seed=3, n_per_class_per_speaker=1, n_speakers=2)
    again = make_festvox_corpus(name, seed=3, n_per_class_per_speaker=1, n_speakers=2)
    other = make_festvox_corpus(name, seed=4, n_per_class_per_speaker=1, n_speakers=2)
    assert first.features == make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=1).features
    waves = arrays(first)
    assert all(np.array_equal(x, y) for x, y in zip(waves, arrays(again), strict=True))
    assert first._fingerprint == again._fingerprint != other._fingerprint
    assert not any(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(waves, arrays(other), strict=True))
    assert sorted(set(first["speaker"])) == ["spk00", "spk01"] and len(set(first["utt_id"])) == len(first)
    counts = corpus.class_counts(preset.priors, 4)
    assert len(first) == 2 * sum(counts) and set(first["emotion"]) <= set(preset.labels)
    for audio in first.with_format("numpy")["audio"]:
        assert audio["sampling_rate"] == preset.sampling_rate and audio["array"].dtype == np.float32
        assert 1.5 <= len(audio["array"]) / preset.sampling_rate <= 8.0
        assert 0.01 < np.abs(audio["array"]).max() < 1.0 and np.all(np.isfinite(audio["array"]))


@needs("synth-fi")
def test_priors_of_a_bigger_corpus_and_loading_through_the_cache(tmp_path):
    preset = FESTVOX_PRESETS["synth-fi"]
    corpus = make_synthetic_corpus("synth-fi", 0, 5, 2, cache_dir=tmp_path)  # 20 per speaker: 3/3/12/2 drawn
    assert any(tmp_path.glob("generated-*"))
    observed = Counter(corpus["emotion"])
    assert len(corpus) == 40 and set(observed) <= set(preset.labels)
    assert observed[preset.labels[2]] >= 20  # mostly neutral: 24 drawn, label noise moves a few either way
    again = make_festvox_corpus("synth-fi", 0, 5, 2, cache_dir=tmp_path)
    assert again._fingerprint == corpus._fingerprint


def test_codecs_keep_the_length_and_change_the_signal():
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox libsox-fmt-all)")
    rng = np.random.default_rng(0)
    for name, fs in (("gsm", 8000), ("vorbis", 22050), ("ms-adpcm", 16000)):
        x = 0.2 * np.sin(2 * np.pi * 220 * np.arange(fs) / fs) + 0.01 * rng.standard_normal(fs)
        y = render.codec(x, fs, name)
        assert len(y) == len(x) and np.all(np.isfinite(y)), name
        assert 0.001 < np.std(y - x) / np.std(x) < 1.5, name  # lossy
        np.testing.assert_array_equal(y, render.codec(x, fs, name))
    with pytest.raises(ValueError, match="8000 Hz"):
        render.codec(np.zeros(100), 16000, "gsm")


def test_unknown_presets_and_missing_tools_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="synth-ru"):
        make_festvox_corpus("synth-zz")
    with pytest.raises(ValueError, match="festvox"):
        make_synthetic_corpus("synth-zz")
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    render.version_line.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install festival"):
            make_festvox_corpus("synth-cs", n_per_class_per_speaker=1, n_speakers=1)
    finally:
        render.version_line.cache_clear()


@needs("synth-cs")
def test_festival_prosody_controls_reach_the_waveform():
    """The Int_Targets wrapper moves a diphone voice's f0 (level and range); Duration_Stretch its tempo."""
    pyworld = pytest.importorskip("pyworld")
    text = festvox.SENTENCES["cs"][0]
    readings = [render.Reading("czech_dita", text), render.Reading("czech_dita", text, f0_scale=1.4),
                render.Reading("czech_dita", text, f0_range=2.0), render.Reading("czech_dita", text, stretch=1.3)]
    stats = []
    for wave, fs in render.synthesise(readings, "iso-8859-2", {}):
        f0, _ = pyworld.dio(wave, fs)
        voiced = np.log2(f0[f0 > 0]) * 12
        stats.append((np.median(voiced), np.std(voiced), len(wave) / fs))
    plain, higher, wider, slower = stats
    assert higher[0] > plain[0] + 4 and wider[1] > 1.3 * plain[1] and slower[2] > 1.2 * plain[2]


def test_every_family_s_presets_pass_the_arguments_check():
    """A preset that generates must also pass the recipes' parse-time check (festvox presets were refused once)."""
    from emodna_hf.corpus_arguments import check_corpus_source
    from emodna_hf.data.synthetic import FAMILIES, preset_names

    assert set(FESTVOX_PRESETS) <= set(preset_names())
    for presets, _ in FAMILIES.values():
        for name in presets:
            assert check_corpus_source(name, f"synthetic:{name}", must_exist=False) == "synthetic"
