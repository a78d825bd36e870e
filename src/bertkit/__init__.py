"""bertkit: pretrain, adapt, fine-tune and serve BERT-family text encoders."""

__version__ = "0.1.0"
