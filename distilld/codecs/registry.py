"""Writer schemas from a Confluent Schema Registry, by id, cached.

An id the registry does not know (404 with a registry's 404xx error code) is
the record's fault: the caller dead-letters it. A registry that cannot be
reached, or a bare 404 (an ingress with no registry behind it), is nobody's
record's fault: the lookup is retried with backoff (logged and counted) until
it answers or the daemon stops (:class:`RegistryUnavailable`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from distilld.codecs.avro_schema import SchemaFileError, parse_record_schema

__all__ = ["RegistryUnavailable", "SchemaRegistry", "UnknownSchema"]

log = logging.getLogger("distilld.registry")


class UnknownSchema(LookupError):
    """The registry has no schema with that id (or not an Avro one)."""


class RegistryUnavailable(RuntimeError):
    """The registry did not answer and the daemon is stopping."""


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


class SchemaRegistry:
    def __init__(
        self,
        conf: dict[str, Any],
        wait: Callable[[float], bool] | None = None,
        on_error: Callable[[], None] | None = None,
        max_backoff_s: float = 10.0,
    ) -> None:
        # mock:// URLs give the in-memory mock; retries are ours (with the daemon's stop in view)
        self.client = SchemaRegistryClient.new_client({"max.retries": 0, "timeout": 10, **conf})
        self.wait = wait or _sleep
        self.on_error = on_error
        self.max_backoff_s = max_backoff_s
        self._schemas: dict[int, Any] = {}
        self._unknown: dict[int, str] = {}

    def writer_schema(self, schema_id: int) -> Any:
        schema = self._schemas.get(schema_id)
        if schema is not None:
            return schema
        if schema_id in self._unknown:
            raise UnknownSchema(self._unknown[schema_id])
        backoff = 0.5
        while True:
            try:
                found = self.client.get_schema(schema_id)
                break
            except SchemaRegistryError as e:
                if e.http_status_code == 404 and e.error_code in range(40400, 40500):  # the registry's own answer
                    self._unknown[schema_id] = str(e)
                    raise UnknownSchema(str(e)) from None
                reason: Any = e
            except Exception as e:  # connection refused, timeouts, TLS errors: the registry, not the record
                reason = e
            if self.on_error is not None:
                self.on_error()
            log.warning(
                "schema registry: fetching schema %d failed (%s); retrying in %.1fs", schema_id, reason, backoff
            )
            if not self.wait(backoff):
                raise RegistryUnavailable(f"schema registry unreachable: {reason}")
            backoff = min(2 * backoff, self.max_backoff_s)
        if found.schema_type not in (None, "AVRO"):
            self._unknown[schema_id] = f"schema {schema_id} is {found.schema_type}, not Avro"
            raise UnknownSchema(self._unknown[schema_id])
        try:
            parsed = parse_record_schema(json.loads(found.schema_str or ""), f"registry schema {schema_id}")
        except (SchemaFileError, ValueError) as e:
            self._unknown[schema_id] = str(e)
            raise UnknownSchema(str(e)) from None
        self._schemas[schema_id] = parsed
        return parsed
