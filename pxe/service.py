"""The service's shared objects (configuration, database engine, renderer, installer, deploy key)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from . import activation, db, imagestore
from .config import ServiceConfig
from .render import Renderer
from .secretbox import SecretBox


@dataclass
class Service:
    config: ServiceConfig
    engine: Engine
    renderer: Renderer
    installer: dict | None
    deploy_public_key: str
    secrets: SecretBox

    @classmethod
    def open(cls, config: ServiceConfig) -> "Service":
        config.prepare()
        installer = imagestore.read_installer_manifest(config.installer) if config.installer else None
        return cls(config=config, engine=db.make_engine(config.db_url),
                   renderer=Renderer(config.template_dir, boot_url=config.boot_url),
                   installer=installer, deploy_public_key=activation.ensure_deploy_key(config.deploy_key),
                   secrets=SecretBox.for_data_dir(config.data_dir))
