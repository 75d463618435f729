"""The flite/festival corpus family (the confirmation family): independence from the other generators,
presets (labels, priors, styles), determinism, the acoustics (styles, gain control, codecs), loading through
`CorpusSpec`, and a quick learnability check (eGeMAPS + logistic regression, leave-one-speaker-out)."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from emodna_hf.data import FLITE_PRESETS, CorpusSpec, load_corpus, make_flite_corpus
from emodna_hf.data.labels import get_label_map
from emodna_hf.data.synthetic import flite as flite_corpora
from emodna_hf.data.synthetic import flite_acoustics as acoustics
from emodna_hf.data.synthetic import make_synthetic_corpus
from emodna_hf.experiment import check_corpus_source

_MISSING = [tool for tool in ("flite", "sox") if shutil.which(tool) is None] + [
    module for module in ("pyworld", "pyroomacoustics") if importlib.util.find_spec(module) is None
]
needs_tools = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"missing {_MISSING}: apt-get install flite sox libsox-fmt-all; pip install 'emodna_hf[corpora]'",
)
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None or not Path("/usr/share/festival/voices/italian/pc_diphone").exists(),
    reason="festival with the Italian voices is not installed (apt-get install festival festvox-itapc16k "
    "festvox-italp16k)",
)
_PACKAGE = Path(flite_corpora.__file__).parent


def arrays(dataset) -> list[np.ndarray]:
    return [np.asarray(a["array"]) for a in dataset["audio"]]


def test_the_family_imports_nothing_from_the_other_generators():
    for module in ("flite.py", "flite_acoustics.py"):
        tree = ast.parse((_PACKAGE / module).read_text())
        imported = set()  # the last part of every module name imported (`from . import x` imports x)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported |= {node.module.rpartition(".")[2]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name.rpartition(".")[2] for alias in node.names}
        # What a generated corpus is (`corpus`: classes, columns, the Arrow table) is shared; no acoustics is.
        assert not imported & {"source_filter", "espeak", "acoustics", "synthetic"}, module


def test_presets_cover_the_shifts_of_real_corpora():
    label_map = {raw.casefold(): emotion for raw, emotion in get_label_map("synthetic").items()}
    presets = FLITE_PRESETS.values()
    for preset in presets:
        assert [label_map[raw.casefold()] for raw in preset.labels] == list(flite_corpora.EMOTIONS)
        assert abs(sum(preset.priors) - 1) < 1e-9
        for mixture in preset.styles:
            assert set(mixture) <= set(flite_corpora.STYLES) and abs(sum(mixture.values()) - 1) < 1e-9
        assert 250 <= preset.n_speakers * 4 * preset.n_per_class_per_speaker <= 500
    assert len({p.labels for p in presets}) == len(FLITE_PRESETS), "each preset has its own raw labels"
    assert max(p.priors[2] for p in presets) >= 0.55  # a call-centre-like, mostly neutral corpus
    assert min(p.priors[3] for p in presets) <= 0.1  # one with few sad
    assert any(len(set(p.priors)) == 1 for p in presets)  # and a balanced, acted one
    assert {min(p.n_speakers for p in presets), max(p.n_speakers for p in presets)} == {4, 20}
    assert len({p.sampling_rate for p in presets}) == 4 and len({p.language for p in presets}) == 2
    assert len({p.codec for p in presets}) >= 3 and len({p.gain_control for p in presets}) == 3
    # Class-conditional style: the dominant way of being angry (happy, sad) differs between corpora.
    for e in (0, 1, 3):
        assert len({max(p.styles[e], key=p.styles[e].get) for p in presets}) == 2, flite_corpora.EMOTIONS[e]
    assert any(p.ambiguous > 0 and len(p.styles[0]) > 1 for p in presets)  # natural: mixed, ambiguous
    assert any(p.ambiguous == 0 and all(len(m) == 1 for m in p.styles) for p in presets)  # acted


def test_class_counts_follow_priors_exactly():
    assert flite_corpora.class_counts((0.25,) * 4, 8) == [2, 2, 2, 2]
    assert flite_corpora.class_counts((0.16, 0.14, 0.58, 0.12), 20) == [3, 3, 12, 2]
    assert sum(flite_corpora.class_counts((0.3, 0.3, 0.32, 0.08), 13)) == 13


def test_scaled_styles_reach_neutral_at_zero():
    hot = flite_corpora.STYLES["hot"]
    assert acoustics.scaled(hot, 0.0) == flite_corpora.STYLES["plain"]
    assert acoustics.scaled(hot, 1.0) == hot
    half = acoustics.scaled(hot, 0.5)
    assert half.f0_st == hot.f0_st / 2 and half.range == pytest.approx(hot.range**0.5)


def _f0_and_level(wave: np.ndarray, fs: int) -> tuple[float, float]:
    f0, _ = acoustics._pyworld().dio(wave.astype(np.float64), fs, frame_period=10.0)
    return float(np.median(f0[f0 > 0])), acoustics.active_level_db(wave, fs)


@needs_tools
def test_styles_change_pitch_and_voice_as_written():
    """One flite reading restyled: hot anger is higher than cold anger, cold anger lower than the neutral
    reading; depressed sadness lower than tearful sadness; a tense voice has more energy above 2 kHz."""
    (wave, fs), = flite_corpora._synthesise("flite", [("slt", "The blue folder is on the second shelf.", 1.0)])
    styles = flite_corpora.STYLES

    def render(name, **voice):
        rng = np.random.default_rng(0)
        return acoustics.restyle(wave, fs, styles[name], voice.get("f0", 1.0), 1.0, 0.0,
                                 voice.get("tension", 0.0), rng)

    f0 = {name: _f0_and_level(render(name), fs)[0] for name in ("plain", "hot", "cold", "depressed", "tearful")}
    assert f0["hot"] > f0["plain"] * 2 ** (3 / 12) and f0["cold"] < f0["plain"] < f0["hot"]
    assert f0["depressed"] < f0["plain"] < f0["tearful"]

    def high_share(x):
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        return spectrum[np.fft.rfftfreq(len(x), 1 / fs) > 2000].sum() / spectrum.sum()

    assert high_share(render("plain", tension=6.0)) > 1.5 * high_share(render("plain", tension=-6.0))


@needs_tools
def test_restyle_does_not_depend_on_what_was_analysed_before():
    """WORLD's CheapTrick and D4C draw from a global generator, and D4C reads uninitialised memory below 16 kHz:
    the same reading (of flite's 8 kHz kal voice, with its digital silence) restyled after others must not
    change."""
    readings = flite_corpora._synthesise("flite", [("kal", "The bus to the airport leaves every hour.", 1.0),
                                                   ("kal16", "I found the keys under the newspaper.", 1.2)])
    assert readings[0][1] == 16000
    style = flite_corpora.STYLES["content"]

    def render(wave, fs):
        return acoustics.restyle(wave, fs, style, 1.0, 1.0, 0.1, 0.0, np.random.default_rng(1))

    alone = render(*readings[0])
    for _ in range(3):
        render(*readings[1])
        np.testing.assert_array_equal(render(*readings[0]), alone)
    with pytest.raises(ValueError, match="16 kHz"):
        acoustics.restyle(readings[0][0][::2], 8000, style, 1.0, 1.0, 0.0, 0.0, np.random.default_rng(1))


def test_agc_levels_loud_and_quiet_speech_and_the_compressor_narrows_the_range():
    fs = 8000
    t = np.arange(2 * fs) / fs
    burst = np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # syllable-like bursts
    loud, quiet = 0.3 * burst, 0.03 * burst
    before = acoustics.active_level_db(loud, fs) - acoustics.active_level_db(quiet, fs)
    after = (acoustics.active_level_db(acoustics.gain_control(loud, fs, "agc"), fs)
             - acoustics.active_level_db(acoustics.gain_control(quiet, fs, "agc"), fs))
    assert before == pytest.approx(20, abs=0.1) and abs(after) < 8
    # Compression: a loud second then a quiet one (20 dB apart) come out much closer, and louder on average.
    both = np.concatenate([loud, quiet])
    out = acoustics.gain_control(both, fs, "compressor")
    spread = acoustics.active_level_db(out[: 2 * fs], fs) - acoustics.active_level_db(out[2 * fs :], fs)
    assert 0 < spread < 12 and acoustics.active_level_db(out[2 * fs :], fs) > acoustics.active_level_db(quiet, fs)
    with pytest.raises(ValueError, match="Unknown gain control"):
        acoustics.gain_control(loud, fs, "limiter")


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (apt-get install sox libsox-fmt-all)")
def test_codecs_keep_the_length_and_change_the_signal():
    rng = np.random.default_rng(0)
    for name, fs in (("gsm", 8000), ("amr-nb", 8000), ("mp3", 22050), ("ulaw", 22050)):
        t = np.arange(fs) / fs
        x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(fs)
        y = acoustics.codec(x, fs, name)
        assert len(y) == len(x) and np.all(np.isfinite(y)), name
        error = np.std(y - x) / np.std(x)
        assert 0.001 < error < 0.9, (name, error)  # lossy, yet the same signal (aligned)
        np.testing.assert_array_equal(y, acoustics.codec(x, fs, name))
    with pytest.raises(ValueError, match="8000 Hz"):
        acoustics.codec(np.zeros(100), 16000, "gsm")


@needs_tools
def test_same_seed_same_arrays_sizes_nest_and_schema_matches(tmp_path):
    first = make_flite_corpus("synth-call", seed=3, n_per_class_per_speaker=1, n_speakers=2)
    again = make_flite_corpus("synth-call", seed=3, n_per_class_per_speaker=1, n_speakers=2)
    other = make_flite_corpus("synth-call", seed=4, n_per_class_per_speaker=1, n_speakers=2)
    bigger = make_flite_corpus("synth-call", seed=3, n_per_class_per_speaker=1, n_speakers=3)
    waves = arrays(first)
    assert all(np.array_equal(x, y) for x, y in zip(waves, arrays(again), strict=True))
    assert first._fingerprint == again._fingerprint != other._fingerprint
    assert not any(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(waves, arrays(other), strict=True))
    by_id = dict(zip(bigger["utt_id"], arrays(bigger), strict=True))
    for utt_id, wave in zip(first["utt_id"], waves, strict=True):
        np.testing.assert_array_equal(by_id[utt_id], wave)
    assert first.features == make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=1).features
    saved = make_synthetic_corpus("synth-call", 3, 1, 2, cache_dir=tmp_path)  # through the cache: the same corpus
    assert any(tmp_path.glob("generated-*"))
    assert all(np.array_equal(x, y) for x, y in zip(waves, arrays(saved), strict=True))
    assert make_flite_corpus("synth-call", 3, 1, 2, cache_dir=tmp_path)._fingerprint == saved._fingerprint
    counts = flite_corpora.class_counts(FLITE_PRESETS["synth-call"].priors, 4)
    assert list(first["emotion"]) == [raw for raw, c in zip(("ang", "joy", "neu", "sad"), counts, strict=True)
                                      for _ in range(c)] * 2
    for audio in first.with_format("numpy")["audio"]:
        assert audio["sampling_rate"] == 8000 and audio["array"].dtype == np.float32
        assert 1.0 <= len(audio["array"]) / 8000 <= 6.0 and np.abs(audio["array"]).max() < 1.0


def test_unknown_presets_and_missing_tools_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="synth-studio"):
        make_flite_corpus("synth-z")
    with pytest.raises(ValueError, match="synth-radio"):
        make_synthetic_corpus("synth-z")
    assert check_corpus_source("x", "synthetic:synth-it") == "synthetic"
    monkeypatch.setattr(flite_corpora.shutil, "which", lambda name: None)
    flite_corpora.tool_versions.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install flite"):
            make_flite_corpus("synth-studio", n_per_class_per_speaker=1, n_speakers=1)
    finally:
        flite_corpora.tool_versions.cache_clear()


@needs_tools
@needs_festival
@pytest.mark.slow
def test_festival_corpus_loads_through_corpus_spec_with_its_priors():
    kwargs = {"n_per_class_per_speaker": 5, "n_speakers": 2}
    dataset, report = load_corpus(CorpusSpec("synth-it", "synthetic:synth-it", load_kwargs=kwargs))
    assert report["source_kind"] == "synthetic" and report["sampling_rate"] == 16000
    # 20 per speaker by priors .30/.30/.32/.08 -> 6/6/6/2 (largest remainder: neutral's 6.4 keeps 6)
    assert report["labels"]["classes"] == {"angry": 12, "happy": 12, "neutral": 12, "sad": 4}
    assert set(dataset["speaker"]) == {"synth-it:spk00", "synth-it:spk01"}


@needs_tools
@pytest.mark.slow
def test_acted_preset_is_learnable_within_the_corpus():
    """eGeMAPS + logistic regression, leave-one-speaker-out on a small synth-studio: well above chance."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from classical import functionals
    from within_corpus import loso_uar

    from emodna_hf.data.labels import column_values

    spec = CorpusSpec("synth-studio", "synthetic:synth-studio", load_kwargs={"n_per_class_per_speaker": 8})
    dataset, report = load_corpus(spec)
    assert report["labels"]["classes"] == dict.fromkeys(flite_corpora.EMOTIONS, 32)
    labels = np.asarray(column_values(dataset, "labels"))
    speakers = np.asarray(column_values(dataset, "speaker"))
    metrics = loso_uar(functionals(dataset, 16000), labels, speakers, list(flite_corpora.EMOTIONS))
    print(f"\nsynth-studio (128 utterances) LOSO UAR {metrics['uar']:.3f}")
    assert metrics["uar"] >= 0.6
