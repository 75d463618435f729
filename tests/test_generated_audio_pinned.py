"""The generated development corpora are pinned: the same preset and seed give the same samples as when they were
recorded (issue 20: moving the generators into `emodna_hf.data.synthetic` had to keep every array byte-identical).

A hash of a small corpus (2 speakers, 1 utterance per class, seed 3) per preset. The samples depend on the numeric
libraries and on the external synthesisers, so a preset is only checked where they are the versions the hashes were
recorded with; elsewhere it is skipped with the versions that differ (re-record with the snippet in `_digest`'s
docstring after a deliberate change to a generator).
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import scipy
import soxr

from emodna_hf.data import ESPEAK_PRESETS, FLITE_PRESETS, PRESETS, make_synthetic_corpus

NUMERIC = f"numpy {np.__version__}; scipy {scipy.__version__}; soxr {soxr.__version__}"
RECORDED_NUMERIC = "numpy 2.4.6; scipy 1.17.1; soxr 1.1.0"
RECORDED_ESPEAK = "eSpeak NG text-to-speech: 1.51 Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
RECORDED_TOOLS = {
    "flite": "Carnegie Mellon University, Copyright (c) 1999-2016, all rights; /usr/bin/sox: SoX v14.4.2; "
    "pyworld 0.3.5; pyroomacoustics 0.10.1",
    "festival": "/usr/bin/festival: Festival Speech Synthesis System: 2.5.0:release December 2017; /usr/bin/sox: "
    "SoX v14.4.2; pyworld 0.3.5; pyroomacoustics 0.10.1",
}
PINNED = {
    "synth-a": "a2c5f7cd32849965c731b6ec56b54a77",
    "synth-b": "8b631e13a57bedafc197d86e05f43f76",
    "synth-c": "2bdd40575fa71c85392c8d3eca04aa3c",
    "synth-en": "fea48533ee000946ee00813d78064a33",
    "synth-de": "b2c860b6be963870966a7a06bd674ad0",
    "synth-es": "3f6aa6b8c9edd488e85d3315c844a832",
    "synth-studio": "729a8a037b26e4b3767b44ebf606cc8f",
    "synth-call": "da1b537410f38499193149eb86823dd7",
    "synth-it": "756556b28c74ec3a2af35d9566a64824",
    "synth-radio": "73139d01642998da84f2bb1d8cb437b9",
}


def _digest(preset: str) -> str:
    """Every row's id, label, speaker, rate and float32 samples, hashed in order.

    Re-record: `{p: _digest(p) for p in PINNED}` with the recorded versions installed.
    """
    dataset = make_synthetic_corpus(preset, seed=3, n_per_class_per_speaker=1, n_speakers=2)
    h = hashlib.sha256()
    for row in dataset:
        a = np.asarray(row["audio"]["array"], dtype=np.float32)
        h.update(f'{row["utt_id"]}|{row["emotion"]}|{row["speaker"]}|{row["audio"]["sampling_rate"]}|{a.shape}'
                 .encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def _environment(preset: str) -> tuple[str, str]:
    """(what this machine has, what the hashes were recorded with) for the preset's generator."""
    if preset in PRESETS:
        return NUMERIC, RECORDED_NUMERIC
    if preset in ESPEAK_PRESETS:
        if shutil.which("espeak-ng") is None:
            return "no espeak-ng", RECORDED_ESPEAK
        from emodna_hf.data.synthetic.espeak import espeak_version

        return f"{NUMERIC}; {espeak_version()}", f"{RECORDED_NUMERIC}; {RECORDED_ESPEAK}"
    engine = FLITE_PRESETS[preset].engine
    from emodna_hf.data.synthetic.flite import tool_versions

    try:
        tools = tool_versions(engine)
    except RuntimeError as err:
        tools = str(err)
    return f"{NUMERIC}; {tools}", f"{RECORDED_NUMERIC}; {RECORDED_TOOLS[engine]}"


def test_every_preset_is_pinned():
    assert set(PINNED) == {*PRESETS, *ESPEAK_PRESETS, *FLITE_PRESETS}


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_generated_audio_is_unchanged(preset):
    here, recorded = _environment(preset)
    if here != recorded:
        pytest.skip(f"{preset}: recorded with {recorded!r}, this machine has {here!r}")
    assert _digest(preset) == PINNED[preset]
