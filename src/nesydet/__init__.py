"""nesydet: neuro-symbolic object detection for aerial images."""

__version__ = "0.1.0"
API_VERSION = "1.0"
