"""The lecture's analysis, computed: per-layer tables, totals, comparisons, training memory and charts.

    profile("alexnet", 227).select("conv", "pool", "flatten", "fc").table()   # the lecture's AlexNet table
    compare(["alexnet", "vgg16"]).table()                                       # "25x memory, 2.3x params"
    training_memory("resnet50", 224, batch_size=32, optimizer="momentum")

Plots (matplotlib) live in `cnnzoo.analysis.plots`, imported on demand.
"""
from .compare import Comparison, compare, load_accuracy
from .memory import TrainingMemory, measure_training_peak, training_memory
from .meta import parse_input_size
from .profiler import Profile, Row, Totals, profile

__all__ = ["Comparison", "Profile", "Row", "Totals", "TrainingMemory", "compare", "load_accuracy",
           "measure_training_peak", "parse_input_size", "profile", "training_memory"]
