"""Run as a script: one optimizer step of small models on one device and on two replicas of a
``MirroredStrategy`` over two logical CPUs (an odd global batch, so the replicas get 4 and 3 rows);
prints ``{model: largest absolute difference of any weight after the step}`` as JSON.

A separate process: logical devices must be configured before TensorFlow starts its runtime.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_lab.config import AutoRecConfig, MultAutoencoderConfig  # noqa: E402
from tfrs_lab.models.autoencoder import AutoRec, MultAutoencoder  # noqa: E402

GLOBAL_BATCH = 7


def builders(rng: np.random.Generator) -> dict:
    """name -> (build(), one global batch)."""
    users, items = 12, 20
    ratings = rng.integers(1, 6, (GLOBAL_BATCH, users)).astype(np.float32)
    mask = (rng.random((GLOBAL_BATCH, users)) < 0.4).astype(np.float32)  # uneven observed counts per row
    multi_hot = (rng.random((GLOBAL_BATCH, items)) < 0.3).astype(np.float32)
    autorec = AutoRecConfig(hidden_units=8, dropout=0.0, l2_regularization=0.01)
    dae = MultAutoencoderConfig(encoder_layers=(16,), latent_dim=8, dropout=0.0, l2_regularization=0.01)
    return {
        "autorec": (lambda: AutoRec(users, autorec), {"ratings": ratings * mask, "mask": mask}),
        "dae": (lambda: MultAutoencoder(items, dae, variational=False), {"items": multi_hot}),
    }


def one_step(build, batch: dict, strategy: tf.distribute.Strategy, weights: list[np.ndarray]) -> list[np.ndarray]:
    """The weights after one SGD step on ``batch`` (one global batch) under ``strategy``."""
    with strategy.scope():
        model = build()
        model.set_weights(weights)
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.5))
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(GLOBAL_BATCH)
    model.fit(ds, epochs=1, verbose=0)
    return model.get_weights()


def main() -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert two.num_replicas_in_sync == 2
    tf.keras.utils.set_random_seed(0)
    out = {}
    for name, (build, batch) in builders(np.random.default_rng(0)).items():
        start = build().get_weights()
        single = one_step(build, batch, tf.distribute.get_strategy(), start)
        mirrored = one_step(build, batch, two, start)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(single, start))
        out[name] = {"difference": max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)),
                     "moved": moved}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
