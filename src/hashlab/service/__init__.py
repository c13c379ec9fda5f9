"""The HTTP search service (FastAPI), run by ``hashlab serve``."""

from hashlab.service.app import (
    SearchService,
    ServiceError,
    build_service,
    create_app,
    encode_images,
)

__all__ = ["SearchService", "ServiceError", "build_service", "create_app", "encode_images"]
