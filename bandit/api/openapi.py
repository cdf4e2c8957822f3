"""OpenAPI schemas of the msgspec Structs that say everything the decoder enforces.

Litestar's own Struct schemas leave out that unknown fields are refused, so clients (and the
fuzzer in tests/api/test_fuzzing.py) would believe any extra field is welcome; nor can they say
that some fields are only valid together. This plugin adds both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Schema

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

#: Name of a Struct's optional class attribute listing alternative groups of required fields:
#: a body must carry exactly one group (e.g. one reward, or a batch).
ALTERNATIVES = "__openapi_alternatives__"


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's Struct schema plus `additionalProperties: false` and required-field alternatives."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        struct = field_definition.type_
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        alternatives: tuple[tuple[str, ...], ...] = getattr(struct, ALTERNATIVES, ())
        if alternatives:
            # Each alternative allows its own fields only, so a body mixing two groups matches none.
            schema.one_of = [
                Schema(properties={name: Schema() for name in group}, required=list(group), additional_properties=False)
                for group in alternatives
            ]
        return schema
