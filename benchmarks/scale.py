"""Scale benchmark: peak memory and preprocessing throughput vs corpus size, training throughput vs dataloader workers.

The data path of the default recipe (decoding + resampling + openSMILE eGeMAPS functionals cached in Arrow files,
then `EmoDnaTrainer`) on generated corpora of 1k, 10k and 50k utterances (source + target halves), each size in a
fresh process with an empty cache folder:

    OMP_NUM_THREADS=1 python benchmarks/scale.py                      # all sizes, writes benchmarks/results/scale.json
    OMP_NUM_THREADS=1 python benchmarks/scale.py --sizes 1000 --num_proc 1 --out /tmp/scale-small.json

The corpora are written once under `--work_dir` as 16-bit wav files and CSV manifests: a bank of 200 utterances of
the built-in generator per corpus (source `synth-a`, 16 kHz; target `synth-b`, 8 kHz, resampled when decoded),
cropped to `--duration_s`, each file a copy at its own random gain (the generator takes ~17 ms per utterance; the
copies take ~0.4 ms). Memory is read from /proc: `peak_rss_mb` is the process's high-water mark (VmHWM, which
counts memory-mapped file pages it touched), `peak_anon_mb` the sampled (every 20 ms) peak of its private,
anonymous memory (RssAnon), also per phase (`phase_peak_anon_mb`: preprocess, train, evaluate), `peak_file_mb`
the sampled peak of its file-backed resident pages (RssFile) and `peak_worker_rss_mb` the largest `num_proc`
worker's high-water mark. The issue's goal is on `peak_rss_mb` (peak RSS at 50k within ~20% of that at 1k).
`--keep_pages` runs without `emodna_hf.data.memory.release_memory` (which gives back the pages of memory-mapped
Arrow files that reading left resident, and freed heap), to measure what it buys.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BANK = 200  # distinct generated utterances per corpus


def generate(work_dir: Path, n_max: int, duration_s: float) -> dict:
    """Write `n_max / 2` wav files per corpus (once) and the manifests of every size; returns timings."""
    import soundfile as sf

    from emodna_hf.data import make_synthetic_corpus

    stamp = work_dir / f"generated-{n_max}-{duration_s}.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    started = time.time()
    timings = {}
    for role, preset in (("source", "synth-a"), ("target", "synth-b")):
        t = time.time()
        bank = make_synthetic_corpus(preset, n_per_class_per_speaker=5, n_speakers=10)  # 4 × 5 × 10 = 200
        rate = bank[0]["audio"]["sampling_rate"]
        keep = int(duration_s * rate)
        waves = [np.asarray(row["audio"]["array"], np.float32)[:keep] for row in bank]
        emotions, speakers = bank["emotion"][:], bank["speaker"][:]
        timings[f"{role}_bank_s"] = time.time() - t
        t = time.time()
        folder = work_dir / role
        folder.mkdir(parents=True, exist_ok=True)
        gains = np.random.default_rng(len(role)).uniform(0.3, 1.0, n_max // 2)
        rows = []
        for i in range(n_max // 2):
            j = i % BANK
            sf.write(folder / f"{i:06d}.wav", waves[j] * gains[i], rate, subtype="PCM_16")
            # 50 speakers per 200-copy block: a source split by speaker has many speakers to draw from.
            rows.append(f"{role}/{i:06d}.wav,{emotions[j]},{speakers[j]}-{i // BANK % 50}")
        timings[f"{role}_write_s"] = time.time() - t
        for n in SIZES_ALL:
            if n <= n_max:
                (work_dir / f"{role}-{n}.csv").write_text("file_name,emotion,speaker\n" + "\n".join(rows[: n // 2]))
    timings["total_s"] = time.time() - started
    timings["files"] = n_max
    stamp.write_text(json.dumps(timings))
    return timings


SIZES_ALL = (1000, 10000, 50000)


class MemorySampler:
    """Samples this process's private (anonymous) and file-backed resident memory every 20 ms."""

    def __init__(self):
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.phase_peak = 0  # RssAnon since the last `phase` call
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for key, value in _status().items():
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], value)
                if key == "RssAnon":
                    self.phase_peak = max(self.phase_peak, value)
            time.sleep(0.02)

    def phase(self) -> float:
        """The peak private memory (MB) since the previous call."""
        peak, self.phase_peak = self.phase_peak, _status()["RssAnon"]
        return round(max(peak, self.phase_peak) / 1024, 1)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {f"peak_{'anon' if k == 'RssAnon' else 'file'}_mb": round(v / 1024, 1) for k, v in self.peak.items()}


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])  # kB
    return values


def measure(args) -> dict:
    """One corpus size in this process: load + prepare (timed, memory sampled), then train and evaluate."""
    from datasets.utils.logging import disable_progress_bar

    from emodna_hf.arguments import ModelArguments
    from emodna_hf.data import CorpusSpec, build_uda_data
    from emodna_hf.experiment import build_model
    from emodna_hf.feature_extraction import create_feature_extractor
    from emodna_hf.preparation import prepare_inputs
    from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

    disable_progress_bar()
    sampler = MemorySampler()
    work_dir, n = Path(args.work_dir), args.size
    cache = Path(args.cache_dir)
    record: dict = {"size": n, "num_proc": args.num_proc, "duration_s": args.duration_s,
                    "backbone_type": args.backbone_type, "release_memory": not os.environ.get("EMODNA_HF_KEEP_PAGES")}
    t = time.time()
    data = build_uda_data(
        [CorpusSpec(name="synth-scale-source", source=work_dir / f"source-{n}.csv")],
        CorpusSpec(name="synth-scale-target", source=work_dir / f"target-{n}.csv"),
        scheme="categorical4", sampling_rate=16000, cache_dir=cache, num_proc=args.num_proc,
    )
    record["decode_s"] = time.time() - t
    model = build_model(ModelArguments(backbone_type=args.backbone_type), data.label_names, data.corpus_names, 16000)
    t = time.time()
    inputs, cached = prepare_inputs(data, model, create_feature_extractor(model.config), batch_size=64)
    record["features_s"] = time.time() - t
    record["preprocess_s"] = record["decode_s"] + record["features_s"]
    record["preprocess_utt_per_s"] = n / record["preprocess_s"]
    record["rss_after_preprocess_mb"] = round(_status()["VmRSS"] / 1024, 1)
    phases = record["phase_peak_anon_mb"] = {"preprocess": sampler.phase()}
    del data
    training = []
    for workers in args.dataloader_workers:
        targs = EmoDnaTrainingArguments(
            output_dir=str(cache / "out"), max_steps=args.train_steps, per_device_train_batch_size=32,
            per_device_eval_batch_size=256, learning_rate=1e-3, logging_steps=10**6, save_strategy="no",
            report_to="none", dataloader_num_workers=workers, disable_tqdm=True, seed=0,
        )
        trainer = EmoDnaTrainer(model=model, args=targs, train_dataset=inputs.source_train,
                                target_dataset=inputs.target_train, eval_dataset={"target": inputs.target_eval})
        t = time.time()
        trainer.train()
        seconds = time.time() - t
        training.append({"dataloader_num_workers": workers, "steps": args.train_steps, "train_s": seconds,
                         "steps_per_s": args.train_steps / seconds,
                         "utt_per_s": args.train_steps * 64 / seconds})
    record["training"] = training
    phases["train"] = sampler.phase()
    t = time.time()
    metrics = trainer.evaluate()
    record["evaluate_s"] = time.time() - t
    phases["evaluate"] = sampler.phase()
    record["eval_target_uar"] = metrics.get("eval_target_uar")
    record.update(sampler.stop())
    status = _status()
    record["peak_rss_mb"] = round(status["VmHWM"] / 1024, 1)
    record["peak_worker_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    record["cache_mb"] = round(sum(f.stat().st_size for f in cache.glob("*.arrow")) / 2**20, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_ALL))
    parser.add_argument("--num_proc", type=int, default=2, help="Dataset.map worker processes")
    parser.add_argument("--dataloader_workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--train_steps", type=int, default=60)
    parser.add_argument("--duration_s", type=float, default=0.5)
    parser.add_argument("--backbone_type", default="opensmile", help="opensmile (the recipe's) or tcn (MFCC, fast)")
    parser.add_argument("--keep_pages", action="store_true", help="do not release mapped pages (for comparison)")
    parser.add_argument("--work_dir", default="/tmp/emodna-scale")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # one size, in a child process
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    import shutil

    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    generation = generate(work_dir, max(args.sizes), args.duration_s)
    print(f"corpora: {json.dumps(generation)}", flush=True)
    results = []
    for size in args.sizes:
        cache = work_dir / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        command = [sys.executable, __file__, "--size", str(size), "--cache_dir", str(cache), "--work_dir",
                   str(work_dir), "--num_proc", str(args.num_proc), "--train_steps", str(args.train_steps),
                   "--duration_s", str(args.duration_s), "--backbone_type", args.backbone_type,
                   "--dataloader_workers", *map(str, args.dataloader_workers)]
        started = time.time()
        env = dict(os.environ, **({"EMODNA_HF_KEEP_PAGES": "1"} if args.keep_pages else {}))
        output = subprocess.run(command, capture_output=True, text=True, env=env)
        if output.returncode:
            sys.exit(f"size {size} failed:\n{output.stderr[-4000:]}")
        record = json.loads(next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))[7:])
        record["process_wall_s"] = time.time() - started
        results.append(record)
        print(json.dumps(record), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    base, base_anon = results[0]["peak_rss_mb"], results[0]["peak_anon_mb"]
    summary = {
        "what": "peak memory and throughput of the default recipe's data path vs corpus size (benchmarks/scale.py)",
        "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/scale.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} CPU cores",
        "generation": generation,
        "results": results,
        "peak_rss_ratio_to_smallest": {r["size"]: round(r["peak_rss_mb"] / base, 3) for r in results},
        "peak_anon_ratio_to_smallest": {r["size"]: round(r["peak_anon_mb"] / base_anon, 3) for r in results},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
