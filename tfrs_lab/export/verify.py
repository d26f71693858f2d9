"""The reload check every exporter runs before publishing a version: load the SavedModel in a fresh
Python process (nothing of the exporting process leaks in, ScaNN ops registered only when asked)
and require the same answers as the in-memory model."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig

__all__ = ["Check", "answer_in_fresh_process", "answers_in_fresh_process", "require_same_answers"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One more signature call the reload check compares: ``signature`` on ``inputs`` (as for
    :func:`answer_in_fresh_process`) must give the string outputs of ``expected`` (with
    ``compare_numbers``, its numeric outputs too, to 1e-5)."""

    signature: str
    inputs: dict[str, list]
    expected: Mapping[str, Any]
    compare_numbers: bool = False


_VERIFY_SCRIPT = """
import json, os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
path, needs_scann, requests = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
if needs_scann:
    import scann  # registers the Scann ops before loading
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(path)
def _plain(a):
    if a.dtype == object:
        return np.vectorize(lambda b: b.decode(), otypes=[object])(a).tolist() if a.size else a.tolist()
    return a.tolist()
answers = []
for signature, inputs in requests:
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]  # input name -> TensorSpec: each value gets its declared dtype
    out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
    answers.append({**{name: _plain(t.numpy()) for name, t in out.items()}, "scann_imported": "scann" in sys.modules})
print(json.dumps(answers))
"""


def answers_in_fresh_process(path: Path, requests: Sequence[tuple[str, dict[str, list]]], *, import_scann: bool,
                             timeout: float = 300) -> list[dict]:
    """Loads the SavedModel at ``path`` once in a new Python process and returns its answer to each
    ``(signature, inputs)`` request (inputs: input name -> string or number values, nested lists for
    [batch, n] inputs; numbers are sent as float32): every output as nested lists (strings decoded),
    plus ``scann_imported``."""
    proc = subprocess.run(
        [sys.executable, "-c", _VERIFY_SCRIPT, str(path), "1" if import_scann else "0", json.dumps(list(requests))],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"the exported model at {path} failed to load in a fresh process: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def answer_in_fresh_process(path: Path, user_ids: list[str] | None = None, *, import_scann: bool, timeout: float = 300,
                            inputs: dict[str, list] | None = None, signature: str = sig.SERVING_DEFAULT) -> dict:
    """Loads the SavedModel at ``path`` in a new Python process and returns its answer for ``user_ids``
    (or for ``inputs``: input name -> string or number values, nested lists for [batch, n] inputs;
    each is converted to the dtype the signature declares for it) on ``signature``."""
    inputs = {sig.USER_ID: user_ids} if inputs is None else inputs
    return answers_in_fresh_process(path, [(signature, inputs)], import_scann=import_scann, timeout=timeout)[0]


def _strings(value: Any) -> list:
    """A string tensor/array as nested lists of ``str``."""
    array = np.asarray(value)
    return array.astype(str).tolist()


def require_same_answers(path: Path, expected: Mapping[str, tf.Tensor], *, inputs: dict[str, list], import_scann: bool,
                         signature: str = sig.SERVING_DEFAULT, compare_scores: bool = False,
                         also: Sequence[Check] = ()) -> None:
    """Raises ``RuntimeError`` unless the SavedModel at ``path``, loaded in a fresh process, answers
    ``inputs`` on ``signature`` with the item ids of ``expected`` (the in-memory model's output for
    the same inputs), and, with ``compare_scores``, the same scores (to 1e-5). Each of ``also`` (more
    signatures, checked in the same process) must give every string output of its ``expected``."""
    checks = [Check(signature, inputs, {sig.ITEM_IDS: expected[sig.ITEM_IDS]}), *also]
    fresh = answers_in_fresh_process(path, [(c.signature, c.inputs) for c in checks], import_scann=import_scann)
    same = all(answer[name] == _strings(value) if np.asarray(value).dtype.kind in "OSU" else
               not check.compare_numbers or np.allclose(answer[name], np.asarray(value), rtol=1e-5, atol=1e-5)
               for check, answer in zip(checks, fresh) for name, value in check.expected.items())
    if compare_scores:
        same = same and np.allclose(fresh[0][sig.SCORES], np.asarray(expected[sig.SCORES]), rtol=1e-5, atol=1e-5)
    if not same:
        raise RuntimeError("the reloaded model answers differently from the in-memory model")
