"""Output folders never lose a user's files: refusals, overwrite of our own outputs only,
leftovers of a killed write cleared by the next one."""

import os

import pytest

from coherent_jax import safe_io
from coherent_jax.safe_io import OutputError, output_folder


def _write(folder, name="a.txt", text="new"):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


def _tree(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


def test_new_folder_is_written_with_marker_and_no_leftovers(tmp_path):
    out = tmp_path / "out"
    with output_folder(str(out)) as tmp:
        assert tmp.endswith(".partial") and not out.exists()
        _write(tmp)
    assert safe_io.is_ours(str(out)) and (out / "a.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_empty_existing_folder_may_be_used(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with output_folder(str(out)) as tmp:
        _write(tmp)
    assert (out / "a.txt").read_text() == "new"


def test_folder_with_user_files_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "my_notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="did not write"):
            with output_folder(str(out), overwrite=overwrite) as tmp:
                _write(tmp)
    assert _tree(str(out)) == ["my_notes.txt"] and (out / "my_notes.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["notes"]


def test_our_output_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    with output_folder(str(out)) as tmp:
        _write(tmp, "old.txt", "old")
    with pytest.raises(OutputError, match="--overwrite"):
        with output_folder(str(out)) as tmp:
            _write(tmp)
    assert (out / "old.txt").read_text() == "old"
    with output_folder(str(out), overwrite=True) as tmp:
        _write(tmp)
    assert _tree(str(out)) == sorted([safe_io.MARKER, "a.txt"])
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("where", ["input", "inside_input", "parent_of_input", "cwd",
                                   "parent_of_cwd"])
def test_overlapping_paths_are_refused(tmp_path, monkeypatch, where):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "rna.csv").write_text("x")
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    out = {"input": data, "inside_input": data / "sub", "parent_of_input": tmp_path,
           "cwd": cwd, "parent_of_cwd": cwd.parent}[where]
    with pytest.raises(OutputError, match="--out"):
        safe_io.check_output_folder(str(out), overwrite=True, protected=[str(data)],
                                    flag="--out")
    assert (data / "rna.csv").read_text() == "x"


def test_a_file_is_refused(tmp_path):
    path = tmp_path / "out"
    path.write_text("not a folder")
    with pytest.raises(OutputError, match="not a folder"):
        safe_io.check_output_folder(str(path))


def test_an_error_inside_leaves_the_destination_as_it_was(tmp_path):
    out = tmp_path / "out"
    with output_folder(str(out)) as tmp:
        _write(tmp, "old.txt", "old")
    with pytest.raises(RuntimeError):
        with output_folder(str(out), overwrite=True) as tmp:
            _write(tmp)
            raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_kill_inside_the_swap_is_repaired_by_the_next_write(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with output_folder(str(out)) as tmp:
        _write(tmp, "old.txt", "old")
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # after moving the old output aside, before the new one lands
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(safe_io.os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        safe_io.commit(str(tmp_path / "new.partial"), str(out))  # noqa: the state of a kill
    monkeypatch.setattr(safe_io.os, "replace", real_replace)
    assert not out.exists() and (tmp_path / "out.old" / "old.txt").exists()
    # a killed write also leaves its partial folder behind
    os.makedirs(tmp_path / "out.partial")
    _write(str(tmp_path / "out.partial"), safe_io.MARKER, "{}")
    with output_folder(str(out), overwrite=True) as tmp:
        _write(tmp)
    assert (out / "a.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_foreign_folder_in_the_way_is_not_removed(tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "mine.txt").write_text("mine")
    with pytest.raises(OutputError, match="move it away"):
        with output_folder(str(tmp_path / "out")) as tmp:
            _write(tmp)
    assert (tmp_path / "out.partial" / "mine.txt").read_text() == "mine"
