"""Trained models of every target modality: what imputation needs, how it is trained and saved.

A ModelSet holds, per target modality, the K specialists (one per source, stacked) with their
validation MSEs, and/or the multi-condition model. `train_model_set` trains them on a latent
Cohort's train split, validating on its val split: per target, all specialists x seeds x
learning rates in ONE vmapped population, then the best trial per source by the chosen
criterion; the multi-condition model likewise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax.engine import checkpointing
from coherent_jax import anchor_draws, cross_fit, scoring_rules
from coherent_jax import workdir as layout
from coherent_jax.calibrate import (SHARPNESS_GRID, FusionCalibration, choose_family_by_pattern,
                                    choose_fusion_sharpness)
from coherent_jax.closed_form import ClosedForm
from coherent_jax.covariates import Covariate, inputs
from coherent_jax.anchor import (apply_condition_map, fit_anchors, fit_condition_map,
                                  one_to_one, set_anchors)
from coherent_jax.mixture_anchor import fit_mixture, select_components, widened, with_components
from coherent_jax.mixture_count import GAUSSIAN, Patients, choose_count, composite, label
from coherent_jax.engine.denoiser import Condition, Denoiser
from coherent_jax.engine.folded import fold_denoiser, fold_members
from coherent_jax.engine.deprecation import old_call_form, pop_fields
from coherent_jax.engine.population import (Population, init_population, make_population,
                                            population_data, select)
from coherent_jax.engine.schedules import Schedule, make_schedule
from coherent_jax.engine.train import (CRITERIA, EarlyStop, LoopConfig, LoopRuntime, MemberData,
                                       TrainConfig, TrainState, fit, make_member_data,
                                       row_energy_scores)

TRAIN_ROW_BUCKET = 128
"""Training row tables padded to a multiple of this: the targets' families share compiled
steps (`train.make_member_data`; the same numbers)."""

DENOISER_FIELDS = ("data_dim", "hidden_dim", "num_layers", "time_embed_dim", "cond_embed_dim",
                   "norm", "anchored", "anchor_components", "schedule", "diffusion_steps")


def _denoiser(config: dict | None) -> Denoiser | None:
    """The Denoiser of a saved architecture, in today's names (`ModelSet.load`)."""
    return Denoiser(**config) if config else None


def denoiser_config(model: Denoiser) -> dict:
    """The JSON-able architecture of a Denoiser."""
    return {f: getattr(model, f) for f in DENOISER_FIELDS}


@dataclasses.dataclass
class TargetModels:
    """Trained denoisers of one target modality.

    Attributes:
        target: the generated modality.
        sources: the conditioning modalities; specialist k conditions on sources[k], and the
            multi-condition model takes them in this order.
        specialist_model: the specialists' architecture.
        specialists: their variables stacked [K, ...] (None if not trained).
        val_mse: their validation sample MSE [K] (fusion weights softmax(1 / MSE)).
        multi_model, multi: the multi-condition model's architecture and variables (or None).
        unconditional: whether the specialists were trained with condition dropout (required
            for product-of-experts fusion).
        thresholds: calibrated rejection thresholds by 'sampler:steps'.
        condition_maps: source -> {'kernel' [D_s, k], 'bias' [k]}: when set, every model
            conditions on ridge predictions of the target from each source's FEATURES
            (`anchor.fit_condition_map`) instead of the source's latents; imputation then
            needs the sources' features (observed) or the latent space (imputed sources).
        sharpness: the specialists' fusion sharpness (`fusion.fuse_sharpened`; 0 is the
            paper's weighted mean), chosen on validation patients by
            `calibrate.choose_fusion_sharpness` (`train_target` stores it). Saved as
            'sharpness' (runs before 2026-12-05: 'fusion_sharpness', read by the upgrade).
        family_by_pattern: availability pattern (`calibrate.pattern_name`) -> 'specialists'
            or 'multi': which family method 'auto' draws such patients with, chosen on
            validation patients by `calibrate.choose_family_by_pattern`; patterns not named
            (too few validation patients, or a model set without both families): the
            specialists where they exist.
    """

    target: str
    sources: tuple[str, ...]
    specialist_model: Denoiser | None = None
    specialists: Any = None
    val_mse: np.ndarray | None = None
    multi_model: Denoiser | None = None
    multi: Any = None
    unconditional: bool = False
    thresholds: dict = dataclasses.field(default_factory=dict)
    condition_maps: dict | None = None
    sharpness: float = 0.0
    family_by_pattern: dict = dataclasses.field(default_factory=dict)
    # family -> refit(keep [N_train] bool) -> its member anchors fitted on those training rows
    # (`_Candidate.refit`), set by `train_target` for `cascade_choice`; not saved.
    anchor_refits: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    # (which, T) -> (the variables folded, (apply_fn, folded params)); see `_folded`.
    _folded_cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    @property
    def fusion_sharpness(self) -> float:
        """Deprecated name of `sharpness`."""
        warnings.warn("TargetModels.fusion_sharpness is deprecated: use TargetModels.sharpness.",
                      DeprecationWarning, stacklevel=2)
        return self.sharpness

    @fusion_sharpness.setter
    def fusion_sharpness(self, value: float) -> None:
        warnings.warn("TargetModels.fusion_sharpness is deprecated: use TargetModels.sharpness.",
                      DeprecationWarning, stacklevel=2)
        self.sharpness = value

    def sampling_specialists(self, diffusion_steps: int) -> tuple[Callable, Any]:
        """(apply_fn, stacked params) of the specialists in their folded sampling form
        (`models.folded`: same eps, fewer FLOPs per step) for a schedule of T = diffusion_steps."""
        return self._folded("specialists", fold_members, self.specialist_model, self.specialists,
                            diffusion_steps)

    def sampling_multi(self, diffusion_steps: int) -> tuple[Callable, Any]:
        """(apply_fn, params) of the multi-condition model in its folded sampling form."""
        return self._folded("multi", fold_denoiser, self.multi_model, self.multi, diffusion_steps)

    def _folded(self, which: str, fold: Callable, model: Denoiser, variables: Any,
                diffusion_steps: int) -> tuple[Callable, Any]:
        """`fold(model, variables, diffusion_steps)`, computed once per T and reused while the same
        variables object is held (assigning new variables refolds)."""
        hit = self._folded_cache.get((which, diffusion_steps))
        if hit is None or hit[0] is not variables:
            hit = (variables, fold(model, variables, diffusion_steps))
            self._folded_cache[(which, diffusion_steps)] = hit
        return hit[1]


MIXTURE_TEST_Z = scoring_rules.LEAD_Z
"""A mixture anchor is trained only where its patients' energy scores are lower than the
Gaussian anchor's by a paired one-sided test at 5%: the mean of the per-patient differences
(mixture minus Gaussian, same noise) plus 1.645 standard errors is below zero, untrained, on
the validation and the cross-fitted training patients (`mixture_count`). Trained, both are
drawn again on the validation patients alone (`_paired_energy`), and the mixture is dropped
only where the Gaussian is then ahead by the same test: the validation patients are a
sixteenth of those the untrained lead was shown on, and asking them to show it again dropped
door5's mixture for 'reveal' given its blind source (-0.0254, standard error 0.0163 on 75
patients, after -0.0969 on 1,275), whose draws then had one mode (benchmarks/RESULTS.md,
"Common factors, each member's own count")."""

CLOSED_FORM = "_closed_form"  # its key in the saved tree and metadata (not a modality)


@dataclasses.dataclass
class ModelSet:
    """Everything imputation needs: the noise schedule, the models of each target, the
    closed form of every source set (`closed_form.ClosedForm`; None in model sets trained
    without features or saved before it existed) and the known covariate every linear map
    takes with the sources' features (`covariates.Covariate`; None: none).

    `cascade_orders`: availability pattern (`cascade.pattern_name`) -> the order in which
    imputation draws the targets such patients lack, chosen on held-out patients
    (`cascade_choice.choose_orders`); patterns not named: the targets' order."""

    schedule_name: str
    diffusion_steps: int
    targets: dict[str, TargetModels]
    closed_form: ClosedForm | None = None
    covariate: Covariate | None = None
    cascade_orders: dict = dataclasses.field(default_factory=dict)

    @property
    def schedule(self) -> Schedule:
        return make_schedule(self.schedule_name, self.diffusion_steps)

    def save(self, directory: str, metadata: dict | None = None) -> None:
        """Writes arrays with Orbax and the architectures, sources, weights and thresholds as JSON."""
        # metadata JSON is written with sorted keys: the target order (the cascade order of
        # imputation) is kept separately
        tree, meta = {}, {"schedule": self.schedule_name, "diffusion_steps": self.diffusion_steps,
                          "targets": {}, "target_order": list(self.targets),
                          "covariate": None if self.covariate is None else self.covariate.metadata(),
                          "cascade_orders": {k: list(v) for k, v in self.cascade_orders.items()},
                          **(metadata or {})}
        for name, tm in self.targets.items():
            tree[name] = {k: v for k, v in (("specialists", tm.specialists), ("multi", tm.multi),
                                            ("condition_maps", tm.condition_maps))
                          if v is not None}
            meta["targets"][name] = {
                "sources": list(tm.sources), "unconditional": tm.unconditional,
                "thresholds": tm.thresholds, "sharpness": tm.sharpness,
                "family_by_pattern": tm.family_by_pattern,
                "val_mse": None if tm.val_mse is None else np.asarray(tm.val_mse).tolist(),
                "specialist_model": (None if tm.specialist_model is None
                                     else denoiser_config(tm.specialist_model)),
                "multi_model": None if tm.multi_model is None else denoiser_config(tm.multi_model)}
        if self.closed_form is not None:
            tree[CLOSED_FORM] = self.closed_form.tree()
            meta[CLOSED_FORM] = self.closed_form.metadata()
        checkpointing.save_tree(directory, tree, meta)

    def store_thresholds(self, found) -> None:
        """Files calibrated rejection thresholds (`calibrate.rejection_thresholds`) in each
        target's `thresholds` under their sampler and step count."""
        for target, value in found.by_target.items():
            self.targets[target].thresholds[found.key] = value

    @classmethod
    def load(cls, directory: str) -> "ModelSet":
        """Reads what `save` wrote (of any version: `workdir.upgrade_models_metadata`)."""
        tree, meta = checkpointing.restore_tree(directory)
        meta = layout.upgrade_models_metadata(meta)
        targets = {}
        for name in meta["target_order"]:
            info, arrays = meta["targets"][name], tree.get(name, {})
            targets[name] = TargetModels(
                target=name, sources=tuple(info["sources"]),
                specialist_model=_denoiser(info["specialist_model"]),
                specialists=_with_anchor_basis(arrays.get("specialists")),
                val_mse=None if info["val_mse"] is None else np.asarray(info["val_mse"]),
                multi_model=_denoiser(info["multi_model"]),
                multi=_with_anchor_basis(arrays.get("multi")), unconditional=info["unconditional"],
                thresholds=info["thresholds"],
                sharpness=float(info["sharpness"]),
                family_by_pattern=dict(info.get("family_by_pattern", {})),
                condition_maps=({src: {k: np.asarray(v) for k, v in m.items()}
                                 for src, m in arrays["condition_maps"].items()}
                                if "condition_maps" in arrays else None))
        covariate = Covariate.from_metadata(meta["covariate"])
        closed_form = (ClosedForm.from_saved(meta[CLOSED_FORM], tree.get(CLOSED_FORM, {}),
                                             covariate)
                       if CLOSED_FORM in meta else None)
        orders = {k: tuple(v) for k, v in meta["cascade_orders"].items()}
        return cls(meta["schedule"], meta["diffusion_steps"],
                   targets, closed_form, covariate, orders)


def _with_anchor_basis(variables: dict | None) -> dict | None:
    """Anchored variables saved before anchors had a full covariance (no 'anchor_basis'): their
    diagonal anchors as identity eigenbases, the same eps."""
    if variables is None or "anchor_log_var" not in variables["params"] \
            or "anchor_basis" in variables["params"]:
        return variables
    log_var = np.asarray(variables["params"]["anchor_log_var"])  # [..., S, D]
    basis = np.broadcast_to(np.eye(log_var.shape[-1], dtype=np.float32),
                            log_var.shape + (log_var.shape[-1],))
    return {**variables, "params": {**variables["params"], "anchor_basis": basis.copy()}}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The denoisers' architecture, noise schedule and anchors (`ModelSetConfig.architecture`;
    the fields are ModelSetConfig's, documented there)."""

    hidden_dim: int
    num_layers: int
    time_embed_dim: int
    cond_embed_dim: int
    norm: str
    schedule: str
    diffusion_steps: int
    anchored: bool
    anchor_components: int

    def denoiser(self, data_dim: int) -> Denoiser:
        """The Denoiser of a target of width `data_dim` (a Gaussian anchor when anchored; the
        mixture candidate's component count is chosen per family)."""
        return Denoiser(data_dim, self.hidden_dim, self.num_layers, self.time_embed_dim,
                        self.cond_embed_dim, self.norm, anchored=self.anchored,
                        schedule=self.schedule, diffusion_steps=self.diffusion_steps)

    def noise_schedule(self) -> Schedule:
        return make_schedule(self.schedule, self.diffusion_steps)


FAMILIES = ("specialists", "multi")
"""The model families of a target, in training order (a family's index seeds its key)."""


@dataclasses.dataclass(frozen=True)
class FamilyTraining:
    """Which families are trained and how each is optimised, validated and selected
    (`ModelSetConfig.training`; the fields are ModelSetConfig's, documented there)."""

    specialists: bool
    multi: bool
    batch_size: int
    train_steps: int
    eval_every: int
    log_every: int
    patience: int
    val_sampler: str
    val_sample_steps: int | None
    seeds: tuple[int, ...]
    learning_rates: tuple[float, ...]
    ema_decay: float
    uncond_prob: float
    mask_drop_prob: float
    criterion: str
    correction_test_z: float

    def step_config(self, family: str) -> TrainConfig:
        """The training step's options of a family: condition dropout for the specialists,
        extra condition masking for the multi-condition model."""
        if family == "specialists":
            return TrainConfig(batch_size=self.batch_size, uncond_prob=self.uncond_prob,
                               ema_decay=self.ema_decay)
        return TrainConfig(batch_size=self.batch_size, mask_drop_prob=self.mask_drop_prob,
                           ema_decay=self.ema_decay)

    @property
    def loop(self) -> LoopConfig:
        """`train.fit`'s loop: steps, validation, and early stopping when patience > 0."""
        return LoopConfig(train_steps=self.train_steps, eval_every=self.eval_every,
                          log_every=self.log_every, val_sampler=self.val_sampler,
                          val_sample_steps=self.val_sample_steps,
                          early_stop=(EarlyStop(self.criterion, self.patience)
                                      if self.patience else None))


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """What the models condition on (`ModelSetConfig.conditioning`; the fields are
    ModelSetConfig's, documented there)."""

    feature_conditions: bool
    distill_conditions: bool
    condition_components: int
    covariate: str


def _view(group: type, config: ModelSetConfig):
    """The `group` dataclass of the same-named fields of `config`."""
    return group(**{f.name: getattr(config, f.name) for f in dataclasses.fields(group)})


@dataclasses.dataclass(frozen=True)
class ModelSetConfig:
    """How the denoisers of every target are trained (defaults: the paper's architecture).

    The fields stay flat, as users set them (`--config.denoisers.hidden_dim=...`, a saved
    run's config.json); the training code takes them grouped by concern: `architecture`,
    `training`, `conditioning` and `fusion_calibration` (frozen views of the same values).

    Attributes:
        hidden_dim, num_layers, time_embed_dim, cond_embed_dim, norm: the Denoiser.
        schedule, diffusion_steps: the noise schedule.
        batch_size, train_steps, eval_every, log_every: optimisation (steps, not epochs);
            train_steps = 0 keeps anchored models at their anchors (no learned correction).
        patience: > 0 stops a family's training early once no member's best validation
            `criterion` is younger than `patience` validations (`train.EarlyStop`): where
            the anchor stays best, the remaining steps cannot change the kept models; 0
            (default): every step is trained.
        val_sampler, val_sample_steps: sampler of the validation-by-sampling.
        seeds, learning_rates: the population trained together per target (all combinations).
        ema_decay: > 0 validates, selects and keeps the exponential moving average of each
            model's parameters (`train.TrainConfig.ema_decay`); 0 (default): the parameters.
        uncond_prob: specialists' condition dropout (enables product-of-experts fusion).
        mask_drop_prob: the multi-condition model's extra random condition masking.
        criterion: which validation criterion (`train.CRITERIA`) selects the best trial and
            checkpoint: the fair energy score of several draws per validation row by default
            (draws scored as a distribution; the untrained anchor stays a candidate), or one
            of the paper's ('sample_mse': single-draw MSE, which rewards narrow draws).
        correction_test_z: a member's learned correction is kept only where its validation
            draws lead its anchor alone by the paired test with this many standard errors
            (`_corrections_that_lead`; 1.645, default: one-sided 5%; a large negative value
            keeps the selected checkpoint whatever, as before 2026-12-07).
        specialists, multi: which model families to train.
        anchored: linear-Gaussian anchored denoisers (`engine/denoiser.py`): each model is
            the ridge posterior of its conditions plus a learned correction.
        anchor_components: the most components of a Gaussian-mixture anchor
            (`mixture_anchor`), fitted to the joint rows [target, conditions] where BIC finds
            a mixture (6, default: room for a few hidden subtypes; 1: linear-Gaussian
            anchors only). Every count from 2 up to the largest the held-out likelihood
            takes for a member is a candidate, and the Gaussian anchor another; all are
            scored untrained by the energy score of their exact draws on the validation and
            the cross-fitted training patients (`mixture_count`), each member choosing its
            own. The members' choice is trained only where it starts ahead of the Gaussian
            anchor, and kept unless, trained, the Gaussian is ahead of it on validation, both
            by a paired test of the patients' energy scores (`MIXTURE_TEST_Z`). Up to 4
            before 2026-12-07: door4's 5 subtypes need 5, and
            the held-out likelihood alone then gave door2's blind 'hide' 6 components, which
            lost to the Gaussian anchor (benchmarks/RESULTS.md, "The count chosen by the
            draws").
        feature_conditions: condition on ridge predictions from each source's features
            (`TargetModels.condition_maps`) rather than on the source's latents; training
            then needs the feature cohort.
        distill_conditions: fit the condition maps to their ridge's leave-one-out predictions
            instead of the patients' own values (`anchor.fit_condition_map`), so that
            training patients are not imputed better than new ones (the evaluation's
            conditional membership attack), for some accuracy (README, "Privacy"); False
            (default) keeps the plain ridge, the most accurate.
        condition_components: with feature_conditions, each source's condition is its ridge
            prediction of the target followed by the source's leading principal components,
            this many (8, default; fewer where a source has fewer features or rows; 0: the
            prediction alone), for the mixture anchors and the networks: a prediction of the
            target can miss the subtype a source reveals (`anchor.fit_condition_map`).
        covariate: a categorical label column known for every patient (e.g. 'cancer_type',
            or 'cohort' on a pooled cohort) that the condition maps, their anchors and the
            closed form take with the sources' features, as a slope deviation and an
            intercept per level (`covariates.Covariate`); new patients must carry it. Needs
            feature_conditions. '' (default): none.
        sharpness_grid: candidate sharpnesses of the specialists' fusion (`fusion.fuse_sharpened`),
            chosen per target on validation patients with >= 2 sources
            (`calibrate.calibrate_fusion`, K = calibration_draws, the validation sampler);
            (0.0,) keeps the paper's weighted mean.
        calibration_draws: draws per patient of the validation choices (the sharpness, the
            family per pattern, the cascade's order).
        choose_cascade_orders: choose, per availability pattern lacking two or more
            modalities, the order imputation draws them in (`cascade_choice.choose_orders`,
            by the pipeline, which has the latent space; True, default); False: the targets'
            order for every pattern.
    """

    hidden_dim: int = 512
    num_layers: int = 4
    time_embed_dim: int = 128
    cond_embed_dim: int = 32
    norm: str = "batch"
    schedule: str = "linear"
    diffusion_steps: int = 1000
    batch_size: int = 128
    train_steps: int = 20_000
    eval_every: int = 2_000
    log_every: int = 200
    patience: int = 0
    val_sampler: str = "ddpm"
    val_sample_steps: int | None = None
    seeds: tuple[int, ...] = (0,)
    learning_rates: tuple[float, ...] = (1e-3,)
    ema_decay: float = 0.0
    uncond_prob: float = 0.1
    mask_drop_prob: float = 0.3
    criterion: str = "energy_score"
    correction_test_z: float = scoring_rules.LEAD_Z
    specialists: bool = True
    multi: bool = True
    anchored: bool = True
    anchor_components: int = 6
    feature_conditions: bool = True
    distill_conditions: bool = False
    condition_components: int = 8
    covariate: str = ""
    sharpness_grid: tuple[float, ...] = SHARPNESS_GRID
    calibration_draws: int = 20
    choose_cascade_orders: bool = True

    def __post_init__(self):
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 validations (0: train every step), got "
                             f"{self.patience}.")
        if self.anchor_components < 1:
            raise ValueError(f"anchor_components must be >= 1 (1: Gaussian anchors), got "
                             f"{self.anchor_components}.")
        if self.condition_components < 0:
            raise ValueError(f"condition_components must be >= 0 (0: the sources' predictions "
                             f"alone), got {self.condition_components}.")
        if not np.isfinite(self.correction_test_z):
            raise ValueError(f"correction_test_z must be a finite number of standard errors "
                             f"(1.645: a one-sided 5% test; -1e9: keep every trained "
                             f"correction), got {self.correction_test_z}.")

    @property
    def architecture(self) -> Architecture:
        """The denoisers' architecture, schedule and anchors."""
        return _view(Architecture, self)

    @property
    def training(self) -> FamilyTraining:
        """Which families are trained, and their optimisation, validation and selection."""
        return _view(FamilyTraining, self)

    @property
    def conditioning(self) -> Conditioning:
        """What the models condition on: features or latents, distilled or not, a covariate."""
        return _view(Conditioning, self)

    @property
    def fusion_calibration(self) -> FusionCalibration:
        """How the specialists' fusion sharpness is chosen: the grid, K draws per patient and
        the validation sampler."""
        return FusionCalibration(grid=self.sharpness_grid, num_samples=self.calibration_draws,
                                 sampler=self.val_sampler, sample_steps=self.val_sample_steps)

    def denoiser(self, data_dim: int) -> Denoiser:
        """`architecture.denoiser(data_dim)`."""
        return self.architecture.denoiser(data_dim)


def cohort_fingerprint(cohort) -> str:
    """A hash of a cohort's values, presence and split: ties checkpoints to their data."""
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    for m in cohort.modalities:
        values, present = cohort.matrix(m)
        digest.update(m.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
        digest.update(present.tobytes())
    digest.update("|".join(map(str, cohort.sample_ids)).encode())
    digest.update("|".join(cohort.splits.fillna("").astype(str)).encode())
    return digest.hexdigest()[:16]


def fit_covariate(config: Conditioning, features) -> Covariate | None:
    """The `config.covariate` column's levels among the feature cohort's training patients
    (None when unset)."""
    if not config.covariate:
        return None
    if features is None or not config.feature_conditions:
        raise ValueError(f"covariate {config.covariate!r} enters through the condition maps on "
                         "the sources' features: set feature_conditions=True and pass the "
                         "feature cohort.")
    return Covariate.fit(features.split("train").labels, config.covariate)


def _member_data(x, x_present, mats, bucket: int = 1) -> tuple[MemberData, MemberData]:
    """Specialist data (one member per source) and multi-condition data (one member) from
    the target [N, k] and the conditions [(values [N, D_c], present [N])]; `bucket`: of
    `make_member_data`."""
    specialists = [Condition.of(jnp.asarray(v), mask=p[:, None]) for v, p in mats]
    multi = Condition.of(*[jnp.asarray(v) for v, _ in mats],
                         mask=np.stack([p for _, p in mats], axis=1))
    return (make_member_data(x, x_present, specialists, bucket),
            make_member_data(x, x_present, [multi], bucket))


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """An architecture a family may be trained with: its members' anchors (None: unanchored)
    and refit(keep [N] bool) -> the anchors fitted on the training rows where keep holds,
    the same kind and structure (`cross_fit`; None: unanchored); `factor`: a mixture's
    factor shapes (`mixture_anchor.MixtureFit.factor_shapes`); `members`: where the members
    draw from different candidates (`_members_choice`), their labels."""

    model: Denoiser
    anchors: list | None = None
    refit: Callable[[np.ndarray], list] | None = None
    factor: bool = False
    members: tuple | None = None

    @property
    def label(self) -> str:
        """`mixture_count.label` of this candidate (`composite` of its members')."""
        if self.members:
            return composite(self.members)
        return label(self.model.anchor_components, self.factor)


def _members_choice(candidates: Sequence[_Candidate], labels: Sequence[str]) -> _Candidate:
    """The candidate whose member k is candidate labels[k]'s member k (`mixture_count`: each
    member's own choice), every member a mixture of the largest count among them
    (`mixture_anchor.with_components`: the same distributions)."""
    by_label = {c.label: c for c in candidates}
    picked = [by_label[name] for name in labels]
    if len(set(labels)) == 1:
        return picked[0]
    m = max(c.model.anchor_components for c in picked)

    def anchors(keep: np.ndarray | None = None) -> list[dict]:
        return [with_components(c.anchors[k] if keep is None else c.refit(keep)[k], m)
                for k, c in enumerate(picked)]

    return _Candidate(dataclasses.replace(picked[0].model, anchor_components=m), anchors(),
                      anchors, any(c.factor for c in picked), tuple(labels))


def _anchor_candidates(model: Denoiser, x, member_conds, gaussian: _Candidate,
                       config: Architecture, spread, read: int | None = None
                       ) -> list[_Candidate]:
    """The candidates: the `gaussian` one, then, when config.anchor_components > 1 and BIC
    prefers >= 2 components for some member, mixture anchors (`mixture_anchor`) of every
    count from 2 to the largest that the held-out likelihood chose for a member
    (`mixture_anchor.fit_mixture`), every member with that count (they are stacked), each
    count a second time with its members' factor shapes where some member has them.
    `_train_family` picks among them by the draws (`mixture_count`).

    member_conds: per member, its conditions [(values [N, D_c], present [N])]; read: the
    mixtures read only each condition's first `read` columns (`widened`; None: all)."""
    if config.anchor_components <= 1:
        return [gaussian]
    fit_conds = [[(v[:, :read], p) for v, p in conds] for conds in member_conds]
    fitted = [fit_mixture(*x, conds, max_components=config.anchor_components,
                          residual_target=spread) for conds in fit_conds]
    counts = [0 if f is None else f.resp.shape[1] for f in fitted]
    candidates = [gaussian]
    for m in range(2, max(counts) + 1):
        fits = [f if count == m else fit_mixture(
            *x, conds, max_components=m, components=m, residual_target=spread)
            for f, count, conds in zip(fitted, counts, fit_conds)]

        for factor in [False] + ([True] if any(f.factor_shapes for f in fits) else []):
            def anchors(keep: np.ndarray | None = None, fits=fits, factor=factor
                        ) -> list[dict]:
                return [widened(f.anchors(keep, factor), [v.shape[1] for v, _ in read_conds],
                                [v.shape[1] for v, _ in conds])
                        for f, read_conds, conds in zip(fits, fit_conds, member_conds)]

            candidates.append(_Candidate(dataclasses.replace(model, anchor_components=m),
                                         anchors(), anchors, factor))
    return candidates


def _kept_sample_mse(result, criterion: str, trials: np.ndarray) -> np.ndarray:
    """[K] the validation sample MSE of the checkpoints kept by `criterion` for the chosen
    trials (the fusion weights describe the models in use; the best MSE of the run may come
    from a checkpoint selection did not keep)."""
    by_step = {h["step"]: h["sample_mse"] for h in result.history if "sample_mse" in h}
    steps = result.best_steps[criterion][trials]
    return np.asarray([by_step[int(s)][int(p)] for s, p in zip(steps, trials)], np.float64)


def _feature_conditions(x, features, target: str, sources: Sequence[str],
                        conditioning: Conditioning, covariate: Covariate | None):
    """(maps, train conditions, val conditions) of `fit_condition_map` for each source
    (on its features expanded with the covariate, `covariates.inputs`), each with the same
    number of principal components (`conditioning.condition_components`, fewer where a
    source has fewer features or rows: the specialists are stacked).

    Training rows get out-of-fold predictions (the map's own fit for a source it sends
    one-to-one, `anchor.one_to_one`, flagged in the returned tuple); validation rows the full
    fit.
    """
    (x_values, x_present) = x
    train, val = features.split("train"), features.split("val")
    matrices = {s: train.matrix(s) for s in sources}  # features [N, D_s], present [N]
    sourced = {s: inputs(covariate, matrices[s][0], train.labels) for s in sources}
    rows = {s: matrices[s][1] & x_present for s in sources}
    for s in sources:
        if rows[s].sum() < 10:
            raise ValueError(f"only {int(rows[s].sum())} training rows have both {target!r} "
                             f"and {s!r}: too few to fit the condition map.")
    components = min([conditioning.condition_components]
                     + [min(sourced[s].shape[1], int(rows[s].sum()) - 1) for s in sources])
    fits = {s: fit_condition_map(sourced[s][rows[s]], x_values[rows[s]],
                                 distill=conditioning.distill_conditions, components=components)
            for s in sources}
    fits = _clustered_components_only(fits, x_values.shape[1])
    maps, conds, conds_val = {}, [], []
    for s in sources:
        f, f_present, both = sourced[s], matrices[s][1], rows[s]
        maps[s], oof = fits[s]
        values = np.zeros((len(f), oof.shape[1]), np.float32)
        values[f_present] = apply_condition_map(maps[s], f[f_present])
        values[both] = oof
        conds.append((values, f_present))
        f_val, f_val_present = val.matrix(s)
        f_val = inputs(covariate, f_val, val.labels)
        values_val = np.zeros((len(f_val), oof.shape[1]), np.float32)
        values_val[f_val_present] = apply_condition_map(maps[s], f_val[f_val_present])
        conds_val.append((values_val, f_val_present))
    in_sample = tuple(one_to_one(maps[s], x_values.shape[1]) for s in sources)
    return maps, conds, conds_val, in_sample


CLUSTER_CHECK_COMPONENTS = 4
"""The most clusters BIC may find in a source's principal components
(`_clustered_components_only`): room for a few subtypes (whether there are any, not how
many)."""


def _clustered_components_only(fits: dict, width: int) -> dict:
    """source -> (condition map, training values [n, width + p]) with each source's principal
    components (the columns after `width`) zeroed unless BIC finds clusters in them
    (`mixture_anchor.select_components`, up to CLUSTER_CHECK_COMPONENTS), and dropped where
    no source keeps any: a source blind to every subtype only adds noise to the mixture
    anchors' gates and slopes (the door2 cohort's 'hide': its 'reveal' given 'hide' 1.14%
    above exact without components, 1.35% with them; benchmarks/RESULTS.md). Zero columns
    keep the specialists' widths equal and move nothing."""
    clustered = {s: values.shape[1] > width and select_components(
        values[:, width:].astype(np.float64), CLUSTER_CHECK_COMPONENTS, seed=0) is not None
        for s, (_, values) in fits.items()}
    if not any(clustered.values()):
        return {s: ({"kernel": cmap["kernel"][:, :width], "bias": cmap["bias"][:width]},
                    values[:, :width]) for s, (cmap, values) in fits.items()}
    out = {}
    for s, (cmap, values) in fits.items():
        keep = clustered[s] | (np.arange(values.shape[1]) < width)  # [width + p]
        out[s] = {"kernel": cmap["kernel"] * keep, "bias": cmap["bias"] * keep}, values * keep
    return out


@dataclasses.dataclass(frozen=True)
class TrainingRuntime:
    """Where a model set's training keeps checkpoints, reports and splits its batches; none of
    it changes the trained models (a sharded batch only the order of float reductions).

    Attributes:
        workdir: optional folder for resumable checkpoints (checkpoints/<target>/<family>).
        log_fn: receives each history record, tagged with target and family (and the anchor
            kind of a mixture-anchored candidate).
        batch_sharding: optional `parallel.member_batch_sharding(mesh)`.
    """

    workdir: str | None = None
    log_fn: Callable[[dict], None] | None = None
    batch_sharding: Any = None


def _old_training_call(args: tuple, kwargs: dict):
    """train_model_set / train_target(..., workdir=, log_fn=, batch_sharding=) as
    (..., runtime=TrainingRuntime(...))."""
    kwargs = dict(kwargs)
    loose = pop_fields(kwargs, tuple(f.name for f in dataclasses.fields(TrainingRuntime)))
    if not loose:
        return None
    return args, {**kwargs, "runtime": dataclasses.replace(
        kwargs.get("runtime", TrainingRuntime()), **loose)}


@dataclasses.dataclass(frozen=True)
class _TargetInputs:
    """One target's training and validation rows and its models' conditions.

    Attributes:
        sources: the other modalities, in the cohort's order.
        x, x_val: the target's (values [N, D], present [N]) on the train and val splits.
        spread: the training rows' target latents as new patients would be encoded (the
            anchors' residual covariances are fitted to them; None: x's values).
        widths: modality -> width of what the models take (a source's condition width).
        maps: the condition maps (feature conditions; else None).
        conds, conds_val: per source, its condition (values [N, D_c], present [N]) on the
            train and val splits.
        in_sample: per source, whether its training rows' condition is its map's own fit
            (`anchor.fit_condition_map`, a source sent one-to-one), not out-of-fold.
    """

    sources: tuple[str, ...]
    x: tuple
    x_val: tuple
    spread: np.ndarray | None
    widths: dict
    maps: dict | None
    conds: list
    conds_val: list
    in_sample: tuple


def _target_inputs(cohort, target: str, conditioning: Conditioning, features,
                   residual_latents) -> _TargetInputs:
    """The rows and conditions `train_target` trains and validates a target's models on."""
    sources = tuple(m for m in cohort.modalities if m != target)
    if not sources:
        raise ValueError("a target needs at least one other modality to condition on.")
    train_cohort, val_cohort = cohort.split("train"), cohort.split("val")
    x, x_val = train_cohort.matrix(target), val_cohort.matrix(target)
    spread = None
    if residual_latents is not None:
        if not residual_latents.sample_ids.equals(cohort.sample_ids):
            raise ValueError("residual_latents must hold the cohort's samples in its order "
                             "(latent.cross_fitted_latents of the same feature cohort).")
        spread = residual_latents.split("train").matrix(target)[0]
    widths = cohort.widths()
    maps = None
    if conditioning.feature_conditions:
        if features is None:
            raise ValueError("feature_conditions=True needs the feature cohort (features=...); "
                             "pass it or set feature_conditions=False.")
        maps, conds, conds_val, in_sample = _feature_conditions(
            x, features, target, sources, conditioning, fit_covariate(conditioning, features))
        widths = {**widths, **{s: maps[s]["bias"].shape[0] for s in sources}}
    else:
        conds = [train_cohort.matrix(s) for s in sources]
        conds_val = [val_cohort.matrix(s) for s in sources]
        in_sample = (False,) * len(sources)
    return _TargetInputs(sources, x, x_val, spread, widths, maps, conds, conds_val, in_sample)


@dataclasses.dataclass(frozen=True)
class _Family:
    """One model family of a target as trained: its members' data and conditions.

    Attributes:
        name: 'specialists' or 'multi'; index: its place in FAMILIES (seeds its key).
        num_members, cond_dims: members (one per source, or one) and their condition widths.
        train, val: the members' MemberData.
        member_conds, member_conds_val: per member, its conditions [(values [N, D_c],
            present [N])] of the training and of the validation patients.
        member_in_sample: per member, `_TargetInputs.in_sample` of its conditions.
    """

    name: str
    index: int
    num_members: int
    cond_dims: list
    train: MemberData
    val: MemberData
    member_conds: list
    member_conds_val: list
    member_in_sample: list


def _families(target: str, inputs: _TargetInputs, training: FamilyTraining) -> list[_Family]:
    """The families `training` asks for (specialists first)."""
    (spec_train, multi_train), (spec_val, multi_val) = (
        _member_data(*inputs.x, inputs.conds, bucket=TRAIN_ROW_BUCKET),
        _member_data(*inputs.x_val, inputs.conds_val))
    widths, sources = inputs.widths, inputs.sources
    families = []
    if training.specialists:
        if len({widths[s] for s in sources}) != 1:
            raise ValueError(f"specialists of {target!r} need sources of one width, got "
                             f"{ {s: widths[s] for s in sources} }; encode every modality "
                             "to the same latent width.")
        families.append(_Family("specialists", FAMILIES.index("specialists"), len(sources),
                                [widths[sources[0]]], spec_train, spec_val,
                                [[c] for c in inputs.conds], [[c] for c in inputs.conds_val],
                                [[flag] for flag in inputs.in_sample]))
    if training.multi:
        families.append(_Family("multi", FAMILIES.index("multi"), 1,
                                [widths[s] for s in sources], multi_train, multi_val,
                                [inputs.conds], [inputs.conds_val], [list(inputs.in_sample)]))
    return families


@dataclasses.dataclass(frozen=True)
class _TargetRun:
    """What every family of one target's training shares."""

    target: str
    config: ModelSetConfig
    inputs: _TargetInputs
    model: Denoiser  # the Gaussian-anchored (or plain) architecture
    schedule: Schedule
    key: jax.Array
    identity: dict  # the checkpoints' identity: config, data fingerprint, target
    runtime: TrainingRuntime


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """A family trained with one kind of anchor, its best trial per member kept.

    Attributes:
        model: the architecture (its anchor kind); variables: kept [K, ...].
        val_mse: [K] validation sample MSE of the kept checkpoints; result: the `FitResult`.
        trials: the kept trials described; score: their mean validation criterion.
        refit: the candidate's anchors refitted to some training rows (`_Candidate`);
        factor, label: the candidate's; corrections: `_corrections_that_lead`'s tests.
    """

    model: Denoiser
    variables: Any
    val_mse: np.ndarray
    result: Any
    trials: list
    score: float
    refit: Callable[[np.ndarray], list] | None = None
    factor: bool = False
    label: str = GAUSSIAN
    corrections: list | None = None


@contextlib.contextmanager
def _checkpoints(folder: str | None, identity: dict):
    """Resumable checkpoints in `folder` (None: none), closed on leaving."""
    if folder is None:
        yield None
        return
    checkpoints = checkpointing.TrainCheckpoints(folder, identity)
    try:
        yield checkpoints
    finally:
        checkpoints.close()


def _initial_population(candidate: Denoiser, anchors, family: _Family, training: FamilyTraining,
                        schedule: Schedule) -> tuple[Population, TrainState]:
    """The family's population (members x seeds x learning rates) and its initial state;
    `anchors` (one per member, see `anchor.fit_anchors`) fill anchored models' anchors."""
    population = make_population(family.num_members, training.seeds, training.learning_rates)
    state = init_population(candidate, schedule, population, cond_dims=family.cond_dims,
                            config=training.step_config(family.name))
    if anchors is not None:
        state = state.with_params(set_anchors(state.params, anchors, population.member))
    return population, state


def _candidate_runtime(run: _TargetRun, family: _Family, kind: dict, checkpoints
                       ) -> LoopRuntime:
    """The fit's progress label, its records tagged with target, family and anchor kind,
    its checkpoints and the run's batch sharding."""
    log_fn = run.runtime.log_fn
    return LoopRuntime(
        label=f"denoisers {run.target}/{family.name}",
        log_fn=None if log_fn is None else (
            lambda record: log_fn({"target": run.target, "family": family.name, **record,
                                   **kind})),
        checkpoints=checkpoints, batch_sharding=run.runtime.batch_sharding)


def _fit_candidate(run: _TargetRun, family: _Family, candidate: _Candidate) -> _Fitted:
    """Trains `family` with one kind of anchor as a population, checkpointed and logged, and
    keeps the best trial per member."""
    m = candidate.model.anchor_components
    kind = {} if m == 1 else {"anchor_components": m}  # a mixture's records and folder say so
    training = run.config.training
    population, state = _initial_population(candidate.model, candidate.anchors, family,
                                            training, run.schedule)
    folder = None if run.runtime.workdir is None else layout.part(
        run.runtime.workdir, layout.CHECKPOINTS, run.target,
        family.name if m == 1 else f"{family.name}_mixture{m}")
    with _checkpoints(folder, {**run.identity, "family": family.name, **kind}) as checkpoints:
        result = fit(state, population_data(family.train, population),
                     population_data(family.val, population),
                     jax.random.fold_in(run.key, family.index), loop=training.loop,
                     runtime=_candidate_runtime(run, family, kind, checkpoints))
    chosen = select(result, population, training.criterion)
    val_mse = np.array(_kept_sample_mse(result, training.criterion, chosen.trial), np.float64)
    scores = np.array(chosen.scores, np.float64)
    variables, corrections = _corrections_that_lead(run, family, candidate.model,
                                                    chosen.variables)
    start = result.history[0] if result.history else {}
    if corrections and start.get("step") == 0:  # a dropped correction: the anchor's own
        for k, test in enumerate(corrections):  # validation values (step 0, untrained)
            if not test["kept"]:
                val_mse[k] = start["sample_mse"][chosen.trial[k]]
                scores[k] = start[training.criterion][chosen.trial[k]]
    return _Fitted(candidate.model, variables, val_mse, result,
                   [population.describe(int(p)) for p in chosen.trial], float(np.mean(scores)),
                   candidate.refit, candidate.factor, candidate.label, corrections)


def _corrections_that_lead(run: _TargetRun, family: _Family, model: Denoiser, variables
                           ) -> tuple[Any, list | None]:
    """(variables [K, ...] with each member's learned correction kept only where its draws
    lead those of its anchor alone (the correction's output layer zeroed) on the validation
    patients by the paired test (`ModelSetConfig.correction_test_z`), per member {'kept', and
    the test}): the checkpoint of the lowest mean validation score among several is picked
    by the same 75 patients' noise, and a correction so picked made door5's 'reveal' given
    its blind source 0.68% -> 1.84% above exact (benchmarks/RESULTS.md, "Common factors, each
    member's own count"). None where the models are unanchored or untrained."""
    if not run.config.anchored or anchor_draws.untrained(variables):
        return variables, None
    out = variables["params"]["out"]
    alone = {**variables, "params": {**variables["params"],
                                     "out": jax.tree.map(jnp.zeros_like, out)}}
    loop = run.config.training.loop
    key = jax.random.fold_in(jax.random.fold_in(run.key, family.index), 3)
    trained, anchor = (np.asarray(row_energy_scores(
        model, run.schedule, v, family.val, key, sampler=loop.val_sampler,
        sample_steps=loop.val_sample_steps), np.float64) for v in (variables, alone))  # [K, R]
    tests = [scoring_rules.paired_lead(t - a, run.config.correction_test_z)
             for t, a in zip(trained, anchor)]
    kept = np.asarray([test["leads"] for test in tests])
    out = jax.tree.map(
        lambda a: a * jnp.asarray(kept, a.dtype).reshape((-1,) + (1,) * (a.ndim - 1)), out)
    return ({**variables, "params": {**variables["params"], "out": out}},
            [{"kept": bool(k), **test} for k, test in zip(kept, tests)])


def _candidates(run: _TargetRun, family: _Family) -> list[_Candidate]:
    """A family's candidates: the plain model unanchored, else the Gaussian anchors and the
    mixture anchors where BIC finds a mixture (`_anchor_candidates`)."""
    if not run.config.anchored:
        return [_Candidate(run.model)]
    x, spread = run.inputs.x, run.inputs.spread

    def gaussian(keep: np.ndarray | None = None) -> list[dict]:
        present = x[1] if keep is None else x[1] & keep
        return [fit_anchors(x[0], present, c, predictions=run.config.feature_conditions,
                            in_sample=flags, residual_target=spread)
                for c, flags in zip(family.member_conds, family.member_in_sample)]

    # The multi-condition family's mixtures read the sources' predictions alone: its joint
    # rows are the widest, and with the sources' principal components its draws given every
    # source were worse on the three door cohorts' 200 new patients (within noise on 1,000),
    # while the specialists' given one source gained (benchmarks/RESULTS.md).
    read = x[0].shape[1] if family.name == "multi" and run.inputs.maps is not None else None
    return _anchor_candidates(run.model, x, family.member_conds,
                              _Candidate(run.model, gaussian(), gaussian),
                              run.config.architecture, spread, read)


def _patient_energy(run: _TargetRun, family: _Family, fitted: _Fitted) -> np.ndarray:
    """[N_val] each validation patient's energy score of the kept models' draws, averaged
    over the members that draw the patient (NaN where none does); every model is drawn from
    the same key, so two models' scores are paired on the same noise."""
    loop = run.config.training.loop
    scores = np.asarray(row_energy_scores(
        fitted.model, run.schedule, fitted.variables, family.val,
        jax.random.fold_in(jax.random.fold_in(run.key, family.index), 1), sampler=loop.val_sampler,
        sample_steps=loop.val_sample_steps), np.float64)  # [K, R]
    rows, used = np.asarray(family.val.rows), np.isfinite(scores)
    n = family.val.target.shape[0]
    total, count = np.zeros(n), np.zeros(n)
    np.add.at(total, rows[used], scores[used])
    np.add.at(count, rows[used], 1.0)
    return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


def _paired_energy(run: _TargetRun, family: _Family, gaussian: _Fitted,
                   mixture: _Fitted) -> dict:
    """The paired comparison of a mixture-anchored fit with the Gaussian-anchored one on the
    family's validation patients (`MIXTURE_TEST_Z`): the mean per-patient energy difference
    (mixture minus Gaussian), its standard error, the patients and whether the mixture leads
    (`scoring_rules.paired_lead`)."""
    return scoring_rules.paired_lead(
        _patient_energy(run, family, mixture) - _patient_energy(run, family, gaussian),
        MIXTURE_TEST_Z)


def _count_choice(run: _TargetRun, family: _Family, candidates: list[_Candidate]) -> dict:
    """`mixture_count.choose_count` of the family's untrained candidates (the Gaussian first)
    on the validation patients and the training patients cross-fitted."""
    values, has = run.inputs.x
    train = Patients(family.member_conds, values if run.inputs.spread is None
                     else run.inputs.spread, has)  # as new patients' are encoded
    val = Patients(family.member_conds_val, *run.inputs.x_val)
    return choose_count({c.label: (c.anchors, c.refit) for c in candidates},
                        train, val, jax.random.fold_in(jax.random.fold_in(run.key, family.index),
                                                       2), MIXTURE_TEST_Z)


def _train_family(run: _TargetRun, family: _Family) -> tuple[_Fitted, dict]:
    """(the kept fit, the family's report): the Gaussian-anchored models trained; where some
    member's mixture (count and shapes, each member its own) leads its Gaussian anchor
    untrained (`_count_choice`), the members' choice trained too, and kept unless, trained,
    the Gaussian leads it on validation (`MIXTURE_TEST_Z`); untrained (train_steps 0), the
    count choice decides."""
    gaussian, *mixtures = _candidates(run, family)
    fits = [_fit_candidate(run, family, gaussian)]
    report, mixture = {}, False
    if mixtures:
        report["mixture_count"] = count = _count_choice(run, family, [gaussian, *mixtures])
        if count["chosen"] != GAUSSIAN:  # no member leads: no second family's steps
            fits.append(_fit_candidate(run, family, _members_choice(
                [gaussian, *mixtures], [member["chosen"] for member in count["members"]])))
            mixture = True
            if run.config.train_steps > 0:
                report["mixture_vs_gaussian"] = test = _paired_energy(
                    run, family, fits[0], fits[-1])
                mixture = test["mean_difference"] <= MIXTURE_TEST_Z * test["standard_error"]
    kept = fits[-1] if mixture else fits[0]
    return kept, {"chosen": kept.trials, "val_mse": np.asarray(kept.val_mse).tolist(),
                  "anchor_components": kept.model.anchor_components,
                  "anchor_factor_shapes": kept.factor, "anchor_label": kept.label,
                  "corrections": kept.corrections,
                  "validation_by_anchor_components": {f.label: f.score for f in fits},
                  "history": kept.result.history, **report}


def _validation_sources(run: _TargetRun) -> tuple[list, np.ndarray, np.ndarray]:
    """(per source its condition values [n, D_s], present [n, S], target latents [n, D]) of
    the validation patients that have the target."""
    has = run.inputs.x_val[1]
    conds_val = run.inputs.conds_val
    return ([v[has] for v, _ in conds_val], np.stack([p[has] for _, p in conds_val], axis=1),
            run.inputs.x_val[0][has])


def _fusion_sharpness(run: _TargetRun, tm: TargetModels) -> dict:
    """`calibrate.choose_fusion_sharpness` of the target's specialists on validation."""
    return choose_fusion_sharpness(tm, run.schedule, *_validation_sources(run),
                                   jax.random.fold_in(run.key, len(FAMILIES)),
                                   run.config.fusion_calibration)


def _families_by_pattern(run: _TargetRun, tm: TargetModels, refits: dict) -> dict:
    """`calibrate.choose_family_by_pattern` of the target's two families on the validation
    patients and, where both are untrained anchors, on the training patients drawn from
    anchors refitted without them (`cross_fit`; refits: family -> `_Fitted.refit`)."""
    values, has = run.inputs.x
    truth = values if run.inputs.spread is None else run.inputs.spread  # as new patients'
    held_out = cross_fit.held_out_folds(tm, refits, (truth, has), run.inputs.conds, seed=0)
    return choose_family_by_pattern(tm, run.schedule, *_validation_sources(run),
                                    jax.random.fold_in(run.key, len(FAMILIES) + 1),
                                    run.config.fusion_calibration, held_out)


def _check_training(cohort, target: str, config: ModelSetConfig) -> None:
    """Refuses a criterion, a target or an untrained unanchored model that cannot be trained."""
    if config.criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {config.criterion!r}; choose one of {CRITERIA}.")
    if config.train_steps == 0 and not config.anchored:
        raise ValueError("train_steps=0 trains nothing: only anchored models (anchored=True) are "
                         "usable untrained, as their linear-Gaussian anchors.")
    if target not in cohort.modalities:
        raise ValueError(f"unknown target {target!r}; the cohort has {list(cohort.modalities)}.")


@old_call_form("train_target(cohort, target, config, key, runtime=TrainingRuntime(workdir=, "
               "log_fn=, batch_sharding=), features=, residual_latents=)", _old_training_call)
def train_target(cohort, target: str, config: ModelSetConfig, key: jax.Array, *,
                 runtime: TrainingRuntime = TrainingRuntime(), features=None,
                 residual_latents=None) -> tuple[TargetModels, dict]:
    """Trains the specialists and/or multi-condition model of one target.

    Args:
        cohort: a latent Cohort with 'train' and 'val' splits; all other modalities are sources.
        target: the modality to generate.
        config: the training configuration.
        key: the target's key.
        runtime: checkpoint folder, log function and batch sharding (`TrainingRuntime`).
        features: the feature-space cohort (same samples and splits), needed when
            config.feature_conditions.
        residual_latents: the latent cohort as new patients would be encoded
            (`latent.cross_fitted_latents`); the anchors' covariances are fitted to its
            residuals (default: `cohort`'s).

    Returns:
        (TargetModels, report) where report has each family's chosen trials and history, and
        the fusion calibration's record.
    """
    _check_training(cohort, target, config)
    inputs = _target_inputs(cohort, target, config.conditioning, features, residual_latents)
    families = _families(target, inputs, config.training)
    run = _TargetRun(target, config, inputs, config.architecture.denoiser(inputs.widths[target]),
                     config.architecture.noise_schedule(), key,
                     {"config": dataclasses.asdict(config),
                      "data_fingerprint": cohort_fingerprint(cohort), "target": target}, runtime)
    out = TargetModels(target=target, sources=inputs.sources,
                       unconditional=config.uncond_prob > 0, condition_maps=inputs.maps)
    report = {}
    for family in families:
        kept, report[family.name] = _train_family(run, family)
        out.anchor_refits[family.name] = kept.refit
        if family.name == "specialists":
            out.specialist_model, out.specialists = kept.model, kept.variables
            out.val_mse = np.asarray(kept.val_mse)
            if tuple(config.sharpness_grid) != (0.0,):
                report["fusion"] = _fusion_sharpness(run, out)
                out.sharpness = report["fusion"]["chosen"]  # the models' owner stores it
        else:
            out.multi_model = kept.model
            out.multi = jax.tree.map(lambda a: a[0], kept.variables)
    if out.specialists is not None and out.multi is not None:
        report["family_by_pattern"] = _families_by_pattern(run, out, out.anchor_refits)
        out.family_by_pattern = report["family_by_pattern"]["chosen"]
    return out, report


@old_call_form("train_model_set(cohort, config, seed, targets=, runtime=TrainingRuntime("
               "workdir=, log_fn=, batch_sharding=), features=, residual_latents=)",
               _old_training_call)
def train_model_set(cohort, config: ModelSetConfig, seed: int, *,
                    targets: Sequence[str] | None = None,
                    runtime: TrainingRuntime = TrainingRuntime(), features=None,
                    residual_latents=None) -> tuple[ModelSet, dict]:
    """Trains the models of every target (default: every modality) of a latent cohort;
    `runtime` says where checkpoints and records go (`TrainingRuntime`); `features` is the
    feature-space cohort (needed with config.feature_conditions); `residual_latents` the
    latents as new patients would be encoded, for the spreads
    (`latent.cross_fitted_latents`; see `train_target`)."""
    targets = tuple(targets or cohort.modalities)
    unknown = [t for t in targets if t not in cohort.modalities]
    if unknown:
        raise ValueError(f"unknown target(s) {unknown}; the cohort has {list(cohort.modalities)}.")
    covariate = fit_covariate(config.conditioning, features)
    key = jax.random.key(seed)
    models, reports = {}, {}
    for target in targets:  # a target's key depends on its modality, not on the targets asked
        models[target], reports[target] = train_target(
            cohort, target, config, jax.random.fold_in(key, cohort.modalities.index(target)),
            runtime=runtime, features=features, residual_latents=residual_latents)
    closed_form = None
    if features is not None and len(cohort.modalities) > 1:
        closed_form = ClosedForm.fit(
            features.split("train"), cohort.split("train"), distill=config.distill_conditions,
            seed=seed, residual_latents=(None if residual_latents is None
                                         else residual_latents.split("train")),
            covariate=covariate)
    return (ModelSet(config.schedule, config.diffusion_steps, models, closed_form, covariate),
            reports)
