"""Synthetic corpora: determinism, format, acted-emotion cues, and a real but alignable cross-corpus shift.

The shift test trains a logistic regression on per-utterance MFCC statistics (numpy/scipy features,
independent of the model package): it must recognise emotions in every corpus (held-out speakers) and lose
clearly on every other corpus, while standardising the target's features with the target's own statistics
(an unsupervised alignment) must win much of the loss back.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from scipy.fft import dct
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from emodna_hf.data import EMOTIONS, PRESETS, make_synthetic_corpus

RATE, N_FFT, HOP, WIN, N_MELS = 16000, 512, 160, 400, 40


def mel_filterbank() -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(mel(50.0), mel(RATE / 2), N_MELS + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.clip(
        np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)), 0, None
    )


FILTERBANK = mel_filterbank()


def log_mel(wave: np.ndarray, rate: int) -> np.ndarray:
    wave = soxr.resample(wave, rate, RATE) if rate != RATE else wave
    frames = np.lib.stride_tricks.sliding_window_view(wave, WIN)[::HOP] * np.hanning(WIN)
    return np.log(np.abs(np.fft.rfft(frames, N_FFT)) ** 2 @ FILTERBANK.T + 1e-8)


def mfcc_stats(mel: np.ndarray) -> np.ndarray:
    """MFCC means and spreads, delta spreads and energy percentiles: a classic utterance-level SER vector."""
    cepstra = dct(mel, type=2, norm="ortho", axis=1)[:, :20]
    deltas = np.diff(cepstra, axis=0)
    return np.concatenate(
        [cepstra.mean(0), cepstra.std(0), deltas.std(0), np.percentile(cepstra[:, 0], [10, 50, 90])]
    )


def cmn_stats(mel: np.ndarray) -> np.ndarray:
    """What per-utterance mean normalisation leaves: band spreads, delta spreads, energy dynamics."""
    mel = mel - mel.mean(0)
    energy = mel.mean(1)
    extra = [energy.std(), np.percentile(energy, 90) - np.percentile(energy, 10)]
    return np.concatenate([mel.std(0), np.diff(mel, axis=0).std(0), extra])


def classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))


@pytest.fixture(scope="module")
def corpora() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name, preset in PRESETS.items():
        dataset = make_synthetic_corpus(name).with_format("numpy")
        with threadpool_limits(1):  # small matrix products: a second BLAS thread only adds contention
            mels = [log_mel(a["array"], int(a["sampling_rate"])) for a in dataset["audio"]]
        out[name] = {
            "mfcc": np.stack([mfcc_stats(m) for m in mels]),
            "cmn": np.stack([cmn_stats(m) for m in mels]),
            "y": np.array([preset.labels.index(e) for e in dataset["emotion"]]),
            "speaker": np.asarray(dataset["speaker"]),
        }
    return out


def accuracies(corpora, features: str) -> dict[tuple[str, str], tuple[float, float]]:
    """{(source, target): (accuracy, accuracy after target self-standardisation)}; source == target is the
    speaker-independent in-corpus accuracy (4-fold cross-validation over speakers)."""
    results = {}
    for source, s in corpora.items():
        predicted = np.zeros_like(s["y"])
        for train, test in GroupKFold(4).split(s[features], s["y"], s["speaker"]):
            predicted[test] = classifier().fit(s[features][train], s["y"][train]).predict(s[features][test])
        accuracy = float(np.mean(predicted == s["y"]))
        results[source, source] = (accuracy, accuracy)
        model = classifier().fit(s[features], s["y"])
        for target, t in corpora.items():
            if target != source:
                aligned = model[-1].predict(StandardScaler().fit_transform(t[features]))
                results[source, target] = (
                    model.score(t[features], t["y"]),
                    float(np.mean(aligned == t["y"])),
                )
    return results


def report(results, title):
    names = list(PRESETS)
    print(f"\n{title}: rows train, columns test; diagonal = held-out speakers; (target-standardised)")
    for source in names:
        cells = [f"{results[source, t][0]:.2f} ({results[source, t][1]:.2f})" for t in names]
        print(f"  {source:8s} " + "  ".join(cells))


def test_shift_is_real_alignable_and_survives_cepstral_mean_normalisation(corpora):
    with threadpool_limits(1):
        mfcc, cmn = accuracies(corpora, "mfcc"), accuracies(corpora, "cmn")
    report(mfcc, "MFCC statistics")
    report(cmn, "CMN'd log-mel statistics")
    names = list(PRESETS)
    pairs = [(s, t) for s in names for t in names if s != t]
    for name in names:
        assert mfcc[name, name][0] >= 0.8, f"{name}: emotions must be recognisable in-corpus"
    for source, target in pairs:
        assert mfcc[source, target][0] <= mfcc[source, source][0] - 0.25, f"{source}->{target}: no clear loss"
    gain = np.mean([mfcc[p][1] - mfcc[p][0] for p in pairs])
    assert gain >= 0.2, "unsupervised target standardisation should recover much of the loss"
    # Per-utterance mean normalisation of log-mel frames does not remove the shift.
    in_corpus = np.mean([cmn[n, n][0] for n in names])
    assert in_corpus >= 0.75
    assert np.mean([cmn[p][0] for p in pairs]) <= in_corpus - 0.25


def test_same_seed_same_arrays_and_sizes_nest():
    first = make_synthetic_corpus("synth-c", seed=3, n_per_class_per_speaker=2, n_speakers=2)
    again = make_synthetic_corpus("synth-c", seed=3, n_per_class_per_speaker=2, n_speakers=2)
    other = make_synthetic_corpus("synth-c", seed=4, n_per_class_per_speaker=2, n_speakers=2)
    smaller = make_synthetic_corpus("synth-c", seed=3, n_per_class_per_speaker=1, n_speakers=2)
    arrays = [np.asarray(a["array"]) for a in first["audio"]]
    assert all(np.array_equal(x, np.asarray(y["array"])) for x, y in zip(arrays, again["audio"], strict=True))
    assert first._fingerprint == again._fingerprint != other._fingerprint
    assert not any(
        np.array_equal(x[:1000], np.asarray(y["array"])[:1000])
        for x, y in zip(arrays, other["audio"], strict=True)
    )
    by_id = dict(zip(first["utt_id"], arrays, strict=True))
    for utt_id, audio in zip(smaller["utt_id"], smaller["audio"], strict=True):
        np.testing.assert_array_equal(by_id[utt_id], np.asarray(audio["array"]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_corpus_format(name):
    preset = PRESETS[name]
    dataset = make_synthetic_corpus(name, n_per_class_per_speaker=2).with_format("numpy")
    assert dataset.column_names == ["audio", "emotion", "speaker", "utt_id"]
    assert len(dataset) == preset.n_speakers * 4 * 2 and len(set(dataset["utt_id"])) == len(dataset)
    assert sorted(set(dataset["emotion"])) == sorted(preset.labels)
    assert len(set(dataset["speaker"])) == preset.n_speakers
    for audio in dataset["audio"]:
        wave = audio["array"]
        assert audio["sampling_rate"] == preset.sampling_rate and wave.dtype == np.float32
        assert 1.0 <= len(wave) / preset.sampling_rate <= 2.5
        assert np.all(np.isfinite(wave)) and np.abs(wave).max() < 1.0
    assert preset.n_speakers * 4 * preset.n_per_class_per_speaker in range(300, 501)  # the default size


def test_emotions_carry_acted_cues():
    """Anger is louder, faster and brighter than sadness; happy and angry are louder than neutral."""
    dataset = make_synthetic_corpus("synth-a", n_per_class_per_speaker=3).with_format("numpy")
    labels = np.array([PRESETS["synth-a"].labels.index(e) for e in dataset["emotion"]])
    waves = list(dataset["audio"])
    rms = np.array([np.sqrt(np.mean(a["array"] ** 2)) for a in waves])
    seconds = np.array([len(a["array"]) / a["sampling_rate"] for a in waves])
    centroid = []
    for audio in waves:
        power = np.abs(np.fft.rfft(audio["array"])) ** 2
        centroid.append(np.sum(np.fft.rfftfreq(len(audio["array"]), 1 / 16000) * power) / np.sum(power))
    centroid = np.array(centroid)

    def median(values, emotion):
        return np.median(values[labels == EMOTIONS.index(emotion)])

    assert median(rms, "angry") > median(rms, "happy") > median(rms, "neutral") > median(rms, "sad")
    assert median(seconds, "sad") > median(seconds, "angry")
    assert median(centroid, "angry") > median(centroid, "neutral") > median(centroid, "sad")


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="synth-z"):
        make_synthetic_corpus("synth-z")


def test_a_generated_corpus_is_saved_once_and_read_back_identical(tmp_path, monkeypatch):
    from emodna_hf.data.synthetic import source_filter

    in_memory = make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=2)
    first = make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=2, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("generated-")]
    calls = []
    monkeypatch.setattr(source_filter, "_utterance", lambda *a, **k: calls.append(1))  # generating would fail
    again = make_synthetic_corpus("synth-a", n_per_class_per_speaker=1, n_speakers=2, cache_dir=tmp_path)
    assert not calls and again._fingerprint == first._fingerprint
    assert first._fingerprint == in_memory._fingerprint  # what is keyed on it is the same without a cache folder
    assert again["utt_id"] == first["utt_id"]
    for a, b in zip(first["audio"], again["audio"], strict=True):
        np.testing.assert_array_equal(a["array"], b["array"])
    # Other sizes are another corpus: generated, not read from the first one's folder.
    with pytest.raises(TypeError):
        make_synthetic_corpus("synth-a", n_per_class_per_speaker=2, n_speakers=2, cache_dir=tmp_path)
