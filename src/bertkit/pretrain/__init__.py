"""The first stage of the notes: pretraining from raw text.

corpus.py (raw text -> documents of sentences) -> shards.py (token ids on disk) -> pairs.py (instances:
NSP / SOP / full sentences) -> masking.py (what is predicted, 80/10/10) -> dataset.py (epochs and batches)
-> objectives.py (MLM + NSP/SOP over an encoder) -> loop.py (the training loop, `pretrain`).
"""
