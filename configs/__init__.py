"""The shipped configs, installed as the package ``tfrs_lab.configs``.

This folder is ``configs/`` of the checkout; ``pyproject.toml`` maps it to ``tfrs_lab.configs`` and
ships every file in it as package data, so an editable install, ``pip install .`` and a wheel all
find them. Code reads them through :func:`tfrs_lab.config.shipped_config` (``importlib.resources``);
``python -m tfrs_lab.configs [NAME ...]`` prints where they are installed.
"""
