"""The PyTorch reference of benchmarks/gpu_suite.py: the paper's eager loop
(benchmarks/reference_torch.py) on the device JAX uses, sampling and training."""

from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np

from _gpu_parts import LEARNING_RATES, val_losses
from _gpu_results import Results, time_call
from _machine import COND_DIM


def _torch_device(res: Results):
    """(torch, device, None) when torch can run on the device JAX uses, else (None, None, why)."""
    if res.args.no_torch:
        return None, None, "the PyTorch reference was skipped (--no_torch)"
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except Exception as err:  # pylint: disable=broad-except  (absent, or its CUDA libs broken)
        return None, None, (f"torch is not importable here ({type(err).__name__}: {err}); "
                            "no PyTorch reference")
    if jax.default_backend() == "gpu":
        if not torch.cuda.is_available():
            return None, None, (f"torch {torch.__version__} is installed but CUDA is not "
                                "available to it; no PyTorch reference on the GPU")
        return torch, torch.device("cuda"), None
    if jax.default_backend() == "cpu":
        return torch, torch.device("cpu"), None
    return None, None, f"no torch device for JAX backend {jax.default_backend()!r}"


class _TorchOn:
    """`torch` as benchmarks/reference_torch.py should see it to run on `device`: its factory
    calls (randn, full, zeros, arange, randint, ...) get `device=`, everything else is torch.

    reference_torch allocates with factory calls that take no device (it was written for the
    CPU). `with torch.device(...)` would place them too, but through a TorchFunctionMode that
    intercepts every op, which slows this Python-overhead-bound loop and would flatter ours
    (benchmarks/RESULTS.md, "Measurements behind comments in the code"). This wrapper costs
    nothing measurable.
    """

    FACTORIES = ("arange", "empty", "full", "ones", "rand", "randint", "randn", "zeros")

    def __init__(self, torch, device):
        self._torch = torch
        for name in self.FACTORIES:
            setattr(self, name, functools.partial(getattr(torch, name), device=device))

    def __getattr__(self, name):
        return getattr(self._torch, name)


@contextlib.contextmanager
def _reference_on(reference_torch, torch, device):
    """reference_torch's loops allocate on `device` inside the block."""
    saved = reference_torch.torch
    reference_torch.torch = _TorchOn(torch, device)
    try:
        yield
    finally:
        reference_torch.torch = saved


def measure_torch(res: Results) -> None:
    """The paper's eager loop (benchmarks/reference_torch.py) on the same device."""
    torch, device, why = _torch_device(res)
    ref = res.data["torch_reference"]
    if torch is None:
        ref.update(available=False, reason=why)
        res.write()
        res.log(why)
        return
    import reference_torch  # pylint: disable=import-outside-toplevel  (needs torch)

    if res.args.dry_run:
        torch.set_num_threads(1)  # tiny ops on a shared CPU: threads only wait for each other
    ref.update(available=True, device=str(device),
               device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "cpu"), torch=torch.__version__,
               cuda=torch.version.cuda,
               allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
               float32_matmul_precision=torch.get_float32_matmul_precision())
    torch.manual_seed(res.args.seed)
    reference = _TorchReference(res, torch, device, reference_torch)
    if res.within_budget("torch sampling"):
        reference.sampling()
    if res.within_budget("torch training"):
        reference.training()


class _TorchReference:
    """reference_torch's sampling and training loops on `device`, timed into `res`."""

    def __init__(self, res: Results, torch, device, reference_torch):
        self.res, self.torch, self.device, self.module = res, torch, device, reference_torch
        self.sync = torch.cuda.synchronize if device.type == "cuda" else None
        self.arch = {k: v for k, v in res.args.arch.items() if k != "data_dim"}
        self.data_dim = res.args.arch["data_dim"]

    def sampling(self) -> None:
        """Coherent DDPM sampling of --torch_n patients with --torch_k specialists."""
        res, args, torch, device = self.res, self.res.args, self.torch, self.device
        k, n = args.torch_k, args.torch_n
        # Built on the CPU (random_norm_mlp draws with a CPU generator), then moved.
        models = [self.module.random_norm_mlp(args.seed + j, self.data_dim, [COND_DIM],
                                              num_steps=args.ddpm_steps, **self.arch).to(device)
                  for j in range(k)]
        generator = torch.Generator(device=device).manual_seed(args.seed)
        conds = [torch.randn((n, COND_DIM), generator=generator, device=device)
                 for _ in range(k)]
        weights = self.module.softmax_inverse_weights(val_losses(k).tolist()).to(device)
        with _reference_on(self.module, torch, device):
            first, timing = time_call(lambda: self.module.coherent_sample(
                models, conds, weights, n, self.data_dim, generator=generator)[0].sum().item(),
                args.repeats, args.max_timed_s, sync=self.sync)
        res.data["torch_reference"]["sampling"] = {
            "sampler": "ddpm", "steps": args.ddpm_steps, "K": k, "N": n, "first_call_s": first,
            "seconds": timing.seconds, "repeats": timing.kept, "samples_per_s": n / timing.seconds}
        res.write()
        res.log(f"torch sampling K={k} N={n} T={args.ddpm_steps}: {timing.seconds:.3g} s")

    def training(self) -> None:
        """One model's eager Adam steps (--train_steps of --train_batch rows per call)."""
        res, args, torch, device = self.res, self.res.args, self.torch, self.device
        rng = np.random.default_rng(args.seed)
        model = self.module.NormMLP(self.data_dim, [COND_DIM], **self.arch).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATES[0])
        x0 = torch.from_numpy(rng.standard_normal((args.train_rows, self.data_dim),
                                                  dtype=np.float32)).to(device)
        cond = torch.from_numpy(rng.standard_normal((args.train_rows, COND_DIM),
                                                    dtype=np.float32)).to(device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        with _reference_on(self.module, torch, device):
            first, timing = time_call(lambda: self.module.train_steps(
                model, optimizer, x0, cond, args.train_batch, args.train_steps, generator),
                args.repeats, args.max_timed_s, sync=self.sync)
        res.data["torch_reference"]["training"] = {
            "models": 1, "batch": args.train_batch, "steps_per_call": args.train_steps,
            "first_call_s": first, "seconds": timing.seconds, "repeats": timing.kept,
            "model_steps_per_s": args.train_steps / timing.seconds}
        res.write()
        res.log(f"torch training: {args.train_steps / timing.seconds:.4g} model-steps/s")
