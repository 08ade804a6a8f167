"""Grids: a YAML file of architectures x datasets x seeds -> cells -> records under results/<grid name>/.

`spec` parses grid files, `store` knows where records live and locks cells, `launchers` run cells in worker
processes or Ray tasks, `run` is the loop behind `python -m bench grid run|status|check FILE`.
"""

from bench.grid.spec import Cell, GridSpec, Resources, load_grid

__all__ = ["Cell", "GridSpec", "Resources", "load_grid"]
