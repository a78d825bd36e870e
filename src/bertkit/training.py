"""What the pretraining and fine-tuning loops share: the precision choice, AdamW's parameter groups, the
learning-rate schedule and data parallelism over `torch.distributed`.

Distributed runs are started by `torchrun` (never by bertkit itself), which sets RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_ADDR; `distributed()` then joins the process group, gloo on CPU and NCCL on GPU.
"""

from __future__ import annotations

import atexit
import os
import warnings

import torch

from bertkit.errors import BertkitError


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matrix multiplies run natively (AVX-512 BF16 / AMX on CPU, Ampere+ on GPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose_precision(precision: str, device: torch.device) -> tuple[bool, str]:
    """(use bf16 autocast?, why), for "auto", "fp32" or "bf16". Auto takes bf16 only where it is native: on a
    CPU without AVX-512 BF16 / AMX it is emulated and several times slower than fp32."""
    native = bf16_supported(device)
    where = "this GPU" if device.type == "cuda" else "this CPU"
    if precision == "fp32":
        return False, "fp32 (asked for)"
    if precision == "bf16":
        return True, "bf16 (asked for)" + (
            "" if native else f"; {where} has no native bf16, so it is emulated and slow"
        )
    if native:
        kind = "bf16 support" if device.type == "cuda" else "AVX-512 BF16 / AMX"
        return True, f"bf16 autocast (auto: {where} has {kind})"
    return False, f"fp32 (auto: {where} has no native bf16{'' if device.type == 'cuda' else ', AVX2 only'})"


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else this process's GPU when there is one (under torchrun `distributed()` has made it
    LOCAL_RANK's), else the CPU."""
    if device is None and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"
    return torch.device(device or "cpu")


def check_seed(seed: int, flag: str = "--seed") -> None:
    """Seeds feed torch, numpy and Python's generators: numpy takes no negative seed, torch none of 64 bits."""
    if not 0 <= seed < 2**32:
        raise BertkitError(f"{flag} must be in 0..{2**32 - 1}, got {seed}")


def check_finite(model: torch.nn.Module, when: str, consequence: str) -> None:
    """A model whose weights hold NaN or inf is a run that diverged: an error that names the first such tensor,
    raised before it is saved over anything."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise BertkitError(
                f"the weights are not finite {when} ({name}): the run diverged; {consequence}. Lower --lr"
            )


def skip_update(optimizer: torch.optim.Optimizer, schedule) -> None:
    """A step whose loss or gradient is not finite: no update (it would poison the weights and Adam's moments),
    but the schedule moves on, as the data does. torch warns about a schedule step before any optimizer step,
    which is the point here, and a warning line would break the CLI's one-line errors."""
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`", category=UserWarning)
        schedule.step()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, LayerNorm and (by convention) nothing 1-D is decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: 0 → 1 over the warm-up, then linearly down to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) in a plain process; under torchrun, the process group is joined once."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart == 0:
            dist.init_process_group(backend)
        else:
            # Workers that torchrun restarted (--max-restarts) meet in the same store as the ones that failed,
            # whose addresses are still under the default keys: each process would connect to a dead peer
            # (gloo: "connectFullMesh failed ... Connection refused"; pytorch/pytorch#167288 for NCCL). The
            # keys of each restart get their own prefix.
            from datetime import timedelta

            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            store = dist.TCPStore(
                os.environ["MASTER_ADDR"],
                int(os.environ["MASTER_PORT"]),
                world,
                is_master=not agent_store and rank == 0,
                timeout=timedelta(minutes=30),
            )
            store = dist.PrefixStore(f"bertkit/restart-{restart}", store)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        atexit.register(_leave_process_group)
    return dist.get_rank(), dist.get_world_size()


def _leave_process_group() -> None:
    """Destroy the process group while the interpreter is still whole. Left to interpreter shutdown, gloo's
    worker threads are torn down with it and a rank can die of SIGABRT ("terminate called without an active
    exception") after its work is done: seen once in 2-process fine-tuning, in CI."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], world: int, device: torch.device) -> list[float]:
    """Element-wise sums over the ranks (the values themselves in one process)."""
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_lists(items: list, world: int) -> list:
    """Every rank's list, concatenated in rank order (the list itself in one process); any picklable items."""
    if world == 1:
        return items
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def broadcast_float(value: float, world: int, device: torch.device) -> float:
    """Rank 0's value on every rank."""
    if world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t[0])


def all_reduce_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer; a rank whose slice of the batch was
    empty (or left a parameter unused) contributes zeros."""
    if world == 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g)  # views into the one reduced buffer
        offset += g.numel()


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
