"""recipes/sweep.py and recipe-level checkpoint selection: an unlabelled target, picks by label-free criteria."""

import json
import subprocess
import sys

import pytest
from test_recipes import REPO, TINY_ARGS, _env


@pytest.mark.slow
def test_sweep_picks_a_run_by_a_label_free_criterion_on_an_unlabelled_target(tmp_path):
    output = tmp_path / "sweep"
    command = [sys.executable, str(REPO / "recipes" / "sweep.py"), "--sweep", "adaptation_method=emodna,source_only",
               "--criterion", "source_uar", "--output_dir", str(output), "--target_label_column", "none", *TINY_ARGS,
               # and within each run, the checkpoint a criterion picks (the recipe command)
               "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
               "--load_best_model_at_end", "true", "--metric_for_best_model", "target_im"]
    completed = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads((output / "sweep.json").read_text())
    names = [run["settings"]["adaptation_method"] for run in result["runs"]]
    assert names == ["emodna", "source_only"]
    for run in result["runs"]:
        metrics = json.loads((output / f"adaptation_method-{run['settings']['adaptation_method']}" / "metrics.json")
                             .read_text())
        assert metrics["config"]["model_config"]["adaptation_method"] == run["settings"]["adaptation_method"]
        assert run["source_uar"] == metrics["selection"]["source_uar"] == metrics["source"]["uar"]
        assert run["target_uar_for_information_only"] is None  # the target is unlabelled
        best = metrics["selection"]["best_checkpoint"]
        assert best["metric"] == "target_im" and best["loaded"] and best["checkpoint"].endswith(("-1", "-2"))
        state = json.loads((output / f"adaptation_method-{run['settings']['adaptation_method']}" /
                            "trainer_state.json").read_text())
        evaluations = [e for e in state["log_history"] if "eval_target_im" in e]
        assert len(evaluations) == 2 and not any("eval_target_uar" in e for e in evaluations)  # never scored
        assert best["value"] == max(e["eval_target_im"] for e in evaluations)
    best = max(result["runs"], key=lambda run: run["source_uar"])
    assert result["picked"] == best["output_dir"] and "(picked)" in (output / "sweep.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "adaptation_method=emodna", "--criterion", "target_uar"], "label-free criterion"),
    (["--sweep", "target_dataset=a,b"], "corpus options cannot be swept"),
    (["--sweep", "adaptation_method"], "NAME=VALUE1,VALUE2"),
])
def test_sweep_refuses_bad_requests(tmp_path, argv, message):
    completed = subprocess.run([sys.executable, str(REPO / "recipes" / "sweep.py"), *argv, "--output_dir",
                                str(tmp_path / "out")], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode != 0 and message in completed.stderr, completed.stderr[-2000:]
