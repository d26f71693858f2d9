"""Two replicas in one process (``MirroredStrategy`` over two logical CPUs) take exactly the
single-device optimizer step: global-batch means (``cross_replica.global_mean``) with an uneven
split of the global batch (4 + 3 rows), and Keras L2 regularization shared by the replicas
(``SynchronousModel``), for Mult-DAE (not among the two-worker cluster cases) and AutoRec (masked
MSE with a different observed count in every row)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("replica_step.py")


def test_two_replicas_take_the_single_device_step():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"autorec", "dae"}
    for name, r in result.items():
        assert r["moved"] > 1e-2, (name, r)  # the step really changed the weights
        assert r["difference"] < 1e-5, (name, r)  # a per-replica mean would double the step
