"""load_corpus from every source: audiofolder, CSV/JSONL manifests, disk, parquet, Hub, memory, synthetic."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from datasets import Audio, ClassLabel, Dataset, DatasetDict

import emodna_hf.data.sources as sources
from emodna_hf.data import AudioDecodeError, CorpusSpec, load_corpus, output_features

# (relative path, emotion, speaker, rate, channels, format, tone Hz)
# fear is dropped under categorical4; sorted file order puts it between angry and sad, so every later row
# must stay aligned with its speaker and id after the drop.
FILES = [
    ("angry/s1_a.wav", "angry", "s1", 16000, 1, "WAV", 300.0),
    ("angry/s2_a.flac", "angry", "s2", 44100, 2, "FLAC", 400.0),
    ("fear/s1_f.wav", "fear", "s1", 16000, 2, "WAV", 700.0),
    ("sad/s2_s.flac", "sad", "s2", 22050, 1, "FLAC", 600.0),
    ("sad/s1_s.wav", "sad", "s1", 8000, 1, "WAV", 500.0),
]
SECONDS = 0.75


def write_tone(path, rate, channels, fmt, hz, seconds=SECONDS):
    wave = 0.4 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, format=fmt)


def peak_hz(wave, rate=16000):
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(np.abs(np.fft.rfft(wave)))])


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "corpus"
    for rel, _, _, rate, channels, fmt, hz in FILES:
        write_tone(root / rel, rate, channels, fmt, hz)
    return root


def check_decoded(dataset, report, *, speakers_known=True, corpus="c"):
    assert dataset.features == output_features("categorical4")
    by_id = {row["utt_id"]: row for row in dataset}
    assert len(by_id) == 4 and report["labels"]["dropped"] == {"fear": 1}
    for rel, emotion, speaker, *_, hz in FILES:
        if emotion == "fear":
            continue
        row = by_id[rel.rsplit(".", 1)[0]]
        wave = np.asarray(row["input_values"], dtype=np.float32)
        assert abs(len(wave) - SECONDS * 16000) <= 1
        assert peak_hz(wave) == pytest.approx(hz, abs=2.0)  # the tone survives resampling and downmixing
        assert dataset.features["labels"].int2str(row["labels"]) == emotion
        assert row["speaker"] == (f"{corpus}:{speaker}" if speakers_known else f"{corpus}:unknown")
        assert row["corpus"] == corpus


def test_audiofolder_labels_from_parent_folders(folder):
    dataset, report = load_corpus(CorpusSpec("c", folder, label_map_name="casia"))
    check_decoded(dataset, report, speakers_known=False)
    assert report["source_kind"] == "audiofolder" and report["n_speakers"] == 0


def test_audiofolder_metadata_and_split_folder(tmp_path):
    root = tmp_path / "af"
    for rel, _, _, rate, channels, fmt, hz in FILES:
        write_tone(root / "train" / "clips" / rel.replace("/", "_"), rate, channels, fmt, hz)
    with open(root / "train" / "metadata.jsonl", "w") as f:
        for rel, emotion, speaker, *_ in FILES:
            f.write(
                json.dumps(
                    {"file_name": "clips/" + rel.replace("/", "_"), "emotion": emotion, "speaker": speaker}
                )
            )
            f.write("\n")
    (root / "test").mkdir()
    dataset, report = load_corpus(CorpusSpec("af", root, split="train", label_map_name="casia"))
    assert len(dataset) == 4 and report["n_speakers"] == 2
    assert set(dataset["speaker"]) == {"af:s1", "af:s2"}
    assert all(u.startswith("clips/") for u in dataset["utt_id"])
    with pytest.raises(ValueError, match="split folders"):
        load_corpus(CorpusSpec("af", root, split="validation", label_map_name="casia"))


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_manifests_resolve_paths_against_their_folder(folder, tmp_path, kind):
    rows = [{"path": f"corpus/{rel}", "emotion": e, "speaker": s} for rel, e, s, *_ in FILES]
    manifest = tmp_path / f"manifest.{kind}"
    if kind == "csv":
        manifest.write_text(
            "path,emotion,speaker\n" + "".join(f"{r['path']},{r['emotion']},{r['speaker']}\n" for r in rows)
        )
    else:
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # utt ids come from the paths relative to the manifest, so strip the "corpus/" prefix for the check
    dataset, report = load_corpus(CorpusSpec("c", manifest, label_map_name="casia"))
    dataset = dataset.map(lambda row: {"utt_id": row["utt_id"].removeprefix("corpus/")})
    check_decoded(dataset, report)
    assert report["source_kind"] == kind


def audio_dataset(folder) -> Dataset:
    """A Hub-style dataset: a decoding `Audio` column of encoded bytes, ClassLabel emotions, other names."""
    names = ["angry", "sad", "fear"]
    # Arrow first: encoding into an Audio feature (from_dict) needs torchcodec, a cast does not.
    audio = pa.array(
        [{"bytes": (folder / rel).read_bytes(), "path": None} for rel, *_ in FILES],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    table = pa.table(
        {
            "audio": audio,
            "emotion": [names.index(e) for _, e, *_ in FILES],
            "speaker_id": [s for _, _, s, *_ in FILES],
            "id": [rel.rsplit(".", 1)[0] for rel, *_ in FILES],
        }
    )
    dataset = Dataset(table).cast_column("audio", Audio()).cast_column("emotion", ClassLabel(names=names))
    assert dataset.features["audio"].decode  # load_corpus must not let datasets decode it
    return dataset


def test_hub_dataset_via_load_dataset(folder, monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        return audio_dataset(folder)

    monkeypatch.setattr(sources, "load_dataset", fake_load_dataset)
    spec = CorpusSpec(
        "c",
        "someone/ser-corpus",
        split="train",
        config_name="clean",
        label_map_name="casia",
        load_kwargs={"revision": "main"},
    )
    dataset, report = load_corpus(spec)
    assert calls == [("someone/ser-corpus", "clean", "train", {"revision": "main"})]
    check_decoded(dataset, report)
    assert report["source_kind"] == "hub"


def test_save_to_disk_parquet_and_in_memory(folder, tmp_path):
    original = audio_dataset(folder)
    DatasetDict({"train": original}).save_to_disk(tmp_path / "dict")
    original.save_to_disk(tmp_path / "single")
    original.to_parquet(tmp_path / "corpus.parquet")
    for source, kind in [
        (tmp_path / "dict", "disk"),
        (tmp_path / "single", "disk"),
        (tmp_path / "corpus.parquet", "parquet"),
        (original, "dataset"),
    ]:
        dataset, report = load_corpus(CorpusSpec("c", source, label_map_name="casia"))
        check_decoded(dataset, report)
        assert report["source_kind"] == kind


def test_crop_array_sources_and_label_schemes(folder):
    rows = {"audio": [{"array": np.ones(48000, np.float32) * 0.1, "sampling_rate": 48000}], "label": ["W"]}
    dataset, _ = load_corpus(
        CorpusSpec("emodb", Dataset.from_dict(rows)), scheme="arousal", max_duration_s=0.5, sampling_rate=8000
    )
    assert len(dataset[0]["input_values"]) == 4000
    assert dataset.features["labels"].names == ["low", "high"] and dataset[0]["labels"] == 1
    assert dataset[0]["utt_id"] == "emodb-000000" and dataset[0]["speaker"] == "emodb:unknown"


def test_synthetic_source():
    spec = CorpusSpec(
        "synth-b", "synthetic:synth-b", load_kwargs={"n_per_class_per_speaker": 1, "n_speakers": 2}
    )
    dataset, report = load_corpus(spec, max_duration_s=1.5)
    assert len(dataset) == 8 and report["labels"]["classes"] == {
        e: 2 for e in ("angry", "happy", "neutral", "sad")
    }
    assert max(len(x) for x in dataset["input_values"]) <= 24000
    assert set(dataset["speaker"]) == {"synth-b:spk00", "synth-b:spk01"}


def bad_manifest(folder, tmp_path):
    (folder / "sad" / "empty.wav").write_bytes(b"")
    (folder / "sad" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    sf.write(folder / "sad" / "zero.wav", np.zeros(0), 16000)
    names = ["angry/s1_a.wav", "sad/empty.wav", "sad/corrupt.wav", "sad/zero.wav", "sad/s1_s.wav"]
    manifest = tmp_path / "bad.csv"
    manifest.write_text("file_name,label\n" + "".join(f"corpus/{n},{n.split('/')[0]}\n" for n in names))
    return manifest


def test_bad_audio_raises_naming_the_file_by_default(folder, tmp_path):
    with pytest.raises(
        AudioDecodeError, match=r"Corpus 'c', utterance 'corpus/sad/empty'.*empty\.wav: empty file"
    ):
        load_corpus(CorpusSpec("c", bad_manifest(folder, tmp_path), label_map_name="casia"))


def test_bad_audio_skip_counts_and_names_them(folder, tmp_path):
    spec = CorpusSpec("c", bad_manifest(folder, tmp_path), label_map_name="casia", on_bad_audio="skip")
    dataset, report = load_corpus(spec)
    assert len(dataset) == 2 and report["n"] == 2
    assert sorted(report["bad_audio"]) == ["corpus/sad/corrupt", "corpus/sad/empty", "corpus/sad/zero"]
    assert "zero.wav" in report["bad_audio"]["corpus/sad/zero"]
    assert "no samples" in report["bad_audio"]["corpus/sad/zero"]
    # The class counts are those of the two utterances used, not of the five listed.
    assert report["labels"]["classes"] == {"angry": 1, "happy": 0, "neutral": 0, "sad": 1}


def test_cache_dir_reuses_decoded_audio_until_a_file_changes(folder, tmp_path):
    cache = tmp_path / "cache"
    spec = CorpusSpec("c", folder, label_map_name="casia")
    first, _ = load_corpus(spec, cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and first.cache_files
    second, _ = load_corpus(spec, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == files
    assert second["input_values"][:] == first["input_values"][:]
    write_tone(folder / "sad/s1_s.wav", 8000, 1, "WAV", 900.0)  # same path, new content
    third, _ = load_corpus(spec, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    row = next(r for r in third if r["utt_id"] == "sad/s1_s")
    assert peak_hz(np.asarray(row["input_values"])) == pytest.approx(900.0, abs=2.0)


def test_spec_errors_are_explicit(folder, tmp_path):
    with pytest.raises(ValueError, match="on_bad_audio"):
        load_corpus(CorpusSpec("c", folder, on_bad_audio="ignore"))
    # 'fear' is a known emotion (generic names serve a corpus without a built-in map) with no categorical4 class
    with pytest.raises(ValueError, match=r"\['fear'\] have no class in scheme 'categorical4'"):
        load_corpus(CorpusSpec("c", folder, label_map={"angry": "angry", "sad": "sad"}, drop_unmapped=False))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        load_corpus(CorpusSpec("c", empty, label_map={}))
    with pytest.raises(ValueError, match="no label column"):
        load_corpus(CorpusSpec("c", Dataset.from_dict({"audio": ["x.wav"]}), label_map={}))


def test_metadata_with_a_byte_order_mark_or_another_encoding(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    sf.write(folder / "a.wav", np.zeros(1600, dtype=np.float32) + 0.01, 16000)
    (folder / "metadata.csv").write_bytes("\ufefffile_name,label\na.wav,angry\n".encode("utf-8"))
    assert sources._read_csv(folder / "metadata.csv") == [{"file_name": "a.wav", "label": "angry"}]
    (folder / "metadata.csv").write_bytes("file_name,label\na.wav,col\xe8re\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"metadata\.csv is not UTF-8 text"):
        sources._read_csv(folder / "metadata.csv")


@pytest.mark.parametrize("listing", ["manifest", "metadata"])
def test_file_names_outside_the_corpus_folder_are_refused_unless_allowed(tmp_path, listing):
    """`../x.wav`, absolute paths and `../../etc/passwd` in a corpus's own metadata are refused before anything is
    opened, with the same message whether the file exists or not; the flag allows a deliberate manifest."""
    outside = tmp_path / "outside.wav"
    write_tone(outside, 16000, 1, "WAV", 300.0)
    root = tmp_path / "corpus"
    write_tone(root / "inside.wav", 16000, 1, "WAV", 400.0)
    listing_file = root / ("manifest.csv" if listing == "manifest" else "metadata.csv")
    messages = {}
    for name in ("../outside.wav", str(outside), "../../../../../../etc/passwd", "../no-such-file.wav"):
        listing_file.write_text(f"file_name,label\ninside.wav,angry\n{name},sad\n")
        source = listing_file if listing == "manifest" else root
        with pytest.raises(ValueError, match="points outside the corpus folder") as error:
            load_corpus(CorpusSpec("c", source, label_map_name="casia"))
        assert "row 2" in str(error.value) and "--allow_paths_outside_corpus" in str(error.value)
        messages[name] = str(error.value).replace(name, "<name>")
    # Nothing tells an existing file (outside.wav, /etc/passwd) from a missing one.
    assert len(set(messages.values())) == 1
    write_tone(tmp_path / "other.wav", 16000, 1, "WAV", 500.0)
    listing_file.write_text(f"file_name,label\ninside.wav,angry\n{outside},sad\n../other.wav,angry\n")
    source = listing_file if listing == "manifest" else root
    dataset, report = load_corpus(CorpusSpec("c", source, label_map_name="casia", allow_paths_outside_corpus=True))
    assert report["n"] == 3


def test_the_outside_paths_flag_reaches_the_corpus_specs():
    from emodna_hf.arguments import DataArguments, EvaluationArguments

    data = DataArguments(allow_paths_outside_corpus=True)
    assert all(s.allow_paths_outside_corpus for s in [*data.source_specs(), data.target_spec()])
    assert not DataArguments().target_spec().allow_paths_outside_corpus
    evaluation = EvaluationArguments(model_name_or_path="m", corpus_name=["a"], corpus_dataset=["synthetic:synth-a"],
                                     allow_paths_outside_corpus=True)
    assert evaluation.corpus_specs()[0].allow_paths_outside_corpus


def test_duplicate_rows_are_used_once_and_reported(folder, tmp_path, caplog):
    names = ["angry/s1_a.wav", "sad/s1_s.wav", "angry/s1_a.wav", "angry/s1_a.wav"]
    manifest = tmp_path / "dup.csv"
    manifest.write_text("file_name,label\n" + "".join(f"corpus/{n},{n.split('/')[0]}\n" for n in names))
    with caplog.at_level("WARNING"):
        dataset, report = load_corpus(CorpusSpec("c", manifest, label_map_name="casia"))
    assert len(dataset) == 2 and report["n"] == 2 and report["n_raw"] == 4
    assert report["duplicates"] == {"corpus/angry/s1_a": 2}
    assert report["labels"]["classes"] == {"angry": 1, "happy": 0, "neutral": 0, "sad": 1}  # not counted twice
    assert "2 row(s) name an audio file already listed" in caplog.text
    manifest.write_text("file_name,label\ncorpus/angry/s1_a.wav,angry\ncorpus/angry/s1_a.wav,sad\n")
    with pytest.raises(ValueError, match=r"'corpus/angry/s1_a' .* listed twice with different labels"):
        load_corpus(CorpusSpec("c", manifest, label_map_name="casia"))


def test_a_too_short_utterance_is_unusable_audio(folder, tmp_path):
    write_tone(folder / "sad" / "blip.wav", 16000, 1, "WAV", 500.0, seconds=0.05)
    manifest = tmp_path / "short.csv"
    manifest.write_text("file_name,label\ncorpus/angry/s1_a.wav,angry\ncorpus/sad/blip.wav,sad\n")
    with pytest.raises(AudioDecodeError, match=r"utterance 'corpus/sad/blip'.*blip\.wav: audio is 0\.05 s long"):
        load_corpus(CorpusSpec("c", manifest, label_map_name="casia"))
    dataset, report = load_corpus(CorpusSpec("c", manifest, label_map_name="casia", on_bad_audio="skip"))
    assert len(dataset) == 1 and list(report["bad_audio"]) == ["corpus/sad/blip"]
    assert "shorter than the 0.1 s" in report["bad_audio"]["corpus/sad/blip"]
