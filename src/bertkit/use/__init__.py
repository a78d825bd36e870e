"""Using a trained model: sentence vectors (embed.py, int8.py, vector_io.py), fill-mask, the HTTP service
(serve.py) and ONNX export (export.py)."""
