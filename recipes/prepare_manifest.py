#!/usr/bin/env python
"""Write a CSV manifest (file_name, emotion, speaker, utt_id) for a corpus as distributed by its authors.

The recipes read corpora through such manifests (`dataset: /path/to/manifest.csv` in recipes/configs/*.yaml);
labels stay the corpus's own codes, and the built-in label map of the corpus (emodna_hf/data/labels.py)
turns them into classes. File paths are written relative to the manifest's folder.

    python recipes/prepare_manifest.py emodb       /data/emodb            # wav/03a01Fa.wav ...
    python recipes/prepare_manifest.py ravdess     /data/ravdess          # Actor_01/03-01-05-01-01-01-01.wav ...
    python recipes/prepare_manifest.py crema-d     /data/CREMA-D          # AudioWAV/1001_DFA_ANG_XX.wav ...
    python recipes/prepare_manifest.py enterface05 /data/enterface        # subject 1/anger/sentence 1/s1_an_1.wav
    python recipes/prepare_manifest.py casia       /data/casia            # <speaker>/<emotion>/201.wav
    python recipes/prepare_manifest.py iemocap     /data/IEMOCAP_full_release
    python recipes/prepare_manifest.py msp-podcast /data/MSP-Podcast --split Test1

The manifest goes to ROOT/manifest.csv unless --output is given (msp-podcast: ROOT/manifest_<split>.csv).
eNTERFACE'05 ships .avi videos: extract mono 16 kHz wav files next to them first, e.g.
`find . -name '*.avi' -exec sh -c 'ffmpeg -loglevel error -i "$1" -ac 1 -ar 16000 "${1%.avi}.wav"' _ {} \\;`.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac")
Row = dict[str, str]


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))


def emodb(root: Path) -> Iterator[Row]:
    """EmoDB: `03a01Fa.wav` = speaker 03, text a01, emotion F (German initial), version a."""
    for path in _audio_files(root):
        match = re.fullmatch(r"(\d\d)([a-z]\d\d)([A-Z])([a-z]?)", path.stem)
        if match:
            yield {"path": path, "emotion": match.group(3), "speaker": match.group(1), "utt_id": path.stem}


def ravdess(root: Path) -> Iterator[Row]:
    """RAVDESS: `03-01-05-01-01-01-12.wav` = modality-channel-emotion-intensity-statement-repetition-actor.

    Only audio-only speech files (modality 03, vocal channel 01) are kept: song and video files are skipped.
    """
    for path in _audio_files(root):
        fields = path.stem.split("-")
        if len(fields) == 7 and fields[0] == "03" and fields[1] == "01":
            yield {"path": path, "emotion": fields[2], "speaker": fields[6], "utt_id": path.stem}


def crema_d(root: Path) -> Iterator[Row]:
    """CREMA-D: `1001_DFA_ANG_XX.wav` = actor_sentence_emotion_level."""
    for path in _audio_files(root):
        fields = path.stem.split("_")
        if len(fields) == 4 and fields[0].isdigit():
            yield {"path": path, "emotion": fields[2], "speaker": fields[0], "utt_id": path.stem}


_ENTERFACE_FOLDERS = {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}


def enterface05(root: Path) -> Iterator[Row]:
    """eNTERFACE'05: `subject 1/anger/sentence 1/s1_an_1.wav` (audio extracted from the .avi files).

    The emotion comes from the file name code (an, di, fe, ha, sa, su) or else from the emotion folder.
    """
    for path in _audio_files(root):
        match = re.match(r"s_?(\d+)_([a-z]{2})_", path.stem)
        subject = re.search(r"subject\s*(\d+)", str(path.relative_to(root)), flags=re.I)
        folder = next((part.lower() for part in path.parts if part.lower() in _ENTERFACE_FOLDERS), None)
        if match:
            emotion = match.group(2)
        elif folder:
            emotion = folder
        else:
            continue
        speaker = subject.group(1) if subject else (match.group(1) if match else "")
        yield {"path": path, "emotion": emotion, "speaker": speaker, "utt_id": str(path.relative_to(root).with_suffix(""))}


def casia(root: Path) -> Iterator[Row]:
    """CASIA: `<speaker>/<emotion>/<nnn>.wav` (emotion folders angry, fear, happy, neutral, sad, surprise)."""
    for path in _audio_files(root):
        if len(path.relative_to(root).parts) >= 3:
            speaker, emotion = path.parent.parent.name, path.parent.name
            yield {"path": path, "emotion": emotion, "speaker": speaker,
                   "utt_id": f"{speaker}-{emotion}-{path.stem}"}


_IEMOCAP_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(Ses(\d\d)[FM]_\S+)\t(\w+)\t")


def iemocap(root: Path) -> Iterator[Row]:
    """IEMOCAP: labels from `Session*/dialog/EmoEvaluation/*.txt`, audio `Session*/sentences/wav/<dialog>/<utt>.wav`.

    The speaker is the session plus the gender of the utterance's speaker (`Ses01F_impro01_M003` → `Ses01M`).
    """
    for evaluation in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        session_dir = evaluation.parents[2]
        for line in evaluation.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _IEMOCAP_LINE.match(line)
            if not match:
                continue
            utt_id, session, emotion = match.group(1), match.group(2), match.group(3)
            dialog = utt_id.rsplit("_", 1)[0]
            path = session_dir / "sentences" / "wav" / dialog / f"{utt_id}.wav"
            gender = utt_id.rsplit("_", 1)[1][0]
            yield {"path": path, "emotion": emotion, "speaker": f"Ses{session}{gender}", "utt_id": utt_id}


def msp_podcast(root: Path, split: str | None = None) -> Iterator[Row]:
    """MSP-Podcast: `Labels/labels_consensus.csv` (FileName, EmoClass, SpkrID, Split_Set) and `Audios/<FileName>`."""
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found (the MSP-Podcast release's consensus labels)")
    with open(labels, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if split and row.get("Split_Set") != split:
                continue
            speaker = row.get("SpkrID", "")
            yield {"path": root / "Audios" / row["FileName"], "emotion": row["EmoClass"],
                   "speaker": "" if speaker.lower() in ("unknown", "") else speaker,
                   "utt_id": Path(row["FileName"]).stem}


CORPORA = {
    "emodb": emodb, "ravdess": ravdess, "crema-d": crema_d, "enterface05": enterface05, "casia": casia,
    "iemocap": iemocap, "msp-podcast": msp_podcast,
}


def write_manifest(corpus: str, root: str | os.PathLike, output: str | os.PathLike | None = None,
                   split: str | None = None, check_files: bool = True) -> Path:
    """Scan `root` for `corpus` and write the manifest; returns its path. Raises if nothing is found."""
    if corpus not in CORPORA:
        raise ValueError(f"Unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    if corpus == "msp-podcast":
        rows = list(msp_podcast(root, split))
        default_name = f"manifest_{split}.csv" if split else "manifest.csv"
    else:
        if split:
            raise ValueError("--split only applies to msp-podcast (the others have no official splits)")
        rows = list(CORPORA[corpus](root))
        default_name = "manifest.csv"
    if not rows:
        raise ValueError(f"No {corpus} utterances found under {root}; is it the corpus's original layout?")
    missing = [str(r["path"]) for r in rows if check_files and not Path(r["path"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} labelled files are missing, e.g. {missing[:3]}")
    output = Path(output).expanduser().resolve() if output else root / default_name
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "emotion", "speaker", "utt_id"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"file_name": os.path.relpath(row["path"], output.parent), "emotion": row["emotion"],
                             "speaker": row["speaker"], "utt_id": row["utt_id"]})
    counts = Counter(r["emotion"] for r in rows)
    speakers = len({r["speaker"] for r in rows if r["speaker"]})
    print(f"{output}: {len(rows)} utterances, {speakers} speakers, labels {dict(sorted(counts.items()))}")
    if not root.is_relative_to(output.parent):
        print(f"note: the audio lies outside {output.parent}; train with --allow_paths_outside_corpus true (file names "
              "leading outside a manifest's folder are refused otherwise), or write the manifest inside the corpus.")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("root", help="The corpus folder as distributed.")
    parser.add_argument("--output", help="Manifest path (default: ROOT/manifest.csv).")
    parser.add_argument("--split", help="msp-podcast only: Train, Development, Test1, Test2, ...")
    parser.add_argument("--no_check_files", action="store_true", help="Do not check that the audio files exist.")
    args = parser.parse_args(argv)
    try:
        write_manifest(args.corpus, args.root, args.output, args.split, check_files=not args.no_check_files)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
