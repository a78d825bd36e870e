"""The road to BERT (seed 003: "从单词到上下文中的单词"): word2vec's one vector per word, then ELMo's vectors in
context, trained on the same corpora as BERT so that the lineage can be compared on one table."""
