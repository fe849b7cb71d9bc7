"""The registry of named feature encoders, and custom torch encoders.

What an encoder is (the :class:`~uniav.prepare.encoder_base.Encoder` contract, the visual and
audio window conventions) is in :mod:`uniav.prepare.encoder_base`; the built-ins ``colour_motion``
(visual, 119-d) and ``logmel`` (audio, 91-d), which need no weights, are in
:mod:`uniav.prepare.encoder_builtins`; docs/synthetic.md ("Feature grid and encoders") describes
them.  This module holds:

* :data:`BUILTIN_ENCODERS`, :func:`get_encoder` (a built-in or a custom encoder by name) and
  :func:`list_encoders` (what ``uniav extract --list-encoders`` prints);
* custom encoders: :class:`TorchModuleEncoder` (a user ``nn.Module`` as an encoder),
  :func:`load_state_dict` and :func:`build_custom_encoder`.

**Custom encoders** come from ``features.custom_encoders.<name>`` in ``params.yaml``::

    features:
      visual_encoder: my_net
      custom_encoders:
        my_net: {modality: visual, factory: "my_pkg.models:build",
                 weights: weights/my_net.safetensors, dim: 512}

``factory`` (``module:callable``, the module importable from the project) returns an
``nn.Module``; its weights are loaded from a local ``.safetensors`` file or a torch file read
with ``torch.load(weights_only=True)`` (a state dict, optionally under a ``state_dict`` key),
strictly.  The module receives visual windows as ``(B, W, 3, H, W)`` float32 in [0, 1] or audio
windows as ``(B, S)`` float32 and must return ``(B, dim)``; a dry run at load time checks the
declared ``dim``.  Optional module attributes: ``frame_size`` (int, default 32) and
``sample_rate`` (int, default 16000) say what the decoder should deliver.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from uniav.errors import ConfigError, InputError
from uniav.prepare.encoder_base import DEFAULT_FRAME_SIZE, DEFAULT_SAMPLE_RATE, Encoder
from uniav.prepare.encoder_builtins import ColourMotionEncoder, LogMelEncoder

# =============================================================================================
# Custom torch encoders
# =============================================================================================


class TorchModuleEncoder(Encoder):
    """Wraps a user ``nn.Module`` (see module docs for the input convention)."""

    def __init__(self, name: str, modality: str, dim: int, module: Any, *, frame_size: int,
                 sample_rate: int, description: str = ""):
        self.name, self.modality, self.dim = name, modality, dim
        self.module = module
        self.frame_size = frame_size
        self.sample_rate = sample_rate
        self.description = description
        self.batch_size = 16

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        import torch

        if self.modality == "visual":
            # (B, W, H, W, 3) uint8 -> (B, W, 3, H, W) float in [0, 1]
            tensor = torch.from_numpy(np.ascontiguousarray(windows)).permute(0, 1, 4, 2, 3)
            tensor = tensor.float() / 255.0
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        with torch.inference_mode():
            output = self.module(tensor)
        if not isinstance(output, torch.Tensor) or output.ndim != 2 \
                or output.shape != (len(windows), self.dim):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ConfigError(f"features.custom_encoders.{self.name}.dim: the module returned "
                              f"{shape} for {len(windows)} windows, expected "
                              f"({len(windows)}, {self.dim})")
        return output.float().cpu().numpy()


def _import_factory(spec: str, name: str) -> Callable[[], Any]:
    """The callable named by a ``module:callable`` spec (``pkgutil.resolve_name``).

    Args:
        spec: the ``factory`` entry, ``module:callable`` (the callable may be dotted).
        name: the encoder's name under ``features.custom_encoders``.

    Returns:
        The callable.

    Raises:
        ConfigError: naming ``features.custom_encoders.<name>.factory``, when the spec is not of
            that form, the module cannot be imported, the attribute is missing or not callable.
    """
    module_name, sep, attribute = spec.partition(":")
    where = f"features.custom_encoders.{name}.factory"
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{where}: expected 'module:callable', got {spec!r}")
    try:
        target = pkgutil.resolve_name(spec)
    except ValueError:
        raise ConfigError(f"{where}: expected 'module:callable', got {spec!r}") from None
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r} ({exc})") from None
    except AttributeError:
        raise ConfigError(f"{where}: {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ConfigError(f"{where}: {spec!r} is not callable")
    return target


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a state dict from a ``.safetensors`` file or a torch file (``weights_only=True``).

    Args:
        path: the weights file.

    Returns:
        ``{parameter name: tensor}`` (a top-level ``state_dict`` entry is unwrapped).

    Raises:
        InputError: missing or unreadable file, or not a mapping of names to tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError("encoder weights file not found", file=path, field="weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"cannot read encoder weights ({type(exc).__name__}: {exc})", file=path,
                         field="weights") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputError("expected a state dict (names -> tensors)", file=path, field="weights")
    return state


def build_custom_encoder(name: str, spec: Any) -> TorchModuleEncoder:
    """Build a custom encoder from its ``CustomEncoderConfig``.

    Args:
        name: the encoder's name under ``features.custom_encoders``.
        spec: the ``CustomEncoderConfig`` (modality, factory, weights, dim).

    Returns:
        The encoder, its module in eval mode with the weights loaded; its output dim checked.

    Raises:
        ConfigError: bad factory, or the module's output dim differs from ``dim``.
        InputError: missing/unreadable weights, or weights that do not fit the module.
    """
    import torch

    factory = _import_factory(spec.factory, name)
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"features.custom_encoders.{name}.factory: returned "
                          f"{type(module).__name__}, not a torch.nn.Module")
    state = load_state_dict(spec.weights)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the module: {exc}", file=spec.weights,
                         field=f"features.custom_encoders.{name}.weights") from None
    module.eval()
    frame_size = int(getattr(module, "frame_size", DEFAULT_FRAME_SIZE))
    sample_rate = int(getattr(module, "sample_rate", DEFAULT_SAMPLE_RATE))
    encoder = TorchModuleEncoder(name, spec.modality, spec.dim, module, frame_size=frame_size,
                                 sample_rate=sample_rate,
                                 description=f"custom: {spec.factory} with {spec.weights}")
    if spec.modality == "visual":
        probe = np.zeros((1, 16, frame_size, frame_size, 3), dtype=np.uint8)
    else:
        probe = np.zeros((1, sample_rate), dtype=np.float32)
    encoder.encode_windows(probe)  # raises ConfigError when the output dim is not ``dim``
    return encoder


# =============================================================================================
# The registry
# =============================================================================================

#: Built-in encoders by name.
BUILTIN_ENCODERS: dict[str, Callable[[], Encoder]] = {
    ColourMotionEncoder.name: ColourMotionEncoder,
    LogMelEncoder.name: LogMelEncoder,
}


def get_encoder(name: str, features_config: Any = None, *, modality: str | None = None) -> Encoder:
    """Look an encoder up by name: a built-in or one of ``features.custom_encoders``.

    Args:
        name: the encoder name.
        features_config: the ``FeaturesConfig`` holding custom encoders (optional).
        modality: if given, the encoder must be of this modality.

    Returns:
        The :class:`Encoder`.

    Raises:
        ConfigError: unknown name or wrong modality.
    """
    custom = dict(getattr(features_config, "custom_encoders", None) or {})
    if name in custom:
        encoder: Encoder = build_custom_encoder(name, custom[name])
    elif name in BUILTIN_ENCODERS:
        encoder = BUILTIN_ENCODERS[name]()
    else:
        known = ", ".join(sorted(set(BUILTIN_ENCODERS) | set(custom)))
        raise ConfigError(f"features: unknown encoder {name!r} (known: {known}; "
                          f"see `uniav extract --list-encoders`)")
    if modality is not None and encoder.modality != modality:
        key = "visual_encoder" if modality == "visual" else "audio_encoder"
        raise ConfigError(f"features.{key}: {name!r} is a {encoder.modality} encoder, "
                          f"not a {modality} one")
    return encoder


def list_encoders(features_config: Any = None) -> list[dict[str, Any]]:
    """Descriptions of every available encoder (built-ins, then custom ones, unloaded).

    Args:
        features_config: the ``FeaturesConfig`` holding custom encoders (optional).

    Returns:
        One dict per encoder: name, modality, dim, input, description.
    """
    rows = [factory().info() for factory in BUILTIN_ENCODERS.values()]
    for name, spec in (getattr(features_config, "custom_encoders", None) or {}).items():
        rows.append({"name": name, "modality": spec.modality, "dim": spec.dim,
                     "input": "module-defined", "description":
                     f"custom: {spec.factory} with weights {spec.weights}"})
    return rows
