"""results.md of benchmarks/gpu_suite.py: its results.json rendered as markdown tables, one
section per part, then issue 14's targets and what was skipped or failed."""

from __future__ import annotations

from _machine import fmt_table

# Issue 14's targets on one H100, checked in results.md.
TARGET_SPEEDUP_SAMPLING = 10.0
TARGET_PEAK_SHARE = 50.0
TARGET_PAPER_S = 60.0
TARGET_SPEEDUP_TRAINING = 20.0


def render_markdown(data: dict) -> str:
    """The suite's results (results.json's dict) as results.md's text."""
    out = _header(data)
    for section in (_peak_section, _sampling_section, _training_section, _paper_section,
                    _torch_section, _targets_section, _skipped_section):
        out += section(data)
    return "\n".join(out)


def _header(data: dict) -> list[str]:
    """Title, command, machine, versions and the model measured."""
    dev = data["device"]
    out = [f"# GPU suite: {dev['kind']} ({dev['backend']})", "",
           f"`{data['command']}`, {data['date']}, seed {data['seed']}, wall "
           f"{data['wall_s']:.0f} s" + (" (DRY RUN: tiny sizes on the CPU, not a measurement "
                                         "of anything)" if data["config"]["dry_run"] else ""),
           "", "```", data["machine"]]
    out += [f"{k} {v}" for k, v in data["versions"].items() if v and k not in ("jax", "python")]
    if dev.get("nvidia_smi"):
        out.append(f"nvidia-smi: {dev['nvidia_smi']}")
    if data.get("coherent_jax_init_skipped_for"):
        out.append("coherent_jax/__init__ skipped: it needs "
                   f"{data['coherent_jax_init_skipped_for']}")
    out += ["```", ""]
    m = data["model"]
    out.append(f"Model: random norm_mlp {m['arch']}, condition width {m['cond_dim']}: "
               f"{m['mflop_per_row_member_step']:.2f} MFLOP per row, member and step "
               f"({m['mflop_per_row_member_step_folded']:.2f} in the folded form).")
    return out


def _peak_section(data: dict) -> list[str]:
    out = ["", "## Matmul peak", ""]
    peak = data["matmul_peak"]
    if "fp32_default" in peak:
        rows = [[name, r["dtype"], r["precision"], f"{r['size']}^3 x {r['chain']}", r["seconds"],
                 r["tflops"]] for name, r in peak.items() if isinstance(r, dict)]
        out.append(fmt_table(["case", "dtype", "precision", "matmuls", "s", "TFLOP/s"], rows))
        out += ["", f"fp32 with default precision runs as: {peak.get('default_fp32_is', '?')}. "
                "Every % peak below is against the fp32 DEFAULT row (what the library's fp32 "
                "matmuls run at)."]
    return out


def _sampling_section(data: dict) -> list[str]:
    out = ["", "## Coherent sampling", "",
           "`coherent_sample`, folded form, per-sample weights as `impute` builds them, one "
           "candidate. TFLOP/s and % peak count the plain model's FLOPs (as the CPU tables); "
           "'executed' counts the folded form's 25% fewer."]
    if data["sampling"]:
        rows = [[c["sampler"], c["steps"], c["K"], c["N"], c["first_call_s"], c["seconds"],
                 c["samples_per_s"], c["tflops"], f"{c['pct_peak']:.1f}",
                 f"{c['pct_peak_executed']:.1f}", c["repeats"]]
                for c in sorted(data["sampling"], key=lambda c: (c["sampler"] != "ddpm",
                                                                 c["sampler"], c["K"], c["N"]))]
        out += ["", fmt_table(["sampler", "steps", "K", "N", "first call s (incl. compile)", "s",
                               "samples/s", "TFLOP/s", "% peak", "% peak executed", "repeats"],
                              rows)]
    return out


def _training_section(data: dict) -> list[str]:
    out = ["", "## Training", "",
           "`train_steps`: P members (specialists x seeds x learning rates) in ONE jitted, "
           "vmapped Adam step, steps in one lax.scan with batch drawing; TFLOP/s counts 3x the "
           "forward FLOPs."]
    if data["training"]:
        rows = [[r["population"], r["batch"], r["steps_per_call"], r["first_call_s"],
                 r["seconds"], r["model_steps_per_s"], r["tflops"], f"{r['pct_peak']:.1f}"]
                for r in sorted(data["training"], key=lambda r: r["population"])]
        out += ["", fmt_table(["P", "batch", "steps per call", "first call s (incl. compile)",
                               "s", "model-steps/s", "TFLOP/s", "% peak"], rows)]
    return out


def _paper_section(data: dict) -> list[str]:
    out = ["", "## Paper test-set generation", ""]
    if not data["paper_generation"]:
        return out + ["not measured (see Skipped or failed)."]
    r0 = data["paper_generation"][0]
    out.append(f"{r0['targets']} targets x {r0['subsets']} source subsets x {r0['draws']} "
               f"draws x {r0['patients']} patients, DDPM-{r0['steps']}: {r0['generations']:,} "
               "patient generations (benchmarks/bench_paper_generation.py layouts, folded "
               "form, rejection off).")
    rows = [[r["mode"], r["first_call_s"], r["seconds"], r["generations_per_s"]]
            for r in data["paper_generation"]]
    return out + ["", fmt_table(["calls", "first call s (incl. compile)", "s",
                                 "patient-generations/s"], rows)]


def _torch_section(data: dict) -> list[str]:
    out = ["", "## PyTorch reference", ""]
    ref = data["torch_reference"]
    if not ref.get("available"):
        return out + [ref.get("reason", "not run (see Skipped or failed).")]
    out.append(f"benchmarks/reference_torch.py on {ref['device']} ({ref['device_name']}), "
               f"torch {ref['torch']}, CUDA {ref['cuda']}, allow_tf32 = {ref['allow_tf32']}"
               + (" (torch's default: its fp32 matmuls run in full fp32, not TF32)."
                  if not ref["allow_tf32"] else "."))
    rows = []
    if ref.get("sampling"):
        s = ref["sampling"]
        ours = next((c for c in data["sampling"] if (c["sampler"], c["K"], c["N"]) ==
                     ("ddpm", s["K"], s["N"])), None)
        rows.append([f"coherent sampling DDPM-{s['steps']}, K = {s['K']}, N = {s['N']}",
                     s["seconds"], f"{s['samples_per_s']:.4g} samples/s",
                     f"{s['seconds'] / ours['seconds']:.1f}x" if ours else "-"])
    if ref.get("training"):
        t = ref["training"]
        train = {r["population"]: r for r in data["training"]}
        p = 36 if 36 in train else max(train) if train else None
        rows.append([f"training, one model, batch {t['batch']}, {t['steps_per_call']} steps",
                     t["seconds"], f"{t['model_steps_per_s']:.4g} model-steps/s",
                     f"{train[p]['model_steps_per_s'] / t['model_steps_per_s']:.1f}x "
                     f"(P = {p})" if p else "-"])
    return out + ["", fmt_table(["reference loop", "s", "throughput", "ours / reference"], rows)]


def _targets(data: dict) -> list[list]:
    """Issue 14's targets on one H100: measured value, goal, met."""
    rows = []
    ref = data.get("torch_reference", {})
    ours = {(c["sampler"], c["K"], c["N"]): c for c in data["sampling"]}
    if ref.get("sampling"):
        s = ref["sampling"]
        mine = ours.get(("ddpm", s["K"], s["N"]))
        if mine:
            x = s["seconds"] / mine["seconds"]
            rows.append([f"coherent sampling vs reference loop, N = {s['N']}, K = {s['K']}, "
                         f"T = {s['steps']}", f"{x:.1f}x", f">= {TARGET_SPEEDUP_SAMPLING:.0f}x",
                         "yes" if x >= TARGET_SPEEDUP_SAMPLING else "no"])
    big = [c for c in data["sampling"] if c["N"] >= 10000]
    if big:
        best = max(big, key=lambda c: c["pct_peak_executed"])
        rows.append([f"% of default-fp32 matmul peak at N >= 10,000 (best: {best['sampler']}, "
                     f"K = {best['K']}, N = {best['N']}; executed FLOPs / model FLOPs)",
                     f"{best['pct_peak_executed']:.0f}% / {best['pct_peak']:.0f}%",
                     f">= {TARGET_PEAK_SHARE:.0f}%",
                     "yes" if best["pct_peak_executed"] >= TARGET_PEAK_SHARE else
                     "model FLOPs only" if best["pct_peak"] >= TARGET_PEAK_SHARE else "no"])
    if data["paper_generation"]:
        best = min(data["paper_generation"], key=lambda r: r["seconds"])
        full = best["generations"] == 4 * 14 * 10 * 1350 and best["steps"] == 1000
        rows.append([f"the paper's whole test-set generation ({best['mode']}"
                     f"{'' if full else ', NOT the full workload'})", f"{best['seconds']:.3g} s",
                     f"< {TARGET_PAPER_S:.0f} s",
                     "yes" if best["seconds"] < TARGET_PAPER_S and full else "no"])
    if ref.get("training") and data["training"]:
        train = {r["population"]: r for r in data["training"]}
        p = 36 if 36 in train else max(train)
        x = train[p]["model_steps_per_s"] / ref["training"]["model_steps_per_s"]
        rows.append([f"training a {p}-member population vs the one-model loop (model-steps/s)",
                     f"{x:.1f}x", f">= {TARGET_SPEEDUP_TRAINING:.0f}x (P = 36)",
                     "yes" if x >= TARGET_SPEEDUP_TRAINING and p == 36 else "no"])
    return rows


def _targets_section(data: dict) -> list[str]:
    targets = _targets(data)
    if not targets:
        return []
    return ["", "## Issue 14 targets (one H100)", "",
            fmt_table(["target", "measured", "goal", "met"], targets)]


def _skipped_section(data: dict) -> list[str]:
    if not (data["skipped"] or data["errors"]):
        return []
    return ["", "## Skipped or failed", ""] + [f"- {s}" for s in data["skipped"] + data["errors"]]
