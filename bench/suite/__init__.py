"""The local D4RL-recipe datasets: behaviour policies trained with SAC, the medium one chosen, nine datasets
regenerated from the committed policies (`bench.suite.recipe`). Above the agents: the data layer never imports it.
"""
