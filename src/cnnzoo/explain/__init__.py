"""What a network looked at: attributions (Grad-CAM, occlusion, saliency, integrated gradients), first-layer
filters, a layer's activations, and the mistakes of an evaluation (top losses, most-confused pairs)."""
from .attribution import METHODS, Explanation, explain
from .layers import GRADCAM_LAYERS, default_layer
from .views import activations, explain_images, filters

__all__ = ["METHODS", "Explanation", "explain", "GRADCAM_LAYERS", "default_layer", "activations", "explain_images",
           "filters"]


class _Callable(__import__("types").ModuleType):
    """`cnnzoo.explain(...)` works even after `import cnnzoo.explain` made the name the package."""

    def __call__(self, *args, **kwargs):
        return explain(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _Callable
