from sb3_gap.params import ParameterReport, find_extractor, parameter_report  # noqa: F401  # TEMP-SHIM issue14: remove after merge
