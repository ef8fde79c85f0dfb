"""What the hardware runs fast: bfloat16 where the chip has bf16 matrix units, float32 elsewhere."""

import torch


def bf16_supported(device: str | torch.device | None = None) -> bool:
    """
    Whether `device` (default: the first GPU if there is one, else the CPU) runs bfloat16 matmuls natively: a CUDA
    GPU with bf16 (Ampere and newer), or a CPU with AVX-512 BF16 or AMX tiles. Elsewhere bf16 is emulated and slower
    than float32.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # torch's own probes of the CPU flags (`lscpu`: avx512_bf16, amx_bf16), as its oneDNN kernels use them.
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def preferred_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """bfloat16 where `device` runs it natively (`bf16_supported`), float32 elsewhere."""
    return torch.bfloat16 if bf16_supported(device) else torch.float32


def decoding_dtype(name: str) -> torch.dtype | str:
    """
    The weights' dtype a script's `--dtype` names: `auto` is `preferred_dtype()`, `checkpoint` the dtype the weights
    were saved in (transformers' `"auto"`), else a floating torch dtype such as `float32` or `bfloat16`.
    """
    if name == "auto":
        return preferred_dtype()
    if name == "checkpoint":
        return "auto"  # transformers' word for the dtype the checkpoint was saved in
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`--dtype` must be `auto`, `checkpoint` or a floating dtype (`float32`), got {name!r}.")
    return dtype
