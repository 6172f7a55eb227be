"""One logging setup, applied by the CLI only (services just call getLogger(__name__))."""

from __future__ import annotations

import logging.config
from typing import Any


def config(level: str = "info") -> dict[str, Any]:
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn.access": {"level": "WARNING"},  # one line per request is too much at 20k/s
        },
    }


def setup(level: str = "info") -> None:
    logging.config.dictConfig(config(level))
