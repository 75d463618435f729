#!/usr/bin/env python
"""Upload a finished run's output folder to the 🤗 Hub (model, remote code, feature extractor, README.md card,
metrics.json, plots; never checkpoints or per-utterance predictions).

Text files are uploaded with every absolute path of this machine rewritten (`emodna_hf.shareable`: a local corpus
folder becomes `<corpus name>`, the output folder `<output_dir>`, and the card's usage snippet names REPO_ID); the
local files are not changed. A binary file that holds a local path is left out with a warning: TensorBoard logs
record the training arguments, output folder included.

    python recipes/push_to_hub.py outputs/default your-name/emodna-synth-a-to-synth-b [--private] [--revision BRANCH]

Use it after a run trained offline, or to retry a failed upload: the folder is uploaded as it is, so the model
card written by the run (not a generic one) ends up as the repository's README.md. An ONNX export in the folder
(`model.onnx`, from recipes/export_onnx.py) is uploaded with it; `--export_onnx` writes it first.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    from emodna_hf.hub import HubPushError, files_to_upload, push_output_folder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="The run's output folder (with README.md, config.json, model.safetensors).")
    parser.add_argument("repo_id", help="Hub model repository, e.g. your-name/emodna-emodb-to-casia.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if needed).")
    parser.add_argument("--create_pr", action="store_true", help="Open a pull request instead of committing.")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one / HF_TOKEN).")
    parser.add_argument("--dry_run", action="store_true", help="Only list the files that would be uploaded.")
    parser.add_argument("--export_onnx", action="store_true",
                        help="Export OUTPUT_DIR/model.onnx first (checked with onnxruntime) and upload it too.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.export_onnx:
        from emodna_hf.export import export_onnx

        try:
            print(f"wrote {export_onnx(args.output_dir).path}")
        except (AssertionError, FileNotFoundError) as error:
            sys.exit(f"error: {error}")
    if args.dry_run:
        print("\n".join(files_to_upload(args.output_dir)))
        return
    try:
        commit = push_output_folder(args.output_dir, args.repo_id, token=args.token, private=args.private or None,
                                    revision=args.revision, create_pr=args.create_pr)
    except HubPushError as error:
        sys.exit(f"error: {error}")
    print(getattr(commit, "commit_url", None) or commit)


if __name__ == "__main__":
    main()
