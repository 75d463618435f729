"""espeak-ng corpora: determinism, format, label priors, label harmonisation, and audible acted emotions.

The cue test uses three per-utterance statistics computed here with numpy (speech level, duration and an
autocorrelation f0), independent of the model package: a nearest-centroid rule fitted on some speakers must
tell angry from sad on the others.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from emodna_hf.data import ESPEAK_PRESETS, PRESETS, CorpusSpec, load_corpus, make_espeak_corpus
from emodna_hf.data.labels import get_label_map
from emodna_hf.data.synthetic import EMOTIONS, make_synthetic_corpus
from emodna_hf.data.synthetic import espeak as espeak_module
from emodna_hf.data.synthetic.corpus import class_counts as _class_counts
from emodna_hf.experiment import check_corpus_source

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)",
)


def arrays(dataset) -> list[np.ndarray]:
    return [np.asarray(a["array"]) for a in dataset["audio"]]


def test_presets_use_the_synthetic_label_map_and_differ():
    label_map = {raw.casefold(): emotion for raw, emotion in get_label_map("synthetic").items()}
    for name, preset in ESPEAK_PRESETS.items():
        assert name.startswith("synth-") and name not in PRESETS
        assert [label_map[raw.casefold()] for raw in preset.labels] == list(EMOTIONS)
        assert abs(sum(preset.priors) - 1) < 1e-9
    assert len({p.sampling_rate for p in ESPEAK_PRESETS.values()}) == 3
    assert len({p.language for p in ESPEAK_PRESETS.values()}) == 3
    assert any(len(set(p.priors)) > 1 for p in ESPEAK_PRESETS.values()), "one preset must be imbalanced"


def test_class_counts_follow_priors_exactly():
    assert _class_counts((0.25,) * 4, 8) == [2, 2, 2, 2]
    assert _class_counts((0.15, 0.2, 0.4, 0.25), 40) == [6, 8, 16, 10]
    assert sum(_class_counts((0.15, 0.2, 0.4, 0.25), 13)) == 13


def test_every_voice_is_distinct():
    """espeak-ng 1.51 silently drops the variant of a language alias ("en-gb+f2" = "en-gb"): catch that."""
    for preset in ESPEAK_PRESETS.values():
        waves = [espeak_module._espeak(["-v", voice], "Hello.") for voice in preset.voices]
        assert len({w.tobytes() for w in waves}) == len(waves), preset.name


def test_same_seed_same_arrays_and_sizes_nest():
    first = make_espeak_corpus("synth-es", seed=3, n_per_class_per_speaker=2, n_speakers=2)
    again = make_espeak_corpus("synth-es", seed=3, n_per_class_per_speaker=2, n_speakers=2)
    other = make_espeak_corpus("synth-es", seed=4, n_per_class_per_speaker=2, n_speakers=2)
    smaller = make_espeak_corpus("synth-es", seed=3, n_per_class_per_speaker=1, n_speakers=2)
    waves = arrays(first)
    assert all(np.array_equal(x, y) for x, y in zip(waves, arrays(again), strict=True))
    assert first._fingerprint == again._fingerprint != other._fingerprint
    assert not any(
        len(x) == len(y) and np.array_equal(x, y) for x, y in zip(waves, arrays(other), strict=True)
    )
    by_id = dict(zip(first["utt_id"], waves, strict=True))
    for utt_id, wave in zip(smaller["utt_id"], arrays(smaller), strict=True):
        np.testing.assert_array_equal(by_id[utt_id], wave)


def test_fingerprint_includes_the_espeak_version(monkeypatch):
    before = make_espeak_corpus("synth-en", n_per_class_per_speaker=1, n_speakers=1)._fingerprint
    monkeypatch.setattr(espeak_module, "espeak_version", lambda: "eSpeak NG text-to-speech: 9.99")
    assert make_espeak_corpus("synth-en", n_per_class_per_speaker=1, n_speakers=1)._fingerprint != before


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ESPEAK_PRESETS))
def test_corpus_format_and_priors(name):
    preset = ESPEAK_PRESETS[name]
    dataset = make_espeak_corpus(name, n_per_class_per_speaker=5, n_speakers=2).with_format("numpy")
    assert dataset.column_names == ["audio", "emotion", "speaker", "utt_id"]
    reference = make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=1)
    assert dataset.features == reference.features
    assert len(dataset) == 2 * 4 * 5 and len(set(dataset["utt_id"])) == len(dataset)
    emotions = np.asarray(list(dataset["emotion"]))
    counts = [int(np.sum(emotions == label)) for label in preset.labels]
    assert counts == [2 * c for c in _class_counts(preset.priors, 20)]
    assert set(dataset["speaker"]) == {"spk00", "spk01"}
    for audio in dataset["audio"]:
        wave = audio["array"]
        assert audio["sampling_rate"] == preset.sampling_rate and wave.dtype == np.float32
        assert 0.8 <= len(wave) / preset.sampling_rate <= 6.0
        assert np.all(np.isfinite(wave)) and np.abs(wave).max() < 1.0
    assert preset.n_speakers * 4 * preset.n_per_class_per_speaker in range(250, 401)  # the default size


@pytest.mark.slow
def test_labels_harmonise_through_load_corpus_and_the_synthetic_source():
    kwargs = {"n_per_class_per_speaker": 5, "n_speakers": 2}
    dataset, report = load_corpus(CorpusSpec("synth-de", "synthetic:synth-de", load_kwargs=kwargs))
    assert report["source_kind"] == "synthetic" and report["sampling_rate"] == 16000
    assert report["labels"]["classes"] == {"angry": 6, "happy": 8, "neutral": 16, "sad": 10}
    assert set(dataset["speaker"]) == {"synth-de:spk00", "synth-de:spk01"}
    kwargs = {"n_per_class_per_speaker": 1, "n_speakers": 2}
    spec = CorpusSpec(name="synth-en", source="synthetic:synth-en", load_kwargs=kwargs)
    dataset, report = load_corpus(spec, scheme="categorical4")
    assert report["labels"]["classes"] == dict.fromkeys(EMOTIONS, 2)
    assert all(u.startswith("synth-en-") for u in dataset["utt_id"])


def test_unknown_presets_name_both_families_and_sources_validate():
    with pytest.raises(ValueError, match="synth-a.*synth-en"):
        make_synthetic_corpus("synth-z")
    with pytest.raises(ValueError, match="synth-z"):
        make_espeak_corpus("synth-z")
    assert check_corpus_source("synth-es", "synthetic:synth-es") == "synthetic"
    with pytest.raises(ValueError, match="synthetic:synth-en"):
        check_corpus_source("x", "synthetic:synth-z")


def test_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(espeak_module.shutil, "which", lambda name: None)
    espeak_module.espeak_version.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
            make_espeak_corpus("synth-en", n_per_class_per_speaker=1, n_speakers=1)
    finally:
        espeak_module.espeak_version.cache_clear()


def f0_median(wave: np.ndarray, rate: int, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median f0 (Hz) over strongly periodic 40 ms frames, from the normalised autocorrelation (divided by
    the Hann window's own autocorrelation, as in Boersma 1993, so that periodicity is not underestimated)."""
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop]
    frames = frames - frames.mean(1, keepdims=True)
    frames = frames[np.mean(frames**2, axis=1) > 0.05 * np.mean(frames**2, axis=1).max()]
    window = np.hanning(frame)

    def autocorrelation(x):
        return np.fft.irfft(np.abs(np.fft.rfft(x, 2 * frame)) ** 2)

    ac = autocorrelation(frames * window) / autocorrelation(window)
    lo, hi = int(rate / fmax), int(rate / fmin)
    ac = ac[:, lo : hi + 1] / (ac[:, :1] + 1e-12)
    periodic = ac.max(1) > 0.7
    return float(np.median(rate / (lo + np.argmax(ac[periodic], axis=1)))) if periodic.any() else 0.0


def prosody(audio) -> list[float]:
    wave, rate = audio["array"].astype(np.float64), int(audio["sampling_rate"])
    hop = rate // 100
    power = np.mean(wave[: len(wave) // hop * hop].reshape(-1, hop) ** 2, axis=1)
    level_db = 10 * np.log10(np.mean(power[power > power.max() * 10**-3.5]))
    return [level_db, len(wave) / rate, np.log2(max(f0_median(wave, rate), 1.0))]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ESPEAK_PRESETS))
def test_emotions_are_audible(name):
    """Nearest centroid on level, duration and log f0 (each standardised per speaker over all of the
    speaker's utterances, a label-free normalisation), fitted on two speakers, tells angry from sad on two
    others; anger is louder, faster and higher than sadness."""
    preset = ESPEAK_PRESETS[name]
    dataset = make_espeak_corpus(name, n_per_class_per_speaker=4, n_speakers=4).with_format("numpy")
    emotions, speakers = np.asarray(list(dataset["emotion"])), np.asarray(list(dataset["speaker"]))
    x = np.array([prosody(audio) for audio in dataset["audio"]])
    z = np.empty_like(x)
    for speaker in set(speakers):
        own = speakers == speaker
        z[own] = (x[own] - x[own].mean(0)) / (x[own].std(0) + 1e-9)
    keep = np.isin(emotions, [preset.labels[0], preset.labels[3]])
    x, z, y = x[keep], z[keep], (emotions[keep] == preset.labels[0]).astype(int)  # y: 1 = angry
    train = np.isin(speakers[keep], ["spk00", "spk01"])
    centroids = np.stack([z[train & (y == c)].mean(0) for c in (0, 1)])
    predicted = np.argmin(((z[~train, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float(np.mean(predicted == y[~train]))
    print(f"\n{name}: angry vs sad accuracy {accuracy:.2f}; angry/sad means (dB, s, log2 Hz):",
          x[y == 1].mean(0).round(2), x[y == 0].mean(0).round(2))
    assert accuracy >= 0.7
    assert x[y == 1, 0].mean() > x[y == 0, 0].mean() + 6  # louder
    assert x[y == 1, 1].mean() < x[y == 0, 1].mean()  # faster
    assert z[y == 1, 2].mean() > z[y == 0, 2].mean() + 1  # higher, within speakers
