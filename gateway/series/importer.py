"""Streaming CSV import of series: one series per row, flat memory, counts and invalid lines.

The header row names the columns: ``phone`` or ``email``, ``anchor_at``, optionally ``key``, and one
column per param (the ledger's expiry file as it comes: name, points, tier...).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.errors import ProblemError, Unprocessable
from gateway.optouts.importer import LineImporter, LineReport
from gateway.series.model import SeriesRequest
from gateway.series.service import SeriesService

MAX_INVALID_REPORTED = 1000
ADDRESS_COLUMNS = ("phone", "email")
FIXED_COLUMNS = ("phone", "email", "anchor_at", "key", "timezone")


@dataclass
class SeriesImportReport(LineReport):
    """What a series import did."""

    started: int = 0
    duplicates: int = 0  # rows whose key had already started the same series

    def as_dict(self) -> dict[str, Any]:
        """The API answer (invalid lines listed up to a thousand; the count is exact)."""
        return {
            "started": self.started,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "invalid_count": self.invalid_count,
            "rows": self.rows,
        }


class SeriesImporter(LineImporter[SeriesImportReport]):
    """Feed it bytes as they arrive; it parses lines and starts their series a chunk at a time."""

    def __init__(
        self,
        series: SeriesService,
        tenant: str,
        definition: str,
        brand: str | None,
        *,
        metadata: dict[str, Any] | None = None,
        chunk: int = 1000,
    ) -> None:
        super().__init__(SeriesImportReport())
        self.series = series
        self.tenant = tenant
        self.definition = definition
        self.brand = brand
        self.metadata = metadata or {}
        self.chunk = chunk
        self._header: list[str] | None = None
        self._rows: list[tuple[int, SeriesRequest | ProblemError]] = []

    async def finish(self) -> None:
        """The end of the file (one without even a header row is refused)."""
        await super().finish()
        if self._header is None:
            raise Unprocessable("validation_error", "the file is empty: it needs a header row")

    async def _line_in(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8-sig" if self._line == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError:
            self._invalid("not UTF-8")
            return
        if not text.strip():
            return
        cells = next(csv.reader([text]))
        if self._header is None:
            header = [c.strip().lower() for c in cells]
            if not any(c in header for c in ADDRESS_COLUMNS) or "anchor_at" not in header:
                raise Unprocessable(
                    "validation_error",
                    "the header row must name a phone or email column and anchor_at "
                    "(then key and one column per param)",
                )
            self._header = header
            return
        self.report.rows += 1
        if len(cells) != len(self._header):
            self._invalid(f"{len(cells)} columns where the header has {len(self._header)}")
            return
        row = dict(zip(self._header, (c.strip() for c in cells), strict=True))
        to = {c: row[c] for c in ("phone", "email", "timezone") if row.get(c)}
        body = {
            "definition": self.definition,
            "to": to,
            "anchor_at": row.get("anchor_at", ""),
            "brand": self.brand,
            "key": row.get("key") or None,
            "params": {k: v for k, v in row.items() if k not in FIXED_COLUMNS and v != ""},
            "metadata": self.metadata,
        }
        try:
            req: SeriesRequest | ProblemError = msgspec.convert(body, SeriesRequest, strict=False)
        except msgspec.ValidationError as exc:
            self._invalid(str(exc))
            return
        self._rows.append((self._line, req))
        if len(self._rows) >= self.chunk:
            await self._flush()

    async def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        answers = await self.series.start_many(self.tenant, [r for _, r in rows])
        for (line, _), (status, body) in zip(rows, answers, strict=True):
            if status == 201:
                self.report.started += 1
            elif status == 200:
                self.report.duplicates += 1
            else:
                self._invalid(f"{body.get('code')}: {body.get('detail')}", line)
