"""Read ModelDeployment YAML files and turn validation errors into one readable line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from siesta.api.contract import KIND
from siesta.api.models import ModelDeployment


class InvalidManifest(ValueError):
    """A file that is not a valid ModelDeployment; str() is one line naming the field."""


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
    message = first["msg"].removeprefix("Value error, ")
    where = f"{prefix}{location}" if location else prefix.rstrip(".")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def parse_model_deployment(document: dict[str, Any], source: str = "<input>") -> ModelDeployment:
    try:
        return ModelDeployment.model_validate(document)
    except ValidationError as error:
        raise InvalidManifest(f"{source}: {describe_validation_error(error)}") from error


def load_model_deployments(path: Path) -> list[ModelDeployment]:
    """Every ModelDeployment in a (multi-document) YAML file; other kinds are skipped."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as error:
        raise InvalidManifest(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise InvalidManifest(f"{path}: not valid YAML: {error}".replace("\n", " ")) from error
    found = [
        parse_model_deployment(document, str(path))
        for document in documents
        if isinstance(document, dict) and document.get("kind") == KIND
    ]
    if not found:
        raise InvalidManifest(f"{path}: no {KIND} in this file")
    return found


def load_one(path: Path, name: str | None = None) -> ModelDeployment:
    found = load_model_deployments(path)
    if name is not None:
        found = [md for md in found if md.name == name]
        if not found:
            raise InvalidManifest(f"{path}: no {KIND} named {name!r}")
    if len(found) > 1:
        names = ", ".join(md.name for md in found)
        raise InvalidManifest(f"{path}: several {KIND}s ({names}); pick one with --name")
    return found[0]
