"""Measurements on the user's machine: `bench` (latency, throughput, memory, roofline) and `recommend`."""
from .bench import BenchResult, Measurement, bench
from .device import DeviceInfo, device_info, matmul_peak
from .memory import LiveStorages, peak_memory
from .recommend import TOUR_MODELS, Candidate, Recommendation, decide, pareto_front, recommend

__all__ = ["TOUR_MODELS", "BenchResult", "Candidate", "DeviceInfo", "LiveStorages", "Measurement", "Recommendation",
           "bench", "decide", "device_info", "matmul_peak", "pareto_front", "peak_memory", "recommend"]
