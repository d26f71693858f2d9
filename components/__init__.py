"""TFX-style pipeline components (installed as ``tfrs_lab.components``)."""
