"""The fourth family of generated development corpora: festival voices in four other languages, emotion as a
continuous arousal/valence/dominance latent, sox effect chains for voice and channel.

The next *confirmation* family (docs/benchmarks.md, "Development families"), built after the flite/festival
family was spent. It imports nothing from the three other generators (`source_filter.py`, `espeak.py` and their `acoustics.py`,
`flite.py`/`flite_acoustics.py`; only `corpus.py`, what every generated corpus is) and makes other assumptions (see `festvox_render.py` for the
rendering):

* **emotion model**: every utterance draws a point (arousal, valence, dominance) from its class's region, a
  Gaussian around a corpus-specific centre: the same label sits at different places in different corpora (hot
  vs cold anger, elated vs content, depressed vs tearful sadness), tight in acted corpora, wide in natural
  ones. Each corpus has its own *display rules* that turn the point into prosody (how much arousal raises f0,
  speeds up, gets louder, tenser), so two corpora render even the same point differently;
* **label noise** as annotator disagreement: a share of utterances carry the label of the class whose centre
  is nearest to their point among the other classes (most flips land on neighbours, often neutral);
* **speakers**: festival voices (Czech diphones, Finnish diphones, a Catalan HTS voice, a Russian unit-selection
  voice), each varied by a sox formant shift (vocal-tract length), f0 offset, speaking rate, timbre and
  expressivity;
* label priors balanced, mostly neutral, rare sad and rare angry; 5 to 25 speakers; channels as below.

| preset | speech | speakers | priors (ang/hap/neu/sad) | emotion | channel |
|---|---|---|---|---|---|
| `synth-cs` | festival Czech diphones | 8 | balanced | acted: hot anger, elated, depressed; 3% label noise | sox reverb (small room), pink noise at 28-40 dB, 44.1 kHz |
| `synth-fi` | festival Finnish diphones | 25 | .14/.14/.60/.12 | natural: cold anger, content, mild sadness; 12% noise | crowd at 10-24 dB, AGC compand, 300-3400 Hz, GSM, 8 kHz |
| `synth-ca` | festival Catalan HTS | 6 | .30/.30/.33/.07 | improvised: hot anger, elated, tearful; 8% noise | brown noise at 15-30 dB, broadcast compand, Vorbis, 22.05 kHz |
| `synth-ru` | festival Russian clunits | 12 | .06/.30/.34/.30 | mixed: cold anger, content, tearful; 10% noise | far-field reverb, crowd at 5-20 dB, MS-ADPCM, 16 kHz |

Needs `festival`, its voices (`festvox-czech-dita festvox-czech-machac festvox-czech-ph festvox-czech-krb
festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts festvox-ru`) and `sox` with `libsox-fmt-all`;
nothing is downloaded at run time and no Python package beyond the base install is needed. The same preset,
seed, sizes and tool versions give identical arrays.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset

from ..storage import cached_generation
from . import festvox_render as render
from .corpus import class_counts, corpus_dataset, sized_preset, source_crc
from .festvox_render import Reading

Point = tuple[float, float, float]  # arousal, valence, dominance (about -1..1)

# Class regions (centres) used by the presets: the same label at different places.
HOT, COLD = (0.9, -0.7, 0.8), (0.35, -0.7, 0.9)
ELATED, CONTENT = (0.8, 0.8, 0.5), (0.25, 0.7, 0.2)
DEPRESSED, TEARFUL, MILD_SAD = (-0.8, -0.6, -0.6), (0.15, -0.8, -0.8), (-0.45, -0.5, -0.4)
CALM = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Display:
    """A corpus's display rules: prosody per unit of arousal (a), valence (v) and dominance (d)."""

    f0_st_a: float  # f0 level, semitones per unit arousal
    f0_st_v: float  # ... per unit valence (smiling voices are higher)
    range_a: float  # log factor on the f0 range per unit arousal (diphone voices only)
    tempo_a: float  # log speaking-rate factor per unit arousal
    loud_a: float  # dB per unit arousal
    loud_d: float  # dB per unit dominance
    effort_db: float  # treble shelf (2.5 kHz) dB per unit of (arousal + dominance) / 2: vocal effort
    tremor: float  # tremolo depth (x 100%) per unit of (-valence) x (-dominance): a trembling voice
    harsh: float  # overdrive gain (x 20 dB) per unit of arousal x dominance: a shouted, harsh voice


@dataclass(frozen=True)
class FestvoxPreset:
    """A corpus of this family."""

    name: str
    labels: tuple[str, str, str, str]  # raw label strings for angry, happy, neutral, sad
    language: str  # key of `SENTENCES` and `LANGUAGES`
    voices: tuple[str, ...]  # festival voices, cycled over the speakers
    priors: tuple[float, float, float, float]
    centres: tuple[Point, Point, Point, Point]  # class regions' centres
    spread: float  # sd of an utterance's point around its centre (each axis)
    intensity: float  # scales the centres: acted > 1 > natural
    label_noise: float  # share of labels moved to the nearest other class (annotator disagreement)
    display: Display
    n_speakers: int
    n_per_class_per_speaker: int  # the mean over classes: a speaker reads 4 * this many utterances
    formant_range: tuple[float, float]  # speakers' sox speed factor before pitch correction (vocal tract)
    f0_spread_st: float  # speakers' f0 offset sd, semitones
    sampling_rate: int
    noise: str  # festvox_render.noise kind
    snr_db: tuple[float, float]  # per-utterance SNR range against the utterance's own speech level
    reverb: tuple[float, float] | None = None  # sox reverberance range (%) over speakers; None = dry
    band_hz: tuple[float, float] | None = None
    dynamics: str | None = None  # key of `DYNAMICS`
    codec: str | None = None  # key of festvox_render.CODECS


# language: (festival text encoding, engine kind, Debian packages of its voices)
LANGUAGES = {
    "cs": ("iso-8859-2", "diphone", "festival-czech festvox-czech-dita festvox-czech-machac festvox-czech-ph "
                                    "festvox-czech-krb"),
    "fi": ("iso-8859-1", "diphone", "festvox-suopuhe-lj festvox-suopuhe-mv"),
    "ca": ("utf-8", "hts", "festival-ca festvox-ca-ona-hts"),
    "ru": ("utf-8", "clunits", "festvox-ru"),
}

DYNAMICS = {  # sox compand settings: attack,decay  soft-knee:transfer points  make-up gain  initial level  delay
    "agc": ["compand", "0.3,1.2", "6:-80,-80,-60,-42,-30,-28,0,-18", "0", "-60", "0.2"],
    "broadcast": ["compand", "0.005,0.12", "6:-70,-70,-36,-36,0,-14", "6", "-40", "0.005"],
}

FESTVOX_PRESETS: dict[str, FestvoxPreset] = {
    "synth-cs": FestvoxPreset(
        name="synth-cs", labels=("hnev", "radost", "neutralni", "smutek"), language="cs",
        voices=("czech_dita", "czech_machac", "czech_ph", "czech_krb"), priors=(0.25, 0.25, 0.25, 0.25),
        centres=(HOT, ELATED, CALM, DEPRESSED), spread=0.15, intensity=1.1, label_noise=0.03,
        display=Display(5.0, 1.5, 0.5, 0.18, 7.0, 2.0, 6.0, 0.6, 0.8),
        n_speakers=8, n_per_class_per_speaker=12, formant_range=(0.94, 1.06), f0_spread_st=1.5,
        sampling_rate=44100, noise="pink", snr_db=(28.0, 40.0), reverb=(10.0, 25.0),
    ),
    "synth-fi": FestvoxPreset(
        name="synth-fi", labels=("viha", "ilo", "neutraali", "suru"), language="fi",
        voices=("suo_fi_lj_diphone", "hy_fi_mv_diphone"), priors=(0.14, 0.14, 0.60, 0.12),
        centres=(COLD, CONTENT, CALM, MILD_SAD), spread=0.25, intensity=1.1, label_noise=0.12,
        display=Display(3.5, 3.0, 0.4, 0.15, 4.0, 4.0, 6.0, 0.5, 0.0),
        n_speakers=25, n_per_class_per_speaker=4, formant_range=(0.88, 1.12), f0_spread_st=2.5,
        sampling_rate=8000, noise="crowd", snr_db=(10.0, 24.0), band_hz=(300.0, 3400.0), dynamics="agc",
        codec="gsm",
    ),
    "synth-ca": FestvoxPreset(
        name="synth-ca", labels=("rabia", "alegria", "neutre", "tristesa"), language="ca",
        voices=("upc_ca_ona_hts",), priors=(0.30, 0.30, 0.33, 0.07),
        centres=((0.8, -0.6, 0.6), ELATED, CALM, TEARFUL), spread=0.25, intensity=0.9, label_noise=0.08,
        display=Display(4.0, 2.5, 0.0, 0.2, 6.0, 1.0, 5.0, 0.8, 0.5),
        n_speakers=6, n_per_class_per_speaker=15, formant_range=(0.88, 1.12), f0_spread_st=2.5,
        sampling_rate=22050, noise="brown", snr_db=(15.0, 30.0), dynamics="broadcast", codec="vorbis",
    ),
    "synth-ru": FestvoxPreset(
        name="synth-ru", labels=("gnev", "radost", "neitral", "grust"), language="ru",
        voices=("msu_ru_nsh_clunits",), priors=(0.06, 0.30, 0.34, 0.30),
        centres=((0.4, -0.8, 0.8), (0.45, 0.75, 0.3), CALM, (-0.3, -0.7, -0.7)), spread=0.3, intensity=0.85,
        label_noise=0.10, display=Display(3.5, 1.0, 0.0, 0.22, 5.0, 3.0, 7.0, 0.5, 1.0),
        n_speakers=12, n_per_class_per_speaker=7, formant_range=(0.88, 1.12), f0_spread_st=2.5,
        sampling_rate=16000, noise="crowd", snr_db=(5.0, 20.0), reverb=(45.0, 80.0), band_hz=(100.0, 7000.0),
        codec="ms-adpcm",
    ),
}

# Neutral statements (the words carry no emotion), 5-9 words.
SENTENCES: dict[str, tuple[str, ...]] = {
    "cs": (
        "Vlak do Brna odjíždí z třetího nástupiště.", "Na stole leží dvě knihy a jedna mapa.",
        "Zítra ráno budeme malovat plot za domem.", "Obchod s potravinami zavírá v osm večer.",
        "Tento týden jsem přečetl tři dlouhé dopisy.", "Kancelář se přestěhovala do vedlejší budovy.",
        "Ve sklepě jsou staré židle a krabice.", "Schůze začne hned po obědě v malé místnosti.",
        "Tramvaj číslo devět jezdí kolem parku.", "Formulář je potřeba vyplnit modrým perem.",
        "Na podzim sbíráme jablka na zahradě.", "Ten starý most opravovali celé léto.",
        "Kniha leží na stole vedle okna.", "Telefonní číslo najdete na zadní straně.",
    ),
    "fi": (
        "Juna Tampereelle lähtee kolmannelta laiturilta.", "Pöydällä on kaksi kirjaa ja yksi kartta.",
        "Huomenna aamulla maalaamme aidan talon takana.", "Ruokakauppa sulkeutuu kello kahdeksan illalla.",
        "Luin tällä viikolla kolme pitkää kirjettä.", "Toimisto muutti viereiseen rakennukseen.",
        "Kellarissa on vanhoja tuoleja ja laatikoita.", "Kokous alkaa heti lounaan jälkeen.",
        "Raitiovaunu numero yhdeksän kulkee puiston ohi.", "Lomake täytetään sinisellä kynällä.",
        "Syksyllä poimimme omenoita puutarhasta.", "Vanhaa siltaa korjattiin koko kesän.",
        "Kirja on pöydällä ikkunan vieressä.", "Puhelinnumero löytyy takasivulta.",
    ),
    "ca": (
        "El tren cap a Girona surt de la tercera via.", "A la taula hi ha dos llibres i un mapa.",
        "Demà al matí pintarem la tanca del jardí.", "La botiga de queviures tanca a les vuit del vespre.",
        "Aquesta setmana he llegit tres cartes llargues.", "L'oficina s'ha traslladat a l'edifici del costat.",
        "Al soterrani hi ha cadires velles i capses.", "La reunió començarà just després de dinar.",
        "El tramvia passa pel costat del parc.", "Cal omplir el formulari amb un bolígraf blau.",
        "A la tardor collim pomes a l'hort.", "Van arreglar el pont vell durant tot l'estiu.",
        "El llibre és a la taula al costat de la finestra.", "El número de telèfon és a la pàgina del darrere.",
    ),
    "ru": (
        "Поезд в Москву отправляется с третьего пути.", "На столе лежат две книги и одна карта.",
        "Завтра утром мы будем красить забор за домом.", "Продуктовый магазин закрывается в восемь вечера.",
        "На этой неделе я прочитал три длинных письма.", "Офис переехал в соседнее здание.",
        "В подвале стоят старые стулья и коробки.", "Собрание начнется сразу после обеда.",
        "Трамвай номер девять ходит мимо парка.", "Анкету нужно заполнить синей ручкой.",
        "Осенью мы собираем яблоки в саду.", "Старый мост ремонтировали все лето.",
        "Книга лежит на столе рядом с окном.", "Номер телефона написан на последней странице.",
    ),
}

_SOURCE_CRC = source_crc(__file__, render.__file__)


@dataclass(frozen=True)
class _Speaker:
    voice: str
    formant: float  # sox speed factor, undone in f0 by `pitch`
    f0_st: float
    rate: float  # > 1 = slower
    level_db: float
    timbre: tuple[float, float]  # equalizer centre (Hz) and gain (dB)
    expressivity: float
    reverb: tuple[float, float, float] | None  # reverberance %, room scale %, pre-delay ms


def tool_versions() -> str:
    """festival's and sox's version lines (part of every fingerprint); a clear error when one is missing."""
    return "; ".join([render.version_line("festival", "festival"), render.version_line("sox", "sox libsox-fmt-all")])


def make_festvox_corpus(
    preset: str | FestvoxPreset,
    seed: int = 0,
    n_per_class_per_speaker: int | None = None,
    n_speakers: int | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Generate a corpus of this family as a `datasets.Dataset` (the columns of `make_synthetic_corpus`:
    `audio`, `emotion`, `speaker`, `utt_id`).

    Each speaker reads `4 * n_per_class_per_speaker` utterances split over the classes by `priors` (largest
    remainder) before label noise. Every utterance has its own random stream keyed by (speaker, class, index), so
    changing the sizes keeps the utterances both sizes share (crowd noise aside, which is drawn per corpus). With a
    `cache_dir`, the corpus is saved there and read back next time (`storage.cached_generation`).
    """
    preset = sized_preset(preset, FESTVOX_PRESETS, "festvox-family", n_per_class_per_speaker, n_speakers)
    settings = repr((preset, SENTENCES[preset.language], LANGUAGES[preset.language], DYNAMICS, seed,
                     tool_versions())).encode()
    fingerprint = f"{_SOURCE_CRC:08x}{zlib.crc32(settings):08x}"
    return cached_generation(fingerprint, cache_dir, lambda: _generate(preset, seed, fingerprint))


def _generate(preset: FestvoxPreset, seed: int, fingerprint: str) -> Dataset:
    encoding, engine, packages = LANGUAGES[preset.language]
    key = [seed, zlib.crc32(preset.name.encode()), 7]
    speakers = [_speaker(preset, s, np.random.default_rng([*key, 1, s])) for s in range(preset.n_speakers)]
    counts = class_counts(preset.priors, 4 * preset.n_per_class_per_speaker)
    plans, readings = [], []
    for s, spk in enumerate(speakers):
        for e in range(4):
            for k in range(counts[e]):
                rng = np.random.default_rng([*key, 2, s, e, k])
                point, label = _draw(preset, spk, e, rng)
                reading, post = _prosody(preset, engine, spk, point, rng)
                readings.append(reading)
                plans.append((s, e, k, label, post, rng))
    sentences = SENTENCES[preset.language]
    crowd_rng = np.random.default_rng([*key, 0])
    n_crowd = 8 if preset.noise == "crowd" else 0
    crowd_requests = [Reading(preset.voices[i % len(preset.voices)], sentences[int(crowd_rng.integers(len(sentences)))])
                      for i in range(n_crowd)]
    waves = render.synthesise(readings + crowd_requests, encoding, dict.fromkeys(preset.voices, packages))
    work = max(preset.sampling_rate, 16000)
    crowd = [render.floats(render.sox(w, fs, [], fs_out=work)) for w, fs in waves[len(readings):]]
    bank = render.noise(preset.noise, work, 20.0, crowd, crowd_rng)
    arrays, emotions, speaker_ids, utt_ids = [], [], [], []
    for (s, e, k, label, post, rng), (wave, fs) in zip(plans, waves[: len(readings)], strict=True):
        arrays.append(_utterance(preset, speakers[s], post, wave, fs, work, bank, rng))
        emotions.append(preset.labels[label])
        speaker_ids.append(f"spk{s:02d}")
        utt_ids.append(f"{preset.name}-spk{s:02d}-{e}{k:03d}")
    return corpus_dataset(arrays, emotions, speaker_ids, utt_ids, preset.sampling_rate, preset.name, fingerprint)


def _speaker(preset: FestvoxPreset, s: int, rng: np.random.Generator) -> _Speaker:
    reverb = None
    if preset.reverb is not None:
        reverb = (float(rng.uniform(*preset.reverb)), float(rng.uniform(40, 100)), float(rng.uniform(0, 20)))
    return _Speaker(
        voice=preset.voices[s % len(preset.voices)],
        formant=float(rng.uniform(*preset.formant_range)),
        f0_st=float(rng.normal(0.0, preset.f0_spread_st)),
        rate=float(np.exp(rng.normal(0.0, 0.07))),
        level_db=float(rng.uniform(-4.0, 4.0)),
        timbre=(float(np.exp(rng.uniform(np.log(300), np.log(3000)))), float(rng.normal(0.0, 3.0))),
        expressivity=float(np.exp(rng.normal(0.0, 0.2))),
        reverb=reverb,
    )


def _draw(preset: FestvoxPreset, spk: _Speaker, e: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """An utterance's point in (arousal, valence, dominance) and its (possibly disagreeing) label."""
    centres = np.asarray(preset.centres, dtype=float) * preset.intensity
    scale = spk.expressivity * np.exp(rng.normal(0.0, 0.15))
    point = centres[e] * scale + rng.normal(0.0, preset.spread, 3)
    label = e
    if rng.random() < preset.label_noise:
        distance = np.linalg.norm(centres - point, axis=1)
        distance[e] = np.inf
        label = int(np.argmin(distance))
    return point, label


def _prosody(preset: FestvoxPreset, engine: str, spk: _Speaker, point: np.ndarray,
             rng: np.random.Generator) -> tuple[Reading, dict]:
    """The festival request and the sox-side settings of one utterance, by the corpus's display rules."""
    a, v, d = (float(x) for x in point)
    rule = preset.display
    f0_st = rule.f0_st_a * a + rule.f0_st_v * v + rng.normal(0.0, 0.5)
    stretch = spk.rate * float(np.exp(-rule.tempo_a * a + rng.normal(0.0, 0.03)))
    text = SENTENCES[preset.language][int(rng.integers(len(SENTENCES[preset.language])))]
    post = {
        "f0_st": spk.f0_st,
        "tempo": 1.0,
        "level_db": rule.loud_a * a + rule.loud_d * d + spk.level_db + rng.normal(0.0, 1.0),
        "effort_db": float(np.clip(rule.effort_db * (a + d) / 2, -8.0, 10.0)),
        "tremolo": float(np.clip(rule.tremor * max(0.0, -v) * max(0.0, -d) * 100, 0.0, 60.0)),
        "overdrive": float(np.clip(rule.harsh * max(0.0, a) * max(0.0, d) * 20, 0.0, 25.0)),
    }
    if engine == "diphone":
        reading = Reading(spk.voice, text, f0_scale=2 ** (f0_st / 12),
                          f0_range=float(np.exp(rule.range_a * a)), stretch=stretch)
    elif engine == "hts":  # the engine's -fm (half-tones) changes nothing in festival 2.5: f0 goes to sox
        reading = Reading(spk.voice, text, hts_speed=1 / stretch)
        post["f0_st"] += f0_st
    else:  # unit selection: festival keeps the recorded prosody, sox moves it
        reading = Reading(spk.voice, text)
        post["f0_st"] += f0_st
        post["tempo"] = 1 / stretch
    return reading, post


def _utterance(preset: FestvoxPreset, spk: _Speaker, post: dict, wave: np.ndarray, fs: int, work: int,
               bank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speaker and emotion effects (sox), level, pauses and noise at a drawn SNR, then the channel (sox)."""
    cents = 100 * post["f0_st"] - 1200 * np.log2(spk.formant)
    effects = ["speed", f"{spk.formant:.4f}", "pitch", f"{cents:.1f}", "tempo", "-s",
               f"{post['tempo'] / spk.formant:.4f}", "equalizer", f"{spk.timbre[0]:.0f}", "1.0q",
               f"{spk.timbre[1]:.2f}", "treble", f"{post['effort_db']:.2f}", "2500"]
    if post["tremolo"] > 2:
        effects += ["tremolo", f"{rng.uniform(4.5, 7.0):.2f}", f"{post['tremolo']:.1f}"]
    if post["overdrive"] > 1:
        effects += ["overdrive", f"{post['overdrive']:.1f}", "20"]
    if spk.reverb is not None:
        effects += ["reverb", f"{spk.reverb[0]:.0f}", "50", f"{spk.reverb[1]:.0f}", "0", f"{spk.reverb[2]:.0f}",
                    "channels", "1"]
    speech = render.floats(render.sox(wave, fs, effects, fs_out=work))
    speech = speech * 10 ** ((render.REF_DB + post["level_db"] - render.active_db(speech, work)) / 20)
    pads = (rng.uniform(0.15, 0.4, 2) * work).astype(int)
    speech = np.concatenate([np.zeros(pads[0]), speech, np.zeros(pads[1])])
    snr = rng.uniform(*preset.snr_db)
    start = int(rng.integers(len(bank) - len(speech)))
    speech += bank[start : start + len(speech)] * 10 ** ((render.active_db(speech, work) - snr) / 20)
    channel = []
    if preset.band_hz is not None:
        channel += ["sinc", f"{preset.band_hz[0]:.0f}-{min(preset.band_hz[1], 0.45 * preset.sampling_rate):.0f}"]
    if preset.dynamics is not None:
        channel += DYNAMICS[preset.dynamics]
    peak = np.abs(speech).max()
    speech = speech * (0.9 / peak if peak > 0.9 else 1.0)  # the recorder's gain for the rare shout that clips
    out = render.floats(render.sox(speech, work, channel, fs_out=preset.sampling_rate))
    out = render.codec(out, preset.sampling_rate, preset.codec)
    peak = np.abs(out).max()
    return (out * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)
