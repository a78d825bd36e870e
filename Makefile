# Every target creates .venv on first use: torch 2.13.0 (CPU) first, then bertkit with its test extras.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv test demo pretrain-zh table recipes lineage distill see-inside retrieval bench lint clean

venv: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: venv
	bash scripts/ensure_browser.sh
	$(PY) -m pytest -q --durations=20

demo: venv
	bash scripts/demo.sh

# about an hour on 2 CPU cores: the "one-hour model" of docs/results.md (resumes with `make pretrain-zh ARGS=--resume`)
pretrain-zh: venv
	bash scripts/pretrain_zh.sh $(ARGS)

# the fine-tuning table (docs/results.md) for a model folder (default: the demo's)
table: venv
	bash scripts/finetune_table.sh $(MODEL)

# the recipes compared (docs/results.md): every recipe with the same pretraining budget, fine-tuned on the four
# tasks with 3 seeds (about 2 h 20 min, resumable: rerun to continue); `make recipes ARGS=--write-docs` fills the docs
recipes: venv
	$(PY) scripts/compare_recipes.py $(ARGS)

# the notes' lineage measured (docs/results.md): word2vec, ELMo, GPT, XLNet-style and BERT on the recipes' corpus,
# budget and tasks, sharing runs/recipes (about 1 h 10 min to 1 h 35 min, resumable); ARGS=--write-docs fills the docs
lineage: venv
	$(PY) scripts/lineage_table.py $(ARGS)

# the distillation table (docs/distillation.md): the one-hour model as teacher, DistilBERT and TinyBERT students and
# the same sizes without distillation, fine-tuned with 3 seeds (about 2 h 15 min after `make pretrain-zh`,
# resumable: rerun to continue); `make distill ARGS=--write-docs` fills the docs
distill: venv
	$(PY) scripts/distill_table.py $(ARGS)

# the retrieval table (docs/retrieval.md): BM25, hybrid, the demo and one-hour models untrained and trained, MiniLM
retrieval: venv
	$(PY) scripts/retrieval_table.py $(ARGS)

# seeing inside's figures (docs/seeing-inside.md): word2vec and ELMo on the recipes' corpus, then the polysemy lesson
# with the recipes' BERT (about 12 min); `make see-inside ARGS=--write-docs` fills the docs
see-inside: venv
	$(PY) scripts/see_inside.py $(ARGS)

# every benchmark; `make bench ARGS=--write-docs` also rewrites the tables of docs/performance.md
bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py $(ARGS)

lint: venv
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks

clean:
	rm -rf .venv runs build *.egg-info
