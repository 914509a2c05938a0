"""Sync: the pure planner (plan.py) and the executor that carries plans out (engine.py)."""
