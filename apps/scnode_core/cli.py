"""What every app's ``python -m …`` entry point does the same way: the common arguments, the
log format, settings read from an env file with each bad setting named (exit code 2), and the
uvicorn options every API is served with."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TypeVar

import uvicorn
from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def parser(prog: str, description: str | None, prefix: str) -> argparse.ArgumentParser:
    """An argument parser with ``--env-file`` and ``--log-level``."""
    result = argparse.ArgumentParser(prog=prog, description=description)
    result.add_argument("--env-file", help=f"settings file ({prefix}* lines)")
    result.add_argument("--log-level", default="info")
    return result


def add_listen_arguments(result: argparse.ArgumentParser, port: int) -> None:
    result.add_argument("--host", default="127.0.0.1")
    result.add_argument("--port", type=int, default=port)


def setup_logging(level: str, fmt: str = LOG_FORMAT) -> None:
    logging.basicConfig(level=level.upper(), format=fmt)


def load_settings(cls: type[S], env_file: str | None) -> S | None:
    """The settings, or None after naming every bad setting on stderr (pydantic never echoes
    SecretStr values) — the caller then exits with 2."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        return cls(_env_file=env_file)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"setting {prefix}{field.upper()}: {error['msg']}", file=sys.stderr)
        return None


def serve(app: Any, host: str, port: int, log_level: str) -> None:
    """Serve an API the way all of ours are served."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        # longer than the reverse proxy's and clients' idle pools, so uvicorn never closes a
        # kept-alive connection just as a client reuses it
        timeout_keep_alive=75,
    )
