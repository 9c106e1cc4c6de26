import json

import pytest

from coherent_jax import metrics_io


def test_run_info_metrics_and_progress(tmp_path, capsys):
    path = metrics_io.write_run_info(str(tmp_path), {"a": 1}, seed=3, extra={"x": "y"})
    info = json.load(open(path))
    assert info["seed"] == 3 and info["x"] == "y" and info["versions"]["packages"]["jax"]
    writer = metrics_io.MetricsWriter(str(tmp_path / "m.jsonl"))
    writer.write({"step": 1, "loss": [0.5, 0.25]})
    writer.write({"step": 2, "loss": [0.4, 0.2]})
    frame = metrics_io.read_metrics(str(tmp_path / "m.jsonl"))
    assert frame["step"].tolist() == [1, 2] and frame["loss"][1] == [0.4, 0.2]
    progress = metrics_io.Progress(10, label="t", every_seconds=0.0)
    assert progress.update(2) is None  # baseline
    line = progress.update(10)
    assert line.startswith("t: step 10/10 (100%)") and "ETA 0 s" in line


def test_json_refuses_unserialisable(tmp_path):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        metrics_io.write_json(str(tmp_path / "x.json"), {"f": object()})
