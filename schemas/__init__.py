"""Contracts shared by every layer: pydantic models only, no imports of ours."""
