"""``python -m tfrs_lab.components.entrypoint <Component> --inputs JSON --outputs JSON --parameters JSON``

Runs one component in a container (Kubeflow Pipelines / Vertex AI): ``--inputs`` and
``--outputs`` map channel keys to artifact directories (KFP's ``{{$.inputs.artifacts['k'].path}}``
placeholders), ``--parameters`` is the component's parameters as JSON. Artifact properties travel
as ``artifact.json`` inside each artifact directory, so a downstream container sees what an
upstream one recorded (split names, metrics, blessings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli

__all__ = ["main", "PROPERTIES_FILE"]

PROPERTIES_FILE = "artifact.json"


def _json(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{flag}: not valid JSON ({e.msg})") from e
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: expected a JSON object")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        p = ArgumentParser(prog="python -m tfrs_lab.components.entrypoint", description=__doc__.split("\n\n")[0])
        p.add_argument("component", help="component type (ExampleGen, Trainer, ...) or package.module:Class")
        p.add_argument("--id", help="component id (default: the type)")
        p.add_argument("--inputs", default="{}", help='{"key": "/artifact/dir"}')
        p.add_argument("--outputs", default="{}", help='{"key": "/artifact/dir"}')
        p.add_argument("--parameters", default="{}", help="the component's parameters as JSON")
        p.add_argument("--pipeline-root", default=".", help="root for defaults such as the Pusher's destination")
        p.add_argument("--verbose", action="store_true")
        args = p.parse_args(argv)
        configure_logging(args.verbose)
        from tfrs_lab.components.artifacts import Artifact
        from tfrs_lab.components.base import execute_component
        from tfrs_lab.components.runner import component_class

        cls = component_class(args.component, "component")
        comp = cls(id=args.id or cls.type_name(), **_json(args.parameters, "--parameters"))
        inputs = {}
        for key, path in _json(args.inputs, "--inputs").items():
            channel = cls.INPUTS.get(key)
            if channel is None:
                raise UsageError(f"--inputs: {comp.id}.{key} is not an input of {cls.type_name()}")
            meta = Path(path) / PROPERTIES_FILE
            props = json.loads(meta.read_text()).get("properties", {}) if meta.is_file() else {}
            inputs[key] = Artifact(channel.type_name, str(path), props)
        outs = _json(args.outputs, "--outputs")
        missing = set(cls.OUTPUTS) - set(outs)
        if missing:
            raise UsageError(f"--outputs: give a directory for {', '.join(sorted(missing))}")
        outputs = {k: Artifact(cls.OUTPUTS[k].type_name, str(outs[k])) for k in cls.OUTPUTS}
        execute_component(comp, inputs, outputs, pipeline_root=Path(args.pipeline_root))
        for art in outputs.values():
            (art.path / PROPERTIES_FILE).write_text(json.dumps(art.to_json(), indent=1, default=str))
        print(json.dumps({k: a.to_json() for k, a in outputs.items()}, default=str))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
