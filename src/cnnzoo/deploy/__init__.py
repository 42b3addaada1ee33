"""Deploy: the lecture's last step. Export a trained run (ONNX, torch.export), predict, serve over HTTP.

    from cnnzoo.deploy import export_run, predict
    report = export_run("runs/digits", "onnx", "runs/digits/export/resnet18.onnx")  # verified, or ExportError
    result = predict(report.path, ["photos/"], top_k=5)     # PredictReport: predictions, failures, backend

Nothing here prints; `export.format_report` and `predict.format_predictions` give the CLI's text.

`cnnzoo serve RUN|CHECKPOINT|MODEL.onnx` runs `serve.create_app` on uvicorn (127.0.0.1:8000).
"""
from .backends import NAMES as BACKENDS
from .backends import Selection, build_backend, select_backend
from .export import ExportError, ExportReport, export_model, export_run
from .images import ImageRejected, decode_image, expand_inputs, sample_images
from .meta import ModelMeta, Source, load_source
from .predict import Prediction, Predictor, PredictReport, predict
from .serve import ServeConfig, create_app

__all__ = [
    "BACKENDS", "ExportError", "ExportReport", "ImageRejected", "ModelMeta", "PredictReport", "Prediction",
    "Predictor", "Selection", "ServeConfig", "Source", "build_backend", "create_app", "decode_image",
    "expand_inputs", "export_model", "export_run", "load_source", "predict", "sample_images", "select_backend",
]
