"""The REST API's request and answer models (pydantic). Request models check each field with the shared
rules of metalstream.contracts, so the API refuses what `metalstream install` refuses, with the same
words; pxe.openapi makes the OpenAPI document from these same models. Parse a body with `base.parse`."""
