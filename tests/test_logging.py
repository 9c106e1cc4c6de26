"""The library logs (never prints), its progress bars stay off unless stderr is a terminal at
INFO, and the scripts' --verbosity=-1 silences progress and info."""

import io
import logging
import os
import subprocess
import sys

import pytest

from coherent_jax import pipeline

from coherent_jax.engine import progress
from coherent_jax.data import (LinearGaussianModel, induce_missingness, linear_gaussian_cohort,
                               paper_split)
from coherent_jax.impute import impute
from coherent_jax.latent import LatentConfig
from coherent_jax.model_set import ModelSetConfig
from coherent_jax.autoencoder import AutoencoderConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "test.py")
LIBRARY = logging.getLogger("coherent_jax")


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


class _Closed(io.StringIO):
    """A stderr that fails as a closed stream does."""

    def isatty(self):
        raise ValueError("I/O operation on closed file")


@pytest.fixture
def library_logger():
    """Restores the `coherent_jax` logger (level, handlers, propagation) after the test."""
    saved = LIBRARY.level, list(LIBRARY.handlers), LIBRARY.propagate
    yield LIBRARY
    LIBRARY.setLevel(saved[0])
    LIBRARY.handlers[:] = saved[1]
    LIBRARY.propagate = saved[2]


def test_bars_are_off_unless_a_terminal_watches_at_info(library_logger, monkeypatch):
    library_logger.setLevel(logging.INFO)
    assert not progress.shown()  # pytest captures stderr: not a terminal
    with progress.bar("x", total=3) as bar:
        bar.advance()
        bar.update(completed=2, description="y")  # no-ops
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress.shown()
    library_logger.setLevel(logging.WARNING)  # --verbosity=-1
    assert not progress.shown()
    library_logger.setLevel(logging.INFO)
    monkeypatch.setattr(sys, "stderr", _Closed())
    assert not progress.shown()  # a closed stream counts as no terminal


def test_nested_bars_share_one_display_and_close_on_errors(library_logger, monkeypatch):
    library_logger.setLevel(logging.INFO)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with pytest.raises(RuntimeError):
        with progress.bar("outer", total=2) as outer:
            display = progress._live
            with progress.bar("inner", total=5) as inner:
                assert progress._live is display and len(display.tasks) == 2
                inner.advance(5)
            assert len(display.tasks) == 1
            outer.advance()
            raise RuntimeError("a failure inside the bars")
    assert progress._live is None and not display.live.is_started


def test_configure_logging_prints_info_bare_and_other_levels_tagged(library_logger,
                                                                    monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    progress.configure_logging(logging.INFO)
    progress.configure_logging(logging.INFO)  # idempotent: one handler
    logging.getLogger("coherent_jax.x").info("[3 s] latent space ready")
    logging.getLogger("coherent_jax.x").debug("hidden")
    logging.getLogger("coherent_jax.x").warning("careful")
    assert stream.getvalue() == ("[3 s] latent space ready\n"
                                 "WARNING coherent_jax.x: careful\n")
    progress.configure_logging(logging.WARNING)
    logging.getLogger("coherent_jax.x").info("silenced")
    assert "silenced" not in stream.getvalue()


@pytest.mark.slow  # trains a tiny autoencoder and model set
def test_library_prints_nothing_and_logs_through_logging(tmp_path, capsys, caplog):
    gauss = LinearGaussianModel.random({"a": 6, "b": 6, "c": 6}, num_factors=3, noise_std=0.4,
                                       seed=2)
    cohort = induce_missingness(paper_split(linear_gaussian_cohort(gauss, 200, seed=0), seed=42),
                                0.3, seed=1)
    caplog.set_level(logging.DEBUG, logger="coherent_jax")
    with pytest.warns(UserWarning, match="no better than their mean"):  # 3 epochs: a warning
        space = pipeline.stage_latents(
            str(tmp_path), cohort,
            LatentConfig(latent_dim=4, kinds={"a": "autoencoder", "b": "pca", "c": "pca"},
                         autoencoders={"a": AutoencoderConfig(latent_dim=4, batch_size=32,
                                                              max_epochs=3)}))
    latents = space.encode(cohort)
    config = ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                            batch_size=32, train_steps=4, eval_every=2, log_every=2,
                            val_sampler="ddim", val_sample_steps=3, multi=False,
                            sharpness_grid=(0.0,), anchor_components=1)
    models = pipeline.stage_denoisers(str(tmp_path), latents, config, seed=0, targets=("a",),
                                      features=cohort)
    impute(latents.split("train"), models, num_samples=2, sampler="ddim", sample_steps=3,
           latent_space=space, feature_cohort=cohort.split("train"))  # the holed split
    assert capsys.readouterr().out == ""
    by_logger = {}
    for record in caplog.records:
        by_logger.setdefault(record.name, []).append(record)
    quality = by_logger["coherent_jax.pipeline"][0]  # the latent space's quality table
    assert quality.levelno == logging.INFO and "r2_overall" in quality.getMessage()
    epochs = by_logger["coherent_jax.autoencoder"]
    assert len(epochs) == 3 and all(r.levelno == logging.DEBUG for r in epochs)
    assert "autoencoder a epoch 1" in epochs[0].getMessage()
    steps = by_logger["coherent_jax.metrics_io"]  # a training progress line per anchor kind
    assert steps and all(r.levelno == logging.INFO for r in steps)
    assert steps[0].getMessage().startswith("a/specialists: step 4/4 (100%)")
    assert all(r.getMessage().startswith("a/specialists") for r in steps)
    assert not any("step 0/" in r.getMessage() for r in steps)  # no line for a probe
    assert "imputed a:" in by_logger["coherent_jax.impute"][0].getMessage()


def _run_script(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train_latents.py"),
                           f"--config={CONFIG}", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))


@pytest.mark.slow  # runs a script three times
def test_script_verbosity_minus_one_prints_no_progress(tmp_path):
    workdir = f"--workdir={tmp_path / 'run'}"
    quiet = _run_script(workdir, "--verbosity=-1")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout == "" and quiet.stderr == "", quiet.stderr[-3000:]  # not a line
    shown = _run_script(workdir)  # the default, INFO: the lines the scripts always printed
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "cohort linear-gaussian-300: 300 patients" in shown.stderr and shown.stdout == ""
    # a user error raised after setup() turned absl's verbosity down keeps its traceback
    debug = _run_script(workdir, "--config.seed=1", "--verbosity=1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "different configuration" in debug.stderr
