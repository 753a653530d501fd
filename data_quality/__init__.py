"""Great Expectations suites per stage and the gate that blocks a failing snapshot."""

from data_quality.gate import ExpectationOutcome, GateFailed, GateResult, gate
from data_quality.gate_config import GatesConfig, RawGateConfig

__all__ = ["ExpectationOutcome", "GateFailed", "GateResult", "GatesConfig", "RawGateConfig", "gate"]
