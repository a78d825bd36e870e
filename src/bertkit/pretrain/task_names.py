"""ERNIE 2.0's task names in task-id order (ernie2.py), and the recipe's stages: stage k trains the first k.

A module of its own, importing nothing, so that setup.py's rows (read by the CLI before any run is built) and
ernie2.py (torch) both read the one list without importing each other.
"""

TASKS = ("knowledge", "tdr", "reorder", "distance")  # task id = place here
STAGES = tuple(TASKS[: k + 1] for k in range(len(TASKS)))
