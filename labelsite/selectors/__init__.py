"""Reads that need care. Labeller-facing selectors return blind dataclasses, never model instances,
so no SAE, feature index or row id can reach a labeller's template or serializer by accident."""
