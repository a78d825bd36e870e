"""The second stage of the notes: fine-tuning one small head on a pretrained encoder.

readers.py (labelled files) and tasks.py (the built-in benchmarks, labels) -> windows.py (sub-word alignment,
sliding windows, QA spans) -> features.py (ids, labels, batches) -> model.py (the task heads, folders in and
out; crf.py for tagging) -> loop.py (`finetune`) and predict.py (evaluation and prediction); metrics.py
scores them.
"""
