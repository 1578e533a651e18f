"""See inside scaled networks: τ-dormant neurons, GraMa, feature norms, Grad-CAM, and ReDo/ReGraMa resets.

See ``docs/diagnostics.md``.
"""

from sb3_gap.diagnostics.callbacks import DiagnosticsCallback, ReDoCallback, ReGraMaCallback
from sb3_gap.diagnostics.gradcam import grad_cam, save_overlay
from sb3_gap.diagnostics.layers import GROUPS, NeuronLayer, find_head_consumers, neuron_layers
from sb3_gap.diagnostics.metrics import (
    DEFAULT_TAU,
    ActivityReport,
    LayerActivity,
    decision_values,
    dormant_fractions,
    effective_connection_params,
    feature_norms,
    grama_fractions,
    neuron_magnitudes,
)
from sb3_gap.diagnostics.resets import ResetResult, reset_neurons

__all__ = [
    "DEFAULT_TAU",
    "GROUPS",
    "ActivityReport",
    "DiagnosticsCallback",
    "LayerActivity",
    "NeuronLayer",
    "ReDoCallback",
    "ReGraMaCallback",
    "ResetResult",
    "decision_values",
    "dormant_fractions",
    "effective_connection_params",
    "feature_norms",
    "find_head_consumers",
    "grad_cam",
    "grama_fractions",
    "neuron_layers",
    "neuron_magnitudes",
    "reset_neurons",
    "save_overlay",
]
