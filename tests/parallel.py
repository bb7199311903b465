"""Context-parallel runs on this CPU machine: 2 processes, gloo, diffusers' ``enable_parallelism``.

Two things in diffusers assume an accelerator, and are worked around here, for the tests only (they concern
diffusers on a CPU, not the backend):

* ``ModelMixin._resolve_parallel_config`` takes ``rank % torch.accelerator.device_count()``, a division by zero
  on a machine with none: ``device_count`` reads 1 while ``enable_parallelism`` runs (the device it picks is
  never read by the context-parallel code).
* Ring attention needs the attention's log-sum-exp, which the ``native`` backend does not return, and
  ``_native_flash``'s op (``aten::_scaled_dot_product_flash_attention``) has no CPU kernel: one is registered,
  built on ``aten::_scaled_dot_product_flash_attention_for_cpu``, and the model uses ``_native_flash``.

``launch(worker, *args)`` runs ``worker(rank, *args)`` in 2 fresh processes under a deadline: a rank still
running after it (a hang, the failure the backend must prevent) is killed and reported.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
import unittest.mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
TIMEOUT = datetime.timedelta(seconds=60)  # a collective that waits longer fails instead of hanging

__all__ = ["WORLD_SIZE", "enable_context_parallelism", "launch"]

_flash_library = None  # keeps the CPU kernel registered


def _flash_attention_on_cpu(query, key, value, dropout_p=0.0, is_causal=False, return_debug_mask=False, *,
                            scale=None):
    """``aten::_scaled_dot_product_flash_attention`` (CUDA's nine outputs) from the CPU flash kernel."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal,
                                                                          scale=scale)
    seed, offset = torch.empty(2, dtype=torch.uint64), torch.empty((), dtype=torch.uint64)
    return out, lse, None, None, query.shape[2], key.shape[2], seed, offset, query.new_empty(0)


def enable_context_parallelism(model: torch.nn.Module, mode: str) -> None:
    """``model.enable_parallelism`` with Ulysses or Ring degree 2, on this CPU machine (see the module docstring)."""
    global _flash_library
    from diffusers import ContextParallelConfig

    if mode == "ring":
        if _flash_library is None:
            _flash_library = torch.library.Library("aten", "IMPL")
            _flash_library.impl("_scaled_dot_product_flash_attention", _flash_attention_on_cpu, "CPU")
        model.set_attention_backend("_native_flash")
    config = ContextParallelConfig(**{f"{mode}_degree": WORLD_SIZE})
    with unittest.mock.patch.object(torch.accelerator, "device_count", lambda: 1):
        model.enable_parallelism(config=config)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, worker, args: tuple) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("TRITON_INTERPRET", "1")
    torch.set_num_threads(1)
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = TIMEOUT  # the groups the device mesh makes too
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
                            timeout=TIMEOUT)
    try:
        worker(rank, *args)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def launch(worker, *args, deadline_s: float = 900) -> list[int | None]:
    """Run ``worker(rank, *args)`` on every rank; return the exit codes (``None``: killed at the deadline)."""
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_rank, args=(rank, port, worker, args)) for rank in range(WORLD_SIZE)]
    for process in processes:
        process.start()
    end = time.monotonic() + deadline_s
    for process in processes:
        process.join(max(0.0, end - time.monotonic()))
    codes = []
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)
            codes.append(None)
        else:
            codes.append(process.exitcode)
    return codes
