"""The artefact scan of the audit reads every numeric format and tells a stored training row
from an aggregate (a mean, a loading vector) and from chance."""

import json

import numpy as np
import pandas as pd

from coherent_jax import audit


def test_every_numeric_format_is_read(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((3, 4)))
    (tmp_path / "b.json").write_text(json.dumps({"k": [[1.0, 2.0], [3.0, 4.0]], "s": "text"}))
    (tmp_path / "c.jsonl").write_text('{"v": [1, 2, 3]}\n{"v": [4, 5, 6]}\n')
    pd.DataFrame(np.zeros((2, 3)), index=["p", "q"]).to_csv(tmp_path / "d.csv")
    (tmp_path / "e.md").write_text("# a report")
    found = {(f, n): (a, why) for f, n, a, why in audit.stored_arrays(str(tmp_path))}
    assert found[("a.npz", "x")][0].shape == (3, 4)
    assert found[("b.json", "0")][0].shape == (2, 2)
    assert {f for f, _ in found if f == "c.jsonl"} and found[("d.csv", "0")][0].shape == (2, 3)
    assert found[("e.md", "")][0] is None and found[("e.md", "")][1] == "not a numeric format"


def test_vectors_in_both_orientations():
    assert audit._vectors(np.zeros((5, 7)), 7).shape == (5, 7)
    assert audit._vectors(np.zeros((7, 5)), 7).shape == (5, 7)
    assert audit._vectors(np.zeros((2, 3, 7)), 7).shape == (6, 7)
    assert audit._vectors(np.zeros(6), 7).shape == (0, 7)


def test_a_copy_is_flagged_an_aggregate_and_chance_are_not():
    rng = np.random.default_rng(0)
    factors = rng.normal(0, 1, (400, 3)) @ rng.normal(0, 1, (3, 50))
    rows = factors + rng.normal(0, 0.5, (400, 50))
    train, held = rows[:300], rows[300:]
    reference = audit._Reference.of("rna", "features", train, held)
    assert reference.compare(train[:10] + 1e-3)["near_copies"] == 10
    aggregates = np.vstack([train.mean(0), np.linalg.svd(train - train.mean(0))[2][:5] * 3,
                            rng.normal(0, 1, (2000, 50))])
    assert reference.compare(aggregates)["near_copies"] == 0
