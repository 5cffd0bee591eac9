"""Symbolic reasoning over detections with SWI-Prolog (pyswip imported lazily)."""

from nesydet.pipeline.reasoning.engine import Decision, PrologReasoner
from nesydet.pipeline.reasoning.facts import build_facts, pair_geometry

__all__ = ["Decision", "PrologReasoner", "build_facts", "pair_geometry"]
