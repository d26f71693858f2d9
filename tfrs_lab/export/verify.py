"""The reload check every exporter runs before publishing a version: load the SavedModel in a fresh
Python process (nothing of the exporting process leaks in, ScaNN ops registered only when asked)
and require the same answers as the in-memory model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig

__all__ = ["answer_in_fresh_process", "require_same_answers"]


_VERIFY_SCRIPT = """
import json, os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
path, needs_scann, inputs = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
signature = sys.argv[4] if len(sys.argv) > 4 else "serving_default"
if needs_scann:
    import scann  # registers the Scann ops before loading
import tensorflow as tf
loaded = tf.saved_model.load(path)
fn = loaded.signatures[signature]
specs = fn.structured_input_signature[1]  # input name -> TensorSpec: each value gets its declared dtype
out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
print(json.dumps({"movie_ids": [[m.decode() for m in row] for row in out["movie_ids"].numpy()],
                  "scores": out["scores"].numpy().tolist(),
                  "scann_imported": "scann" in sys.modules}))
"""


def answer_in_fresh_process(path: Path, user_ids: list[str] | None = None, *, import_scann: bool, timeout: float = 300,
                            inputs: dict[str, list] | None = None, signature: str = sig.SERVING_DEFAULT) -> dict:
    """Loads the SavedModel at ``path`` in a new Python process and returns its answer for ``user_ids``
    (or for ``inputs``: input name -> string or number values, nested lists for [batch, n] inputs;
    each is converted to the dtype the signature declares for it) on ``signature``."""
    inputs = {sig.USER_ID: user_ids} if inputs is None else inputs
    proc = subprocess.run(
        [sys.executable, "-c", _VERIFY_SCRIPT, str(path), "1" if import_scann else "0", json.dumps(inputs), signature],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"the exported model at {path} failed to load in a fresh process: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def require_same_answers(path: Path, expected: Mapping[str, tf.Tensor], *, inputs: dict[str, list], import_scann: bool,
                         signature: str = sig.SERVING_DEFAULT, compare_scores: bool = False) -> None:
    """Raises ``RuntimeError`` unless the SavedModel at ``path``, loaded in a fresh process, answers
    ``inputs`` on ``signature`` with the movie ids of ``expected`` (the in-memory model's output for
    the same inputs), and, with ``compare_scores``, the same scores (to 1e-5)."""
    fresh = answer_in_fresh_process(path, import_scann=import_scann, inputs=inputs, signature=signature)
    same = fresh[sig.MOVIE_IDS] == np.asarray(expected[sig.MOVIE_IDS]).astype(str).tolist()
    if compare_scores:
        same = same and np.allclose(fresh[sig.SCORES], np.asarray(expected[sig.SCORES]), rtol=1e-5, atol=1e-5)
    if not same:
        raise RuntimeError("the reloaded model answers differently from the in-memory model")
