"""Agents: CQL (offline) and, sharing its actor and critic code, SAC (online, for behaviour policies)."""
