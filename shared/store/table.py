"""The store in an Azure Table Storage table (the real async SDK, the managed identity).

One row per key: PartitionKey is the key, RowKey empty, so every row is its own
partition and rows never contend. The value is a binary property, the expiry an epoch
number; Table Storage has no TTL of its own, so an expired row reads as absent and is
deleted (conditionally, by its ETag) when met. Conditional writes use the row's ETag
(If-Match), which Table Storage enforces across every writer.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..config.model import TableStoreConfig
from ..identity import SDK_OPTIONS, ManagedIdentity
from . import Entry, StoreUnavailable, check_entry

_PRECONDITION_FAILED = 412


class TableStore:
    def __init__(self, config: TableStoreConfig, identity: ManagedIdentity) -> None:
        self.config = config
        self.identity = identity
        self.clock = time.time
        self._client: TableClient | None = None
        self._table_checked = False

    async def _table(self) -> TableClient:
        if self._client is None:
            self._client = TableClient(
                endpoint=self.config.endpoint,
                table_name=self.config.table,
                credential=self.identity.credential(self.config.client_id),
                transport=self.identity.http.transport(),
                **SDK_OPTIONS,
            )
        if not self._table_checked:
            try:
                await self._client.create_table()
            except ResourceExistsError:
                pass
            except HttpResponseError as error:
                raise StoreUnavailable(f"table storage: cannot use the table ({error.status_code})") from None
            except Exception as error:  # noqa: BLE001 - the store's failure, in words without secrets
                raise StoreUnavailable(f"table storage unreachable ({type(error).__name__})") from None
            self._table_checked = True
        return self._client

    def _row(self, key: str, value: bytes, ttl: float) -> dict[str, Any]:
        return {"PartitionKey": key, "RowKey": "", "value": value, "expires": float(self.clock() + ttl)}

    async def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        table = await self._table()
        try:
            return await getattr(table, operation)(*args, **kwargs)
        except (ResourceExistsError, ResourceNotFoundError, ResourceModifiedError):
            raise
        except HttpResponseError as error:
            if error.status_code == _PRECONDITION_FAILED:
                raise ResourceModifiedError(message="precondition failed") from None
            raise StoreUnavailable(f"table storage answered {error.status_code}") from None
        except Exception as error:  # noqa: BLE001 - the store's failure, in words without secrets
            raise StoreUnavailable(f"table storage unreachable ({type(error).__name__})") from None

    async def get(self, key: str) -> Entry | None:
        try:
            row = await self._call("get_entity", partition_key=key, row_key="")
        except ResourceNotFoundError:
            return None
        etag = row.metadata["etag"]
        expires = float(row.get("expires", 0))
        if expires <= self.clock():
            await self.delete(key, etag)
            return None
        value = row.get("value")
        return Entry(bytes(value) if value is not None else b"", etag, expires)

    async def insert_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        check_entry(key, value)
        try:
            await self._call("create_entity", entity=self._row(key, value, ttl))
            return True
        except ResourceExistsError:
            pass
        # A row exists: live, or expired and not yet deleted (then take its place, once).
        entry = await self.get(key)
        if entry is not None:
            return False
        try:
            await self._call("create_entity", entity=self._row(key, value, ttl))
            return True
        except ResourceExistsError:
            return False

    async def replace(self, key: str, value: bytes, etag: str, ttl: float) -> bool:
        check_entry(key, value)
        try:
            await self._call(
                "update_entity",
                entity=self._row(key, value, ttl),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    async def delete(self, key: str, etag: str | None = None) -> bool:
        kwargs: dict[str, Any] = {"partition_key": key, "row_key": ""}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            await self._call("delete_entity", **kwargs)
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
