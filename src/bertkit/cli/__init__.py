"""`bertkit <command>`: the only face of the package; nothing imports it.

`table.py` turns typed function signatures into flags; the commands live one module per stage
(`models`, `pretraining`, `distilling`, `finetuning`, `using`, `retrieval`, `lineage`) and register themselves with
`@command` when imported here, in the order `bertkit --help` lists them.
"""

# isort: off
from bertkit.cli import models, pretraining, distilling, finetuning, using, retrieval, lineage  # noqa: F401  (importing registers the commands)

# isort: on
from bertkit.cli.table import main

__all__ = ["main"]
