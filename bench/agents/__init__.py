"""Agents: the offline algorithms CQL, TD3+BC and IQL behind one interface (base.py, registry.py) and, sharing
CQL's actor and critic code, SAC (online, for behaviour policies)."""
