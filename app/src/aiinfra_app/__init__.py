"""aiinfra-app: documents service for AI applications."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiinfra-app")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
