"""The OpenAPI schema (drf-spectacular) of every API, function views included."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from rest_framework.generics import GenericAPIView


class AutoSchema(SpectacularAutoSchema):
    """Function views (`@api_view`) declare no serializer: document their bodies as JSON objects instead
    of failing, and their lists as paginated (every list in this project is)."""

    def _declares_serializer(self) -> bool:
        view = self.view
        return isinstance(view, GenericAPIView) or any(
            hasattr(view, name) for name in ("get_serializer", "get_serializer_class", "serializer_class")
        )

    def get_request_serializer(self):
        if self._declares_serializer():
            return super().get_request_serializer()
        return OpenApiTypes.OBJECT if self.method in ("POST", "PUT", "PATCH") else None

    def get_response_serializers(self):
        if self._declares_serializer():
            return super().get_response_serializers()
        return OpenApiTypes.OBJECT

    def get_operation_id(self) -> str:
        if self._declares_serializer():
            return super().get_operation_id()
        # @api_view names its generated class after the function: unique per route
        return f"{type(self.view).__name__}_{self.method.lower()}"
