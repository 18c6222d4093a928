"""Types shared by the request and response models, and the error bodies every route may answer."""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, Field, WithJsonSchema

# A JSON number kept as sent (an integer stays an integer, as the stored requests always had it).
Number = Annotated[Union[int, float], WithJsonSchema({"type": "number"})]


class Error(BaseModel):
    """Every error answer: what is wrong, and (when a field is to blame) which."""

    error: str
    field: str | None = Field(None, description="the JSON field, query parameter or header at fault")


class BmcFailure(BaseModel):
    """502: the machine's BMC failed."""

    error: str = Field(description="the BMC's message (never a credential)")
    kind: str = Field(description="which failure: unreachable, auth, error, timeout, ...")
    attempts: int | None = Field(None, ge=1)
