"""The UniAV network: layers, backbone, heads, targets, losses and the assembled model."""

from uniav.model.model import ModelOutput, ModelSpec, TaskHeadConfig, UniAV, count_parameters

__all__ = ["ModelOutput", "ModelSpec", "TaskHeadConfig", "UniAV", "count_parameters"]
