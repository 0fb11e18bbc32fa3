"""Semantic search index: CLIP vectors in faiss, their metadata in SQLite beside them (see store.py for why a
reader always sees a consistent pair, and build.py for how a killed build resumes)."""

from .build import Report, add, build, delete
from .query import query, rerank
from .reader import Hit, Index

__all__ = ["Hit", "Index", "Report", "add", "build", "delete", "query", "rerank"]
