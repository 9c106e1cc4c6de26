"""Writing output folders without ever losing a user's files.

Every folder coherent-jax writes (a work directory's latent space, models, imputation and
report; an imputation of new patients) is built beside its destination as `<folder>.partial`
and renamed into place once complete, with a marker file that says we wrote it:

    with safe_io.output_folder("filled/", overwrite=False, protected=[input_dir]) as tmp:
        table.to_csv(os.path.join(tmp, "rna.csv"))      # lands in filled/ on success

An existing destination is replaced only when it carries our marker and `overwrite` is True;
an empty folder may be written into; anything else is refused with `OutputError`, before any
work is done when `check_output_folder` is called first. A kill at any moment leaves the old
folder, the new one, or no folder plus our own marked leftovers (`.partial`, `.old`), which the
next write clears, so a rerun needs no manual cleanup.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from typing import Iterator, Sequence

from coherent_jax.errors import UserError

MARKER = ".coherent_jax_output.json"


class OutputError(UserError):
    """An output path that would overwrite or delete something that is not ours."""


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _inside(path: str, parent: str) -> bool:
    """True when `path` equals `parent` or lies below it (both resolved)."""
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def is_ours(folder: str) -> bool:
    """True when `folder` was written by coherent-jax (it holds the marker file)."""
    return os.path.isfile(os.path.join(folder, MARKER))


def check_output_folder(folder: str, *, overwrite: bool = False,
                        protected: Sequence[str | None] = (), flag: str = "the output") -> str:
    """Refuses an output folder whose writing could lose anything that is not ours.

    Args:
        folder: the destination.
        overwrite: replace a previous output of ours (recognised by its marker).
        protected: folders that must neither contain nor lie inside the output (the input
            data, the work directory); None entries are skipped.
        flag: how the caller names the folder in messages (e.g. '--out').

    Returns:
        The resolved absolute path.

    Raises:
        OutputError: the folder is the current directory or one of its parents, overlaps a
            protected folder, is a file, holds files we did not write, or holds an output of
            ours while overwrite is False.
    """
    path = _real(folder)
    cwd = _real(os.getcwd())
    if _inside(cwd, path):
        raise OutputError(f"{flag} {folder!r} is the current directory or one of its parents; "
                          "choose a new folder for the output, e.g. a subfolder 'filled/'.")
    for other in protected:
        if not other:
            continue
        other_path = _real(other)
        if _inside(path, other_path) or _inside(other_path, path):
            raise OutputError(f"{flag} {folder!r} overlaps {other!r}, which must stay untouched"
                              "; choose a folder outside it that does not contain it.")
    if os.path.lexists(path):
        if not os.path.isdir(path) or os.path.islink(path):
            raise OutputError(f"{flag} {folder!r} exists and is not a folder; choose a new "
                              "folder name.")
        if os.listdir(path):
            if not is_ours(path):
                raise OutputError(f"{flag} {folder!r} holds files that coherent-jax did not "
                                  "write; nothing there is touched. Choose a new or empty "
                                  "folder.")
            if not overwrite:
                raise OutputError(f"{flag} {folder!r} holds an earlier output; pass "
                                  "--overwrite to replace it (only our own files are "
                                  "replaced), or choose a new folder.")
    return path


def _clear_leftover(path: str) -> None:
    """Removes a `.partial` / `.old` folder left by a killed write, if it is ours."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path) and (is_ours(path) or
                                                              not os.listdir(path)):
        shutil.rmtree(path)
        return
    raise OutputError(f"{path!r} is in the way of an output and was not written by "
                      "coherent-jax; move it away and run again.")


def commit(tmp: str, final: str) -> None:
    """Renames the finished `tmp` folder to `final`, replacing a previous output of ours.

    The previous output is moved aside to `<final>.old` first and removed last; a kill between
    the two renames leaves no `final`, which the next run writes again (clearing `.old`).
    """
    old = f"{final}.old"
    _clear_leftover(old)
    if os.path.isdir(final) and os.listdir(final):
        os.replace(final, old)
    elif os.path.isdir(final):
        os.rmdir(final)  # an empty folder the user made for us
    os.replace(tmp, final)
    if os.path.lexists(old):
        shutil.rmtree(old)


@contextlib.contextmanager
def output_folder(folder: str, *, overwrite: bool = False, protected: Sequence[str | None] = (),
                  kind: str = "output", flag: str = "the output") -> Iterator[str]:
    """Yields a fresh `<folder>.partial` to write into; renames it into place on success.

    Args:
        folder: the destination (see `check_output_folder` for what is refused).
        overwrite: replace a previous output of ours.
        protected: folders the output must not overlap.
        kind: what is written (recorded in the marker).
        flag: how messages name the folder.

    On an exception inside the block the partial folder is removed and the destination is
    left as it was.
    """
    final = check_output_folder(folder, overwrite=overwrite, protected=protected, flag=flag)
    tmp = f"{final}.partial"
    _clear_leftover(tmp)
    os.makedirs(tmp)
    with open(os.path.join(tmp, MARKER), "w") as f:
        json.dump({"written_by": "coherent-jax", "kind": kind,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit(tmp, final)
