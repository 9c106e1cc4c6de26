"""experiments/behaviour_fingerprint.py: table digests see values and ignore timings and gzip
headers; compare names what differs."""

import gzip
import os
import sys
import time

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments"))

import behaviour_fingerprint as fp  # noqa: E402


def test_table_digests_and_compare(tmp_path):
    table = pd.DataFrame({"method": ["a", "b"], "r2": [0.5, 0.25], "seconds": [1.0, 2.0]})
    table.to_csv(tmp_path / "t.csv", index=False)
    for _ in range(2):  # two gzip files of the same text, written at different times
        with gzip.open(tmp_path / "d.csv.gz", "wt") as f:
            f.write("x,y\n1,2\n")
        first = fp._tables(str(tmp_path), "p", numeric_only=False)["p/d.csv.gz"]
        time.sleep(1.1)
    assert fp._tables(str(tmp_path), "p", numeric_only=False)["p/d.csv.gz"] == first
    before = fp._tables(str(tmp_path), "r", numeric_only=True)
    table.assign(seconds=[9.0, 9.0]).to_csv(tmp_path / "t.csv", index=False)
    assert fp._tables(str(tmp_path), "r", numeric_only=True) == before  # timings ignored
    table.assign(r2=[0.5, 0.250001]).to_csv(tmp_path / "t.csv", index=False)
    after = fp._tables(str(tmp_path), "r", numeric_only=True)
    assert fp.compare(before, after) == ["differs: r/t.csv"]
    assert fp.compare(before, {}) == ["only before: r/d.csv.gz", "only before: r/t.csv"]
